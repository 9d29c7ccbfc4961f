//! jetsource as deployed: `jetsource run` as a process of its own, with the
//! shipped `config/jetsource.toml`, driven by the same load generator, over
//! the same connections, as the bare responder, in alternating rounds on one
//! fresh server. Once with only the handlers role (`--roles handlers`), once
//! with every role (the default), on a server with JetStream's default
//! flushing and on one syncing every write.
//!
//! The in-process figures ([`super::roundtrip`]) find where time goes; these
//! are the ones a user sees. Nothing here configures jetsource for the
//! server it meets: it runs as shipped.

use super::env::{cpu_ticks, Env, TICKS_PER_SECOND};
use super::load::{self, Sample};
use super::report::Figure;
use super::roundtrip::figure;
use super::workload::{Aggregates, BlogCommands};
use super::BenchErrorExt as _;
use super::{raw, BenchError};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shipped settings, when the bench runs from a checkout; otherwise
/// the built-in defaults, which the shipped file only documents.
fn shipped_config() -> Option<PathBuf> {
    let file = Path::new("config/jetsource.toml");
    file.is_file().then(|| file.to_path_buf())
}

/// A `jetsource run` child; killed on drop.
pub(crate) struct Deployed {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Deployed {
    /// Starts `binary run --nats-url <url>` with `roles` (all when `None`),
    /// in a temp folder, and waits for its ready line.
    pub(crate) fn start(binary: &Path, url: &str, roles: Option<&str>) -> Result<Self, BenchError> {
        let dir = tempfile::Builder::new()
            .prefix("jetsource-deployed-")
            .tempdir()
            .map_err(|e| BenchError::server(format!("creating a temp dir: {e}")))?;
        let mut command = Command::new(binary);
        command.arg("run").args(["--nats-url", url]);
        if let Some(config) = shipped_config() {
            let config = std::path::absolute(config)
                .map_err(|e| BenchError::server(format!("the config's path: {e}")))?;
            command.arg("--config").arg(config);
        }
        if let Some(roles) = roles {
            command.args(["--roles", roles]);
        }
        let mut child = command
            .current_dir(dir.path())
            .env_remove("JETSOURCE_CONFIG")
            .env_remove("JETSOURCE_ROLES")
            .env_remove("JETSOURCE_NATS_URL")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BenchError::server(format!("starting {}: {e}", binary.display())))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| BenchError::server("no stderr"))?;
        let (ready, is_ready) = std::sync::mpsc::channel();
        // Read every line, so the pipe never fills and blocks the child.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("jetsource ready") {
                    let _ = ready.send(());
                }
            }
        });
        is_ready
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| BenchError::server("jetsource run did not become ready"))?;
        Ok(Deployed { child, _dir: dir })
    }

    fn cpu_ticks(&self) -> Option<u64> {
        cpu_ticks(&format!("/proc/{}/stat", self.child.id()))
    }

    pub(crate) fn peak_rss_mib(&self) -> Option<u64> {
        super::env::proc_status_kib(&format!("/proc/{}/status", self.child.id()), "VmHWM")
            .map(|kib| kib / 1024)
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One side of a deployed comparison: its workload, where its tasks are in
/// their request sequences, what it measured, and the CPU its process used.
struct Side {
    workload: Arc<BlogCommands>,
    next: Vec<u64>,
    sample: Sample,
    ticks: u64,
}

impl Side {
    fn new(workload: BlogCommands) -> Self {
        Side {
            workload: Arc::new(workload),
            next: Vec::new(),
            sample: Sample::default(),
            ticks: 0,
        }
    }
}

/// The bare responder and `jetsource run` with `roles`, in alternating
/// rounds on `env`'s server; `label` names the figures
/// (`<label>_raw_roundtrip`, `<label>_roundtrip`), `tag` (short: ids go
/// into the titles the workload sends, which may be 200 characters at
/// most) their aggregates.
async fn compare(
    env: &Env,
    binary: &Path,
    label: &str,
    tag: &str,
    roles: Option<&str>,
) -> Result<[Figure; 2], BenchError> {
    let responder = raw::start(
        jetsource_handlers::connect(&env.url)
            .await
            .map_err(BenchError::nats)?,
        false,
    )
    .await
    .map_err(BenchError::failed)?;
    let deployed = Deployed::start(binary, &env.url, roles)?;
    let tasks = env.settings.clients as u64;
    let aggregates = |figure: &str| Aggregates {
        prefix: format!("{tag}{figure}-{}", env.run_id),
        count: env.settings.aggregates,
        tasks,
    };
    let mut bare = Side::new(BlogCommands {
        aggregates: aggregates("raw"),
        root: raw::root(false),
        seeded: false,
    });
    let mut served = Side::new(BlogCommands {
        aggregates: aggregates("js"),
        root: "cmd",
        seeded: false,
    });
    let (rounds, shape) = env.round_shape();
    for round in 0..rounds {
        for turn in 0..2 {
            let side = if (round + turn) % 2 == 0 {
                &mut bare
            } else {
                &mut served
            };
            let before = deployed.cpu_ticks();
            let sample =
                load::drive_from(&env.clients, shape, side.workload.clone(), &mut side.next).await;
            side.ticks += deployed
                .cpu_ticks()
                .zip(before)
                .map_or(0, |(after, before)| after.saturating_sub(before));
            side.sample.merge(sample);
        }
    }
    drop(responder);
    let raw_figure = figure(&format!("{label}_raw_roundtrip"), &bare.sample);
    let mut served_figure =
        figure(&format!("{label}_roundtrip"), &served.sample).against(&raw_figure);
    let answered = served.sample.count + served.sample.unexpected;
    if answered > 0 && served.ticks > 0 {
        // The jetsource process's own CPU per answered request, while its
        // rounds ran (its roles' work behind the replies included).
        let us = served.ticks as f64 / TICKS_PER_SECOND * 1e6 / answered as f64;
        served_figure = served_figure.with("process_cpu_us", (us * 10.0).round() / 10.0);
    }
    if let Some(mib) = deployed.peak_rss_mib() {
        served_figure = served_figure.with("process_peak_rss_mib", mib);
    }
    Ok([raw_figure, served_figure])
}

/// The roles measured, as (figure suffix, aggregate tag, `--roles`): the
/// handlers alone, with each other role, and every role (the default).
/// What a role costs is the difference between its figure and the
/// handlers' alone.
const ROLES: [(&str, &str, Option<&str>); 4] = [
    ("_handlers", "h", Some("handlers")),
    ("_handlers_feedback", "hf", Some("handlers,feedback")),
    ("_handlers_projectors", "hp", Some("handlers,projectors")),
    ("", "a", None),
];

/// `deployed_*` on a server with default flushing and `durable_deployed_*`
/// on one syncing every write: each set of roles in `ROLES` against the
/// bare responder in the same run.
pub async fn deployed(env: &Env, binary: &Path) -> Result<Vec<Figure>, BenchError> {
    let prefix = if env.syncing() {
        "durable_deployed"
    } else {
        "deployed"
    };
    let started = Instant::now();
    let mut figures = Vec::new();
    for (suffix, tag, roles) in ROLES {
        let tag = format!("{}{tag}", if env.syncing() { "s" } else { "d" });
        figures.extend(compare(env, binary, &format!("{prefix}{suffix}"), &tag, roles).await?);
    }
    tracing::debug!(elapsed = ?started.elapsed(), "deployed figures");
    Ok(figures)
}
