//! The `jetsource` command line, for any [`App`].
//!
//! Exit codes: 0 success (for `send`: accepted); 1 the command was rejected;
//! 2 invalid usage or settings; 3 NATS unreachable, too old, or no answer.

use crate::app::{self, App};
use crate::client::{CommandClient, SendOptions};
use crate::config::Config;
use crate::embedded;
use clap::{Parser, Subcommand};
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
        Command::Run { nats_url } => {
            match app::run(&app, &config, nats_url.as_deref(), app::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "jetsource stopped");
                    eprintln!("jetsource: {e}");
                    exit_for_run_error(&e)
                }
            }
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
        Command::Send {
            aggregate_type,
            aggregate_id,
            command,
            json,
            nats_url,
            command_id,
            expected_seq,
            timeout,
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
            let Some(url) = config
                .nats_url(nats_url.as_deref())
                .or_else(|| embedded::recorded_url(&config.embedded))
            else {
                eprintln!(
                    "jetsource send: no NATS server: start `jetsource run`, or pass --nats-url"
                );
                return ExitCode::from(3);
            };
            let client = match jetsource_handlers::connect(&url).await {
                Ok(client) => client,
                Err(e) => {
                    eprintln!("jetsource send: {e}");
                    return ExitCode::from(3);
                }
            };
            let options = SendOptions {
                command_id,
                expected_seq,
                ..SendOptions::default()
            };
            let sender =
                CommandClient::new(client).with_timeout(std::time::Duration::from_secs(timeout));
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
