//! The `jetsource` command line, for any [`App`].
//!
//! Exit codes: 0 success (for `send`: accepted; for `status` and `errors`:
//! answered, whatever the answer); 1 the command was rejected;
//! 2 invalid usage or settings; 3 NATS unreachable, too old, or no answer.

use crate::app::{self, App};
use crate::client::{CommandClient, SendOptions};
use crate::config::Config;
use crate::embedded;
use clap::{Parser, Subcommand};
use jetsource_schemas::feedback;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

/// CQRS and event sourcing on NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "jetsource", version, about, long_about = None, after_help = "\
Examples:
  jetsource demo                                  the guided tour, on an embedded nats-server
  jetsource run                                   serve commands (embedded nats-server unless a URL is set)
  jetsource bench --quick                         jetsource against the bare JetStream path
  jetsource send blogpost p1 create '{\"title\":\"Hi\",\"body\":\"...\"}'
  echo '{}' | jetsource send blogpost p1 publish --command-id pub-p1
  jetsource send blogpost p1 publish --no-wait     fire-and-forget; prints the command id
  jetsource status <command-id>                   accepted (with events), rejected, or unknown
  jetsource errors get <command-id>               a rejection from the error cache
  jetsource errors list blogpost p1               an aggregate's recent rejections

Authentication ([nats.auth] and [nats.tls] in the settings file, or):
  JETSOURCE_NATS_TOKEN, JETSOURCE_NATS_USER + JETSOURCE_NATS_PASSWORD,
  JETSOURCE_NATS_NKEY_SEED_FILE, JETSOURCE_NATS_CREDS,
  JETSOURCE_NATS_TLS_CA, JETSOURCE_NATS_TLS_CERT + JETSOURCE_NATS_TLS_KEY
  jetsource projector status                      positions and lag of the running projectors
  jetsource projector rebuild <name>              rebuild a persisted projection without downtime
  jetsource projector parked <name>               events parked after failing to apply
  jetsource projector replay-parked <name>        apply them again after a fix

Exit codes: 0 ok or accepted, 1 rejected, 2 bad usage or settings, 3 NATS unreachable or no answer.")]
pub struct Cli {
    /// Settings file (default: config/jetsource.toml when present; also JETSOURCE_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve commands until SIGINT or SIGTERM.
    Run {
        /// NATS URL (also JETSOURCE_NATS_URL, NATS_URL, [nats] url); unset: start an embedded nats-server.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
        /// How long rejections stay queryable, for example 15m ([feedback] error_ttl).
        #[arg(long, value_name = "DURATION")]
        error_ttl: Option<String>,
        /// The error cache's memory bound, for example 64MiB ([feedback] error_capacity).
        #[arg(long, value_name = "SIZE")]
        error_capacity: Option<String>,
    },
    /// Send one command and print the reply.
    Send {
        /// Aggregate type, for example blogpost.
        aggregate_type: String,
        /// Aggregate id.
        aggregate_id: String,
        /// Command name, for example create.
        command: String,
        /// The command's JSON body; read from stdin when omitted.
        json: Option<String>,
        /// NATS URL; default: as for run, else the server `jetsource run` recorded.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
        /// Command-Id header (for idempotent resends and later lookups).
        #[arg(long)]
        command_id: Option<String>,
        /// Expected-Seq header: reject with conflict if the aggregate moved past it.
        #[arg(long)]
        expected_seq: Option<u64>,
        /// Seconds to wait for the reply.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// Fire-and-forget: publish without waiting and print the command id
        /// (generated when --command-id is absent) to look the outcome up with `status`.
        #[arg(long)]
        no_wait: bool,
    },
    /// Look rejections up in the error cache.
    Errors {
        /// Which lookup.
        #[command(subcommand)]
        query: ErrorsQuery,
    },
    /// Print a command's outcome by id: accepted (with its events), rejected, or unknown.
    Status {
        /// The command id.
        command_id: String,
        /// Where NATS is.
        #[command(flatten)]
        target: QueryTarget,
    },
    /// Measure jetsource against the bare JetStream path it is built on, and print a table.
    Bench {
        /// A short run (under a minute) with smaller scales.
        #[arg(long)]
        quick: bool,
        /// One JSON object per figure and line instead of a table.
        #[arg(long)]
        json: bool,
        /// Use this nats-server instead of starting one in a temp folder.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
        /// Concurrent client tasks.
        #[arg(long, value_name = "N", default_value_t = 64)]
        clients: usize,
        /// Aggregates of the round-trip figures.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        aggregates: u64,
        /// Run one figure, and the baseline it is compared with.
        #[arg(long, value_name = "FIGURE", value_parser = clap::builder::PossibleValuesParser::new(crate::bench::FIGURES))]
        only: Option<String>,
    },
    /// Play the Rewind post's story end to end and print every step.
    Demo {
        /// NATS URL; default: as for send, else an embedded nats-server.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
    },
    /// Inspect and operate the projectors of a running `jetsource run`.
    Projector {
        /// What to inspect.
        #[command(subcommand)]
        command: ProjectorCommand,
    },
}

/// The `projector` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProjectorCommand {
    /// Print each projector's phase and, per stream, the last sequence
    /// applied, the stream's last sequence and the lag (as JSON).
    Status {
        /// NATS URL; default: as for send.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
    /// Rebuild a persisted projection from sequence 1 beside the served
    /// one; queries switch to it once it has caught up.
    Rebuild {
        /// The projection's name.
        name: String,
        /// NATS URL; default: as for send.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
        /// Seconds to wait for each progress update.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// List a persisted projection's parked events (as JSON).
    Parked {
        /// The projection's name.
        name: String,
        /// NATS URL; default: as for send.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
    },
    /// Apply a persisted projection's parked events again, after a fix.
    ReplayParked {
        /// The projection's name.
        name: String,
        /// NATS URL; default: as for send.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

/// `jetsource errors` lookups.
#[derive(Debug, Subcommand)]
pub enum ErrorsQuery {
    /// The rejection of one command id, or unknown.
    Get {
        /// The command id.
        command_id: String,
        /// Where NATS is.
        #[command(flatten)]
        target: QueryTarget,
    },
    /// An aggregate's recent rejections, newest first.
    List {
        /// Aggregate type, for example blogpost.
        aggregate_type: String,
        /// Aggregate id.
        aggregate_id: String,
        /// Where NATS is.
        #[command(flatten)]
        target: QueryTarget,
    },
}

/// Where a query goes.
#[derive(Debug, clap::Args)]
pub struct QueryTarget {
    /// NATS URL; default: as for send.
    #[arg(long, value_name = "URL")]
    nats_url: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses the command line and runs `app`.
pub fn main(app: App) -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("jetsource: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(match cli.command {
        Command::Run { .. } => "info",
        _ => "warn",
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("jetsource: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(dispatch(app, config, cli.command))
}

async fn dispatch(app: App, config: Config, command: Command) -> ExitCode {
    match command {
        Command::Run {
            nats_url,
            error_ttl,
            error_capacity,
        } => {
            let mut config = config;
            if let Some(ttl) = error_ttl {
                config.feedback.error_ttl = ttl;
            }
            if let Some(capacity) = error_capacity {
                config.feedback.error_capacity = capacity;
            }
            match app::run(&app, &config, nats_url.as_deref(), app::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "jetsource stopped");
                    eprintln!("jetsource: {e}");
                    exit_for_run_error(&e)
                }
            }
        }
        Command::Status { command_id, target } => {
            let subject = feedback::status_subject(&command_id);
            query(&config, "status", subject, target).await
        }
        Command::Errors {
            query: ErrorsQuery::Get { command_id, target },
        } => {
            let subject = feedback::errors_get_subject(&command_id);
            query(&config, "errors get", subject, target).await
        }
        Command::Errors {
            query:
                ErrorsQuery::List {
                    aggregate_type,
                    aggregate_id,
                    target,
                },
        } => {
            let subject = feedback::errors_list_subject(&aggregate_type, &aggregate_id);
            query(&config, "errors list", subject, target).await
        }
        Command::Bench {
            quick,
            json,
            nats_url,
            clients,
            aggregates,
            only,
        } => {
            let runtime_config = match config.runtime() {
                Ok(runtime_config) => runtime_config,
                Err(e) => {
                    eprintln!("jetsource bench: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = crate::bench::BenchOptions {
                quick,
                json,
                nats_url,
                clients,
                aggregates,
                only,
            };
            match crate::bench::run(&options, app, runtime_config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == crate::bench::BenchErrorKind::Usage => {
                    eprintln!("jetsource bench: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("jetsource bench: {e}");
                    ExitCode::from(3)
                }
            }
        }
        Command::Demo { nats_url } => {
            let mut out = std::io::stdout();
            match crate::demo::run(&config, nats_url.as_deref(), &mut out).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("jetsource demo: {e}");
                    ExitCode::from(3)
                }
            }
        }
        Command::Projector {
            command: ProjectorCommand::Status { nats_url, timeout },
        } => projector_status(&config, nats_url.as_deref(), timeout).await,
        Command::Projector {
            command:
                ProjectorCommand::Rebuild {
                    name,
                    nats_url,
                    timeout,
                },
        } => crate::projector_ops::rebuild(&config, nats_url.as_deref(), &name, timeout).await,
        Command::Projector {
            command: ProjectorCommand::Parked { name, nats_url },
        } => crate::projector_ops::parked(&config, nats_url.as_deref(), &name).await,
        Command::Projector {
            command:
                ProjectorCommand::ReplayParked {
                    name,
                    nats_url,
                    timeout,
                },
        } => {
            crate::projector_ops::replay_parked(&config, nats_url.as_deref(), &name, timeout).await
        }
        Command::Send {
            aggregate_type,
            aggregate_id,
            command,
            json,
            nats_url,
            command_id,
            expected_seq,
            timeout,
            no_wait,
        } => {
            let body = match json {
                Some(json) => json,
                None if std::io::stdin().is_terminal() => "{}".to_string(),
                None => {
                    let mut text = String::new();
                    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                        eprintln!("jetsource send: reading stdin: {e}");
                        return ExitCode::from(2);
                    }
                    text
                }
            };
            let client = match client_connection(&config, nats_url.as_deref(), "send").await {
                Ok(client) => client,
                Err(code) => return code,
            };
            // Fire-and-forget needs an id to look the outcome up by.
            let command_id = match (no_wait, command_id) {
                (true, None) => Some(uuid::Uuid::now_v7().to_string()),
                (_, id) => id,
            };
            let options = SendOptions {
                command_id,
                expected_seq,
                ..SendOptions::default()
            };
            let sender =
                CommandClient::new(client).with_timeout(std::time::Duration::from_secs(timeout));
            if no_wait {
                return match sender
                    .publish(&aggregate_type, &aggregate_id, &command, body, &options)
                    .await
                {
                    Ok(()) => {
                        print_json(&serde_json::json!({
                            "status": "sent",
                            "command_id": options.command_id.unwrap_or_default(),
                        }));
                        ExitCode::SUCCESS
                    }
                    Err(e) if e.kind() == crate::client::SendErrorKind::InvalidInput => {
                        eprintln!("jetsource send: {e}");
                        ExitCode::from(2)
                    }
                    Err(e) => {
                        eprintln!("jetsource send: {e}");
                        ExitCode::from(3)
                    }
                };
            }
            match sender
                .send(&aggregate_type, &aggregate_id, &command, body, &options)
                .await
            {
                Ok(reply) => {
                    print_json(&reply);
                    if reply.is_accepted() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) if e.kind() == crate::client::SendErrorKind::InvalidInput => {
                    eprintln!("jetsource send: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("jetsource send: {e}");
                    ExitCode::from(3)
                }
            }
        }
    }
}

/// Sends one feedback query and prints the answer. Exit 0 when answered,
/// 2 for an invalid id, 3 when NATS or the feedback role is unreachable.
async fn query(
    config: &Config,
    what: &str,
    subject: Result<String, jetsource_schemas::TokenError>,
    target: QueryTarget,
) -> ExitCode {
    let subject = match subject {
        Ok(subject) => subject,
        Err(e) => {
            eprintln!("jetsource {what}: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match client_connection(config, target.nats_url.as_deref(), what).await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let request = async_nats::Request::new()
        .payload(bytes::Bytes::new())
        .timeout(Some(std::time::Duration::from_secs(target.timeout)));
    match client.send_request(subject, request).await {
        Ok(answer) => match serde_json::from_slice::<serde_json::Value>(&answer.payload) {
            Ok(value) => {
                print_json(&value);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jetsource {what}: the answer is not JSON: {e}");
                ExitCode::from(3)
            }
        },
        Err(e) => {
            eprintln!("jetsource {what}: no answer (is `jetsource run` serving feedback?): {e}");
            ExitCode::from(3)
        }
    }
}

async fn projector_status(config: &Config, nats_url: Option<&str>, timeout: u64) -> ExitCode {
    let client = match client_connection(config, nats_url, "projector status").await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let request = async_nats::Request::new().timeout(Some(std::time::Duration::from_secs(timeout)));
    let reply = match client
        .send_request(jetsource_projector::status::STATUS_SUBJECT, request)
        .await
    {
        Ok(reply) => reply,
        Err(e) => {
            eprintln!(
                "jetsource projector status: no answer on {}: {e}",
                jetsource_projector::status::STATUS_SUBJECT
            );
            return ExitCode::from(3);
        }
    };
    match serde_json::from_slice::<jetsource_projector::StatusReport>(&reply.payload) {
        Ok(report) => {
            print_json(&report);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jetsource projector status: not a status report: {e}");
            ExitCode::from(3)
        }
    }
}

/// The connection of a client command (`send`, queries, …): the URL from
/// the flag, the environment or the config file, else the one `jetsource run`
/// recorded; credentials as configured. On failure, prints why and returns
/// the exit code (3).
pub async fn client_connection(
    config: &Config,
    flag: Option<&str>,
    what: &str,
) -> Result<async_nats::Client, ExitCode> {
    let Some(url) = config
        .nats_url(flag)
        .or_else(|| embedded::recorded_url(&config.embedded))
    else {
        eprintln!("jetsource {what}: no NATS server: start `jetsource run`, or pass --nats-url");
        return Err(ExitCode::from(3));
    };
    crate::auth::connect(config, &url).await.map_err(|e| {
        eprintln!("jetsource {what}: {e}");
        ExitCode::from(3)
    })
}

fn exit_for_run_error(e: &app::RunError) -> ExitCode {
    match e {
        app::RunError::Config(_) => ExitCode::from(2),
        _ => ExitCode::from(3),
    }
}

/// Prints JSON: pretty on a terminal, one line otherwise.
pub fn print_json<T: serde::Serialize>(value: &T) {
    let text = if std::io::stdout().is_terminal() {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    match text {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("jetsource: cannot print the answer: {e}"),
    }
}
