//! What every figure runs against: the nats-server (started here unless a
//! URL was given), the client connections of the load generator, an admin
//! connection, and jetsource itself, hosted in this process on its own
//! connection as `jetsource run --roles handlers` hosts it: the reference
//! application's aggregates, with the feedback observer.

use super::load::LoadShape;
use super::BenchError;
use super::BenchErrorExt as _;
use async_nats::Client;
use jetsource_feedback::{Feedback, FeedbackConfig};
use jetsource_handlers::runtime::RunningRuntime;
use jetsource_handlers::{Runtime, RuntimeConfig};
use jetsource_nats_server::{self as server, ServerOptions, ServerProcess};
use jetsource_reference::account::Account;
use jetsource_reference::blog::BlogPost;
use std::time::Duration;

/// Client connections the load generator spreads its tasks over.
const CLIENT_CONNECTIONS: usize = 4;

/// The settings of one bench run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Shorter runs and smaller scales.
    pub quick: bool,
    /// Concurrent client tasks.
    pub clients: usize,
    /// Aggregates of the round-trip figures.
    pub aggregates: u64,
}

/// The nats-server, connections and hosted jetsource of a run.
pub struct Env {
    /// The settings.
    pub settings: Settings,
    /// The server's client URL.
    pub url: String,
    /// The server, when this run started it.
    pub server: Option<ServerProcess>,
    _store: Option<tempfile::TempDir>,
    /// The load generator's connections.
    pub clients: Vec<Client>,
    /// An admin connection (stream set-up, seeding, account info).
    pub admin: Client,
    /// Unique per run, so figures never collide with earlier data.
    pub run_id: String,
    /// Whether the server this run started syncs every write.
    sync_always: bool,
    runtime_config: RuntimeConfig,
    jetsource: Option<(RunningRuntime, Feedback)>,
}

impl Env {
    /// Starts a nats-server (default flushing) unless `nats_url` is given,
    /// and connects.
    pub async fn start(
        settings: Settings,
        nats_url: Option<&str>,
        runtime_config: RuntimeConfig,
        sync_always: bool,
    ) -> Result<Self, BenchError> {
        let (url, server, store) = match nats_url {
            Some(url) => (url.to_string(), None, None),
            None => {
                let binary =
                    server::find_or_install(&server::tools_dir(std::path::Path::new(".tools")))
                        .map_err(BenchError::server)?;
                let dir = tempfile::Builder::new()
                    .prefix("jetsource-bench-")
                    .tempdir()
                    .map_err(|e| BenchError::server(format!("creating a temp dir: {e}")))?;
                let mut options = ServerOptions::new(dir.path().join("store"));
                // The default-mode figures use JetStream's default flushing;
                // the durable ones a server that syncs every write.
                options.sync_always = sync_always;
                let process = ServerProcess::start(&binary, options, &dir.path().join("run"))
                    .map_err(BenchError::server)?;
                (process.client_url(), Some(process), Some(dir))
            }
        };
        let mut clients = Vec::with_capacity(CLIENT_CONNECTIONS);
        for _ in 0..CLIENT_CONNECTIONS {
            clients.push(connect(&url).await?);
        }
        let admin = connect(&url).await?;
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        Ok(Env {
            settings,
            url,
            server,
            _store: store,
            clients,
            admin,
            run_id,
            sync_always,
            runtime_config,
            jetsource: None,
        })
    }

    /// Whether the server syncs every write (as this run started it; a
    /// server given by URL counts as what the run asked for).
    pub fn syncing(&self) -> bool {
        self.sync_always
    }

    /// The hosted jetsource's settings.
    pub fn runtime_config(&self) -> &RuntimeConfig {
        &self.runtime_config
    }

    /// The load shape of a round-trip figure.
    pub fn shape(&self) -> LoadShape {
        let (warmup, measure) = if self.settings.quick {
            (Duration::from_millis(500), Duration::from_secs(3))
        } else {
            (Duration::from_secs(2), Duration::from_secs(10))
        };
        LoadShape {
            tasks: self.settings.clients,
            warmup,
            measure,
        }
    }

    /// The rounds of figures measured side by side, and each round's shape:
    /// together as long as [`Env::shape`] measures one figure.
    pub fn round_shape(&self) -> (usize, LoadShape) {
        let (rounds, warmup, measure) = if self.settings.quick {
            (6, Duration::from_millis(200), Duration::from_millis(500))
        } else {
            // Forty rounds: the ratio of one full run moved by about ±0.04
            // between runs with twenty.
            (40, Duration::from_millis(200), Duration::from_millis(500))
        };
        (
            rounds,
            LoadShape {
                tasks: self.settings.clients,
                warmup,
                measure,
            },
        )
    }

    /// A JetStream context on the admin connection.
    pub fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.admin.clone())
    }

    /// The server's version.
    pub fn server_version(&self) -> String {
        self.admin.server_info().version
    }

    /// The server's resident memory now, in KiB, when this run started it.
    pub fn server_rss_kib(&self) -> Option<u64> {
        let pid = self.server.as_ref()?.pid();
        proc_status_kib(&format!("/proc/{pid}/status"), "VmRSS")
    }

    /// Makes sure jetsource serves commands, hosted in this process on its
    /// own connection, as `jetsource run --roles handlers` does: with the
    /// feedback observer, so every rejection is published as a notice
    /// (case 4) for the processes with the feedback role.
    pub async fn ensure_jetsource(&mut self) -> Result<(), BenchError> {
        if self.jetsource.is_some() {
            return Ok(());
        }
        let client = connect(&self.url).await?;
        let mut feedback = Feedback::new(
            client.clone(),
            FeedbackConfig {
                namespace: self.runtime_config.namespace.clone(),
                ..FeedbackConfig::default()
            },
        );
        let runtime = Runtime::builder(client.clone())
            .aggregate::<BlogPost>()
            .aggregate::<Account>()
            .config(self.runtime_config.clone())
            .observe(feedback.observer())
            .build()
            .await
            .map_err(BenchError::nats)?;
        feedback.start_notices();
        // `start` returns once the server has the command subscription.
        let running = runtime.start().await.map_err(BenchError::nats)?;
        self.jetsource = Some((running, feedback));
        Ok(())
    }

    /// Serves with `runtime_config` from now on (restarting the hosted
    /// jetsource if it runs).
    pub async fn reconfigure(&mut self, runtime_config: RuntimeConfig) {
        self.stop_jetsource().await;
        self.runtime_config = runtime_config;
    }

    /// Stops the hosted jetsource, letting commands in flight finish.
    pub async fn stop_jetsource(&mut self) {
        if let Some((running, feedback)) = self.jetsource.take() {
            if let Err(e) = running.shutdown().await {
                tracing::warn!(error = %e, "the hosted runtime did not stop cleanly");
            }
            feedback.shutdown().await;
        }
    }
}

async fn connect(url: &str) -> Result<Client, BenchError> {
    jetsource_handlers::connect(url)
        .await
        .map_err(BenchError::nats)
}

/// A `kB` field of a `/proc/<pid>/status` file (`VmRSS`, `VmHWM`).
pub fn proc_status_kib(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// This process's peak resident memory (`VmHWM`), in KiB.
pub fn own_peak_rss_kib() -> Option<u64> {
    proc_status_kib("/proc/self/status", "VmHWM")
}

/// CPU time (user and system, all threads) of the process behind a
/// `/proc/<pid>/stat` file, in clock ticks (100 per second on Linux).
pub fn cpu_ticks(stat_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing
    // parenthesis are plain. utime and stime are fields 14 and 15.
    let after = text.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Ticks per second of [`cpu_ticks`] (`CLK_TCK`, 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

impl Env {
    /// CPU ticks used so far by this process and by the server (when this
    /// run started it).
    pub fn cpu_ticks(&self) -> (Option<u64>, Option<u64>) {
        let server = self
            .server
            .as_ref()
            .and_then(|s| cpu_ticks(&format!("/proc/{}/stat", s.pid())));
        (cpu_ticks("/proc/self/stat"), server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_of_this_process() {
        // Burn a little CPU so the count cannot be zero.
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_ticks("/proc/self/stat").is_some_and(|t| t > 0));
        assert_eq!(cpu_ticks("/proc/no-such-process/stat"), None);
    }
}
