//! `jetsource bench`: the reference application side by side with the bare JetStream path it
//! is built on, in one run against one nats-server.
//!
//! Every figure that has a baseline is reported as a ratio to it, measured
//! in the same run, because absolute numbers move with whatever else the
//! machine does. The bare responder and jetsource are hosted the same way:
//! in this process, each on its own NATS connection, driven by the same
//! client load generator on its own connections.
//!
//! # Layout
//! - [`env`](mod@env): the server, the connections, the hosted jetsource.
//! - [`load`]: the client load generator and its latency percentiles.
//! - [`workload`]: the commands sent (identical bytes for both paths).
//! - [`raw`]: the bare responder.
//! - [`roundtrip`], [`replay`], [`cold_load`], [`transfers`], [`sagas`]: the figures,
//!   jetsource hosted in this process.
//! - [`deployed`]: `jetsource run` as its own process, as shipped;
//!   [`deployed_replay`]: the same process replaying a read model of a
//!   million documents.
//! - [`seed`]: writing events straight into streams.
//! - [`report`]: the table and the JSON lines.

pub mod cold_load;
pub mod deployed;
pub mod deployed_replay;
pub mod env;
pub mod load;
pub mod raw;
pub mod replay;
pub mod report;
pub mod roundtrip;
pub mod sagas;
pub mod seed;
pub mod transfers;
pub mod workload;

use env::{Env, Settings};
use jetsource_handlers::RuntimeConfig;
use jetsource_schemas::error::Error;
use report::Report;

/// What went wrong running the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchErrorKind {
    /// The nats-server could not be found, installed or started.
    Server,
    /// NATS or JetStream failed.
    Nats,
    /// A figure could not be measured (wrong counts, timeouts).
    Failed,
    /// The options are invalid.
    Usage,
}

impl std::fmt::Display for BenchErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BenchErrorKind::Server => "nats-server",
            BenchErrorKind::Nats => "NATS",
            BenchErrorKind::Failed => "measurement failed",
            BenchErrorKind::Usage => "invalid options",
        })
    }
}

/// A bench failure.
pub type BenchError = Error<BenchErrorKind>;

trait BenchErrorExt {
    fn server(e: impl std::fmt::Display) -> Self;
    fn nats(e: impl std::fmt::Display) -> Self;
    fn failed(e: impl Into<String>) -> Self;
    fn failed_display(e: impl std::fmt::Display) -> Self;
}

impl BenchErrorExt for BenchError {
    fn server(e: impl std::fmt::Display) -> Self {
        Error::new(BenchErrorKind::Server, e.to_string())
    }
    fn nats(e: impl std::fmt::Display) -> Self {
        Error::new(BenchErrorKind::Nats, e.to_string())
    }
    fn failed(e: impl Into<String>) -> Self {
        Error::new(BenchErrorKind::Failed, e)
    }
    fn failed_display(e: impl std::fmt::Display) -> Self {
        Error::new(BenchErrorKind::Failed, e.to_string())
    }
}

/// The figures, in the order they run; `--only` takes one of these.
pub const FIGURES: &[&str] = &[
    "raw_command_roundtrip",
    "command_roundtrip",
    "rejection_roundtrip",
    "cold_load",
    "scale",
    "transfers",
    "sagas",
    "replay",
    "durable",
    "deployed",
    "documents",
];

/// How to run the bench.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A short run (under a minute) with smaller scales.
    pub quick: bool,
    /// JSON lines instead of a table.
    pub json: bool,
    /// Use this server instead of starting one.
    pub nats_url: Option<String>,
    /// Concurrent client tasks.
    pub clients: usize,
    /// Aggregates of the round-trip figures.
    pub aggregates: u64,
    /// Run one figure (and the baseline it is compared with).
    pub only: Option<String>,
    /// The `jetsource` binary the `deployed` figures start (`jetsource run`).
    pub binary: std::path::PathBuf,
}

/// The aggregate counts of the scale figures.
fn scales(quick: bool) -> &'static [u64] {
    if quick {
        &[1_000, 10_000, 50_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    }
}

/// Runs the bench with the reference application's aggregates hosted by a
/// runtime configured with `runtime_config`, printing each figure as it is
/// measured.
pub async fn run(options: &BenchOptions, runtime_config: RuntimeConfig) -> Result<(), BenchError> {
    if let Some(only) = &options.only {
        if !FIGURES.contains(&only.as_str()) {
            return Err(Error::new(
                BenchErrorKind::Usage,
                format!("unknown figure {only:?}; known: {}", FIGURES.join(", ")),
            ));
        }
    }
    if options.clients == 0 || options.aggregates == 0 {
        return Err(Error::new(
            BenchErrorKind::Usage,
            "--clients and --aggregates must be at least 1",
        ));
    }
    let wanted = |figure: &str| options.only.as_deref().is_none_or(|only| only == figure);
    let settings = Settings {
        quick: options.quick,
        // A task per aggregate at most, so no two tasks share one.
        clients: options
            .clients
            .min(usize::try_from(options.aggregates).unwrap_or(usize::MAX)),
        aggregates: options.aggregates,
    };
    // Group commit's default (auto) chooses batches or single publishes
    // for the server at hand, so both servers run the default settings.
    // The workloads and the bare baselines use unprefixed subjects, so the
    // bench serves without a prefix whatever the settings say (its figures
    // do not depend on one: the prefix only lengthens subjects).
    let mut runtime_config = runtime_config;
    runtime_config.namespace = jetsource_schemas::Namespace::default();
    let flushing_config = runtime_config.clone();
    let durable_config = runtime_config;
    let mut env = Env::start(
        settings.clone(),
        options.nats_url.as_deref(),
        flushing_config,
        false,
    )
    .await?;
    if !options.json {
        println!(
            "jetsource bench{}: nats-server {} at {}, {} clients, {} aggregates, {} cores\n",
            if options.quick { " --quick" } else { "" },
            env.server_version(),
            env.url,
            env.settings.clients,
            env.settings.aggregates,
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
    }
    let mut report = Report::new(options.json);
    if wanted("command_roundtrip") || wanted("rejection_roundtrip") {
        let [raw, contract, jetsource, rejections] = roundtrip::side_by_side(&mut env).await?;
        let contract = contract.against(&raw);
        let mut jetsource = jetsource.against(&raw);
        if let (Some(rate), Some(base)) = (jetsource.rate, contract.rate.filter(|r| *r > 0.0)) {
            jetsource = jetsource.with("vs_contract", (rate / base * 100.0).round() / 100.0);
        }
        let rejections = rejections.against(&jetsource);
        report.add(raw);
        report.add(contract);
        report.add(jetsource);
        report.add(rejections);
    } else if wanted("raw_command_roundtrip") {
        report.add(roundtrip::raw_command_roundtrip(&env).await?);
    }
    if wanted("cold_load") {
        for figure in cold_load::cold_load(&mut env).await? {
            report.add(figure);
        }
    }
    if wanted("scale") {
        let mut first: Option<report::Figure> = None;
        for &count in scales(options.quick) {
            let mut figure = roundtrip::scale(&mut env, count).await?;
            match &first {
                Some(first) => figure = figure.against(first),
                None => first = Some(figure.clone()),
            }
            report.add(figure);
        }
    }
    if wanted("transfers") {
        for figure in transfers::transfers(&mut env).await? {
            report.add(figure);
        }
    }
    if wanted("sagas") {
        for figure in sagas::sagas(&mut env).await? {
            report.add(figure);
        }
    }
    if wanted("replay") {
        for figure in replay::replay(&mut env).await? {
            report.add(figure);
        }
    }
    env.stop_jetsource().await;
    if wanted("deployed") {
        for figure in deployed::deployed(&env, &options.binary).await? {
            report.add(figure);
        }
    }
    if wanted("documents") {
        for figure in deployed_replay::documents_replay(&mut env, &options.binary).await? {
            report.add(figure);
        }
    }
    drop(env);
    if wanted("durable") || wanted("deployed") {
        // A second server, syncing every write, and enough clients that
        // batches can fill.
        let durable_settings = Settings {
            clients: settings.clients.max(DURABLE_CLIENTS),
            aggregates: settings.aggregates.max(DURABLE_CLIENTS as u64),
            ..settings
        };
        if options.nats_url.is_some() && !options.json {
            println!(
                "(durable figures against --nats-url: they measure that server's sync setting)"
            );
        }
        let mut durable = Env::start(
            durable_settings,
            options.nats_url.as_deref(),
            durable_config,
            true,
        )
        .await?;
        if wanted("durable") {
            for figure in roundtrip::durable(&mut durable).await? {
                report.add(figure);
            }
            durable.stop_jetsource().await;
        }
        if wanted("deployed") {
            for figure in deployed::deployed(&durable, &options.binary).await? {
                report.add(figure);
            }
        }
    }
    Ok(())
}

/// Concurrent clients of the durable figures, at least.
const DURABLE_CLIENTS: usize = 256;
