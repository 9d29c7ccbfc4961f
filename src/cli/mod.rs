//! The `jetsource` command line, for any [`App`].
//!
//! Exit codes: 0 success (for `send`: accepted; for `status` and `errors`:
//! answered, whatever the answer); 1 the command was rejected (`send`), the
//! aggregate has no events (`rewind`), or schema files are out of date
//! (`schema --check`); 2 invalid usage or settings; 3 NATS unreachable, too
//! old, or no answer.
//!
//! Every subcommand logs to stderr (`--log-format text|json`, filtered by
//! `RUST_LOG`); answers go to stdout, pretty on a terminal and one JSON
//! object per line otherwise.
//!
//! # Layout
//! - `mod.rs`: the arguments and the dispatch.
//! - [`client`]: connecting, feedback queries, printing.
//! - `send.rs`: `send`.
//! - `inspect.rs`: `tail`, `rewind`, `streams`.
//! - `read.rs`: `query`, a projection's answers.
//! - `forget.rs`: `forget`, destroying an aggregate's data key.
//! - [`op`]: the failures of what the CLI and the console share.

// The flags' doc comments are their `--help` texts, which name settings
// as `[section] key`, not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links)]

pub mod client;
mod forget;
mod help;
pub(crate) mod inspect;
pub mod op;
pub(crate) mod process;
mod read;
pub(crate) mod send;

use crate::app::{self, App};
use crate::config::Config;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

pub use client::{client_connection, print_json};
use client::{namespace, projector_status, query};

/// The version line: the crate's version and the wire contract's.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (contract {})",
        env!("CARGO_PKG_VERSION"),
        jetsource_schemas::CONTRACT_VERSION
    )
});

/// CQRS and event sourcing on NATS JetStream.
///
/// `E` are the application's own subcommands, beside jetsource's (see
/// [`main_with`]); [`NoCommands`] when it has none.
#[derive(Debug, Parser)]
// The examples after the options are the application's own (`help.rs`),
// set when the command line is parsed.
#[command(name = "jetsource", version = VERSION.as_str(), about, long_about = None)]
pub struct Cli<E: Subcommand = NoCommands> {
    /// Settings file (default: config/jetsource.toml when present; also JETSOURCE_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log lines on stderr as text or JSON (also JETSOURCE_LOG_FORMAT); RUST_LOG filters them.
    #[arg(long, global = true, value_enum, env = "JETSOURCE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The application's subject prefix, for serving and for every client
    /// command (also JETSOURCE_SUBJECT_PREFIX, [nats] subject_prefix); "" for none.
    #[arg(long, global = true, value_name = "PREFIX")]
    pub subject_prefix: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Commands<E>,
}

/// jetsource's subcommands and the application's own.
#[derive(Debug, Subcommand)]
pub enum Commands<E: Subcommand> {
    /// A jetsource subcommand.
    #[command(flatten)]
    Jetsource(Command),
    /// One of the application's own.
    #[command(flatten)]
    App(E),
}

/// No subcommands of the application's own.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum NoCommands {}

/// What an application's own subcommand runs with: the application and
/// the settings, loaded and checked as for jetsource's own subcommands
/// (file, environment, `--subject-prefix`).
pub struct Context {
    /// The application.
    pub app: App,
    /// The settings.
    pub config: Config,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the command span's fields (command id, aggregate, outcome) where RUST_LOG enables it
    Json,
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
        /// The roles this process plays, comma-separated: handlers, feedback,
        /// projectors (default all; also JETSOURCE_ROLES, [run] roles).
        #[arg(long, value_name = "ROLES", value_delimiter = ',')]
        roles: Option<Vec<String>>,
        /// Serve /metrics, /healthz and /readyz here, for example 127.0.0.1:9464
        /// ([observability] metrics_addr, JETSOURCE_METRICS_ADDR; "off" disables).
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<String>,
        /// Serve the web console here, for example 127.0.0.1:9465 ([console] addr,
        /// JETSOURCE_CONSOLE_ADDR; "off", the default, disables; not loopback: [console] token required).
        #[arg(long, value_name = "ADDR")]
        console_addr: Option<String>,
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
    /// Forget an aggregate's personal data: destroy its data key, so its
    /// personal fields read as their redaction value (the rest of its
    /// events is kept and still read).
    #[command(after_help = "Examples:
  jetsource forget account a1")]
    Forget {
        /// Aggregate type, for example account.
        aggregate_type: String,
        /// Aggregate id.
        aggregate_id: String,
        /// Where NATS is.
        #[command(flatten)]
        target: QueryTarget,
    },
    /// Print events as they are stored: stream, sequence, subject, Command-Id, body.
    #[command(after_help = "Examples:
  jetsource tail                          every aggregate's new events
  jetsource tail 'evt.blogpost.>'         one aggregate type
  jetsource tail 'evt.blogpost.p1.*' --from-start --count 10")]
    Tail {
        /// Subject filter (NATS wildcards), without the subject prefix: the
        /// configured one is put in front.
        #[arg(default_value = "evt.>")]
        filter: String,
        /// Start at the beginning of each stream instead of its current end.
        #[arg(long)]
        from_start: bool,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// NATS URL; default: as for send.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
    },
    /// Print an aggregate's state after its events up to a stream sequence, as JSON.
    #[command(after_help = "Examples:
  jetsource rewind blogpost p1                its current state
  jetsource rewind blogpost p1 --to-seq 3     its state as of stream sequence 3")]
    Rewind {
        /// Aggregate type, for example blogpost.
        aggregate_type: String,
        /// Aggregate id.
        aggregate_id: String,
        /// Fold only events with a stream sequence at most N.
        #[arg(long, value_name = "N")]
        to_seq: Option<u64>,
        /// NATS URL; default: as for send.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
        /// Seconds one store read may take.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
    /// List this application's streams (its event streams and the streams of
    /// its key-value buckets, under the subject prefix): messages, bytes,
    /// subject count, first and last sequence, contract version.
    Streams {
        /// NATS URL; default: as for send.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
    },
    /// Write the JSON Schemas of the wire contract and of every hosted
    /// aggregate's commands and events (every event version's), refusing
    /// a change that breaks reading stored events.
    Schema {
        /// Output folder.
        #[arg(long, value_name = "DIR", default_value = "schemas/json")]
        out: PathBuf,
        /// Write nothing; exit 1 when a file is missing or differs, or when
        /// an event changed in a way that breaks reading stored events
        /// without a raised event version and an upcaster.
        #[arg(long)]
        check: bool,
    },
    /// Ask a projection: `query.<projection>.<path…>`, and print the answer.
    #[command(after_help = "Examples:
  jetsource query blogposts get p1                one post
  jetsource query blogposts get p1 --after-seq 12 once the projection applied stream sequence 12
  jetsource query blogposts list --limit 50       a page; the answer's `next` is the cursor of the next
  jetsource query blogposts list --after <cursor>

Exit codes: 0 ok; 1 not_found; 2 bad usage or bad_request; 3 no answer, timeout, halted, failing, too_large or unavailable.")]
    Query {
        /// The projection's name, for example blogposts.
        projection: String,
        /// The query's path tokens, for example `get p1` or `list`.
        #[arg(required = true)]
        path: Vec<String>,
        /// Answer only once the projection applied this position (the `seq`
        /// of a command reply, or `<stream>:<seq>[,…]`).
        #[arg(long, value_name = "SEQ")]
        after_seq: Option<String>,
        /// List queries: at most this many items.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// List queries: the cursor (`next`) of the previous page.
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
        /// Where NATS is.
        #[command(flatten)]
        target: QueryTarget,
    },
    /// Inspect and operate the projectors of a running `jetsource run`.
    Projector {
        /// What to inspect.
        #[command(subcommand)]
        command: ProjectorCommand,
    },
    /// Inspect the process managers the application hosts.
    Process {
        /// What to inspect.
        #[command(subcommand)]
        command: ProcessCommand,
    },
}

/// The `process` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProcessCommand {
    /// Print each process manager's phase, its consumers' positions and
    /// pending triggers, its instances, held deadlines and parked triggers
    /// (as JSON), read from JetStream.
    Status {
        /// NATS URL; default: as for send.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
    },
    /// List the triggers a process manager parked (as JSON).
    Parked {
        /// The process manager's name.
        name: String,
        /// NATS URL; default: as for send.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
    },
    /// React to a process manager's parked events again, after a fix.
    ReplayParked {
        /// The process manager's name.
        name: String,
        /// NATS URL; default: as for send.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Give up on one parked trigger of a process manager for good.
    SkipParked {
        /// The process manager's name.
        name: String,
        /// The parked trigger's stream, as `process parked` lists it.
        stream: String,
        /// The parked trigger's stream sequence.
        seq: u64,
        /// NATS URL; default: as for send.
        #[arg(long, value_name = "URL")]
        nats_url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
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
    /// Give up on one parked event for good: the projection goes on without
    /// it (a halted one resumes after it).
    SkipParked {
        /// The projection's name.
        name: String,
        /// The parked event's stream, as `projector parked` lists it.
        stream: String,
        /// The parked event's stream sequence.
        seq: u64,
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
    pub(crate) nats_url: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 10)]
    pub(crate) timeout: u64,
}

/// The command line, with `--help` examples in `app`'s terms.
fn parse<E: Subcommand + std::fmt::Debug>(app: &App) -> Cli<E> {
    use clap::{CommandFactory, FromArgMatches};
    let own: Vec<String> = E::augment_subcommands(clap::Command::new("own"))
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let program = std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "jetsource".to_string());
    let matches = Cli::<E>::command()
        .after_help(help::after_help(app, &program, &own))
        .get_matches();
    Cli::<E>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Parses the command line and runs `app` with jetsource's subcommands.
pub fn main(app: App) -> ExitCode {
    main_with(app, |never: NoCommands, _| async move { match never {} })
}

/// Parses the command line and runs `app` with jetsource's subcommands and
/// the application's own, `E` (a `clap::Subcommand`), which `run` serves.
///
/// ```no_run
/// use jetsource::cli::{self, Context};
/// use std::process::ExitCode;
///
/// #[derive(Debug, clap::Subcommand)]
/// enum Shop {
///     /// Print the hosted aggregate types.
///     Types,
/// }
///
/// fn main() -> ExitCode {
///     cli::main_with(jetsource::App::new(), |command: Shop, context: Context| async move {
///         match command {
///             Shop::Types => println!("{:?}", context.app.aggregate_types()),
///         }
///         ExitCode::SUCCESS
///     })
/// }
/// ```
pub fn main_with<E, F, Fut>(app: App, run: F) -> ExitCode
where
    E: Subcommand + std::fmt::Debug,
    F: FnOnce(E, Context) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let cli = parse::<E>(&app);
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("jetsource: {e}");
            return ExitCode::from(2);
        }
    };
    // The flag wins over the environment and the file, and is checked like them.
    if let Some(prefix) = cli.subject_prefix {
        config.nats.subject_prefix = prefix;
        if let Err(e) = config.validate() {
            eprintln!("jetsource: {e}");
            return ExitCode::from(2);
        }
    }
    let default_level = match cli.command {
        Commands::Jetsource(Command::Run { .. }) => "info",
        _ => "warn",
    };
    // Spans are exported by `run` only: a one-off command's would be
    // fragments of someone else's trace.
    let otlp = match (&cli.command, config.otlp_endpoint()) {
        (Commands::Jetsource(Command::Run { .. }), Ok(endpoint)) => endpoint,
        _ => None,
    };
    let telemetry = match crate::telemetry::install(default_level, cli.log_format, otlp.as_deref())
    {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("jetsource: {e}");
            return ExitCode::from(2);
        }
    };
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
    let code = match cli.command {
        Commands::Jetsource(command) => runtime.block_on(dispatch(app, config, command)),
        Commands::App(command) => runtime.block_on(run(command, Context { app, config })),
    };
    drop(runtime);
    telemetry.shutdown();
    code
}

async fn dispatch(app: App, config: Config, command: Command) -> ExitCode {
    match command {
        Command::Run {
            nats_url,
            error_ttl,
            error_capacity,
            roles,
            metrics_addr,
            console_addr,
        } => {
            let mut config = config;
            if let Some(roles) = roles {
                config.run.roles = roles;
            }
            let flags = [
                ("--error-ttl", "feedback.error_ttl", error_ttl),
                (
                    "--error-capacity",
                    "feedback.error_capacity",
                    error_capacity,
                ),
                ("--metrics-addr", "observability.metrics_addr", metrics_addr),
                ("--console-addr", "console.addr", console_addr),
            ];
            let set = flags
                .into_iter()
                .try_for_each(|(flag, setting, value)| match value {
                    Some(value) => config.set(flag, setting, &value),
                    None => Ok(()),
                });
            // Flags are checked like the file and the environment.
            if let Err(e) = set.and_then(|()| config.validate()) {
                eprintln!("jetsource: {e}");
                return ExitCode::from(2);
            }
            match app::run(&app, &config, nats_url.as_deref(), app::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "jetsource stopped");
                    eprintln!("jetsource: {e}");
                    match e {
                        app::RunError::Config(_) => ExitCode::from(2),
                        _ => ExitCode::from(3),
                    }
                }
            }
        }
        Command::Status { command_id, target } => {
            let subject = match namespace(&config, "status") {
                Ok(ns) => ns.status_subject(&command_id),
                Err(code) => return code,
            };
            query(&config, "status", subject, target).await
        }
        Command::Errors {
            query: ErrorsQuery::Get { command_id, target },
        } => {
            let subject = match namespace(&config, "errors get") {
                Ok(ns) => ns.errors_get_subject(&command_id),
                Err(code) => return code,
            };
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
            let subject = match namespace(&config, "errors list") {
                Ok(ns) => ns.errors_list_subject(&aggregate_type, &aggregate_id),
                Err(code) => return code,
            };
            query(&config, "errors list", subject, target).await
        }
        Command::Query {
            projection,
            path,
            after_seq,
            limit,
            after,
            target,
        } => {
            let request = read::QueryRequest {
                projection,
                path,
                after_seq,
                limit,
                after,
            };
            read::query(&config, request, target).await
        }
        Command::Projector {
            command: ProjectorCommand::Status { nats_url, timeout },
        } => projector_status(&config, nats_url.as_deref(), timeout).await,
        Command::Process {
            command: ProcessCommand::Status { nats_url },
        } => process::status(&app, &config, nats_url.as_deref()).await,
        Command::Process {
            command: ProcessCommand::Parked { name, nats_url },
        } => process::parked(&app, &config, nats_url.as_deref(), &name).await,
        Command::Process {
            command:
                ProcessCommand::ReplayParked {
                    name,
                    nats_url,
                    timeout,
                },
        } => process::operate(&app, &config, nats_url.as_deref(), &name, None, timeout).await,
        Command::Process {
            command:
                ProcessCommand::SkipParked {
                    name,
                    stream,
                    seq,
                    nats_url,
                    timeout,
                },
        } => {
            let parked = jetsource_projector::control::SkipRequest { stream, seq };
            process::operate(
                &app,
                &config,
                nats_url.as_deref(),
                &name,
                Some(parked),
                timeout,
            )
            .await
        }
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
        Command::Projector {
            command:
                ProjectorCommand::SkipParked {
                    name,
                    stream,
                    seq,
                    nats_url,
                    timeout,
                },
        } => {
            let parked = jetsource_projector::control::SkipRequest { stream, seq };
            crate::projector_ops::skip_parked(&config, nats_url.as_deref(), &name, &parked, timeout)
                .await
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
            send::send(
                &config,
                send::SendArgs {
                    aggregate_type,
                    aggregate_id,
                    command,
                    json,
                    nats_url,
                    command_id,
                    expected_seq,
                    timeout,
                    no_wait,
                },
            )
            .await
        }
        Command::Forget {
            aggregate_type,
            aggregate_id,
            target,
        } => forget::forget(&config, &aggregate_type, &aggregate_id, target).await,
        Command::Tail {
            filter,
            from_start,
            count,
            nats_url,
        } => {
            inspect::tail(
                &app,
                &config,
                nats_url.as_deref(),
                &filter,
                from_start,
                count,
            )
            .await
        }
        Command::Rewind {
            aggregate_type,
            aggregate_id,
            to_seq,
            nats_url,
            timeout,
        } => {
            inspect::rewind(
                &app,
                &config,
                nats_url.as_deref(),
                &aggregate_type,
                &aggregate_id,
                to_seq,
                timeout,
            )
            .await
        }
        Command::Streams { nats_url } => inspect::streams(&config, nats_url.as_deref()).await,
        Command::Schema { out, check } => schema(&app, &out, check),
    }
}

/// Writes (or with `check`, compares) the schema files. Exit 1 when
/// checking finds stale files or a change that breaks reading stored
/// events (writing refuses those too), 2 when they cannot be written.
fn schema(app: &App, out: &std::path::Path, check: bool) -> ExitCode {
    if check {
        let incompatible = crate::schema_files::incompatible(app, out);
        for change in &incompatible {
            eprintln!("jetsource schema: breaking: {change}");
        }
        let stale = crate::schema_files::stale(app, out);
        for path in &stale {
            eprintln!("jetsource schema: out of date: {}", path.display());
        }
        return match stale.is_empty() && incompatible.is_empty() {
            true => ExitCode::SUCCESS,
            false => ExitCode::from(1),
        };
    }
    match crate::schema_files::write(app, out) {
        Ok(written) => {
            print_json(&serde_json::json!({
                "written": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            }));
            ExitCode::SUCCESS
        }
        Err(crate::schema_files::WriteError::Incompatible(changes)) => {
            for change in &changes {
                eprintln!("jetsource schema: breaking: {change}");
            }
            eprintln!("jetsource schema: nothing written");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("jetsource schema: writing {}: {e}", out.display());
            ExitCode::from(2)
        }
    }
}
