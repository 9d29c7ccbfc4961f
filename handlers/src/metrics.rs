//! The command side's metrics, kept in a `prometheus-client` registry and
//! encoded in the OpenMetrics text format on demand.
//!
//! `prometheus-client` rather than the `metrics` facade and its exporter:
//! it is the Prometheus project's own Rust client, its registry is a value
//! (no process-wide recorder to install, so an embedding application can
//! encode it beside its own), and its metrics are typed handles recorded
//! with one atomic operation, which is what the hot path had before.
//!
//! One registry per process ([`global`]), like a Prometheus client's
//! default registry: handlers record with one call per outcome, per
//! append and per state lookup, and whoever serves `/metrics` calls
//! [`Metrics::encode`]. Recording never blocks and never allocates: every
//! labelled series is created up front, so every one of them shows from
//! the first scrape, at zero.
//!
//! The process's registry records only once something serves it
//! ([`Metrics::set_recording`]): every command would otherwise pay for a
//! clock read and about eight atomic additions on cache lines both cores
//! fight over, for numbers nobody reads.

use crate::store::AppendErrorKind;
use jetsource_schemas::{CommandReply, RejectionCode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Upper bounds of the append latency buckets, in seconds.
pub const APPEND_SECONDS_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upper bounds of the commands-per-batch buckets (group commit).
pub const BATCH_COMMANDS_BUCKETS: [f64; 10] =
    [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1000.0];

/// Upper bounds of the events-per-append buckets.
pub const APPEND_EVENTS_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

const CODES: [RejectionCode; 6] = [
    RejectionCode::Validation,
    RejectionCode::NotFound,
    RejectionCode::Conflict,
    RejectionCode::BadRequest,
    RejectionCode::Unavailable,
    RejectionCode::Internal,
];

/// One label: its name and value.
type Label = (&'static str, &'static str);

/// A family of counters told apart by labels known when compiling.
type Counters<const N: usize> = Family<[Label; N], Counter>;

/// The series of `family` under `labels`, created now: each shows at zero
/// from the first scrape on, and recording is one atomic addition on the
/// handle kept, never a look-up in the family.
fn series<const N: usize>(family: &Counters<N>, labels: [Label; N]) -> Counter {
    family.get_or_create_owned(&labels)
}

/// The command side's counters, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    recording: AtomicBool,
    accepted: Counter,
    rejected: [Counter; CODES.len()],
    duplicates: Counter,
    append_seconds: Histogram,
    append_events: Histogram,
    /// The append histograms' count, for [`Metrics::appends`]: the
    /// histogram keeps its own count to itself.
    appends: Counter,
    conflicts: Counter,
    unavailable: Counter,
    append_failed: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    batch_commands: Histogram,
    batch_splits: Counter,
    commit_switches: Counter,
    batching_streams: Gauge,
    loads_direct: Counter,
    loads_consumer: Counter,
    load_fallbacks: Counter,
    snapshots_read: Counter,
    snapshots_ignored: Counter,
    snapshots_written: Counter,
    registry: Registry,
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// The process's registry; it records once [`Metrics::set_recording`]
/// turned it on, or once it is first encoded (serving `/metrics` does both).
pub fn global() -> &'static Metrics {
    GLOBAL.get_or_init(|| {
        let metrics = Metrics::new();
        metrics.set_recording(false);
        metrics
    })
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

const ACCEPTED: [Label; 2] = [("outcome", "accepted"), ("code", "")];
const HIT: [Label; 1] = [("result", "hit")];
const MISS: [Label; 1] = [("result", "miss")];
const DIRECT: [Label; 1] = [("read", "direct")];
const CONSUMER: [Label; 1] = [("read", "consumer")];
const READ: [Label; 1] = [("event", "read")];
const IGNORED: [Label; 1] = [("event", "ignored")];
const WRITTEN: [Label; 1] = [("event", "written")];

fn rejected(code: RejectionCode) -> [Label; 2] {
    [("outcome", "rejected"), ("code", code.as_str())]
}

impl Metrics {
    /// A registry with every counter at zero, recording.
    ///
    /// Names, help texts and labels are those dashboards already use; the
    /// registry adds a counter's `_total` and ends each help text with a
    /// period.
    pub fn new() -> Self {
        let commands = Counters::<2>::default();
        let state_cache = Counters::<1>::default();
        let loads = Counters::<1>::default();
        let snapshots = Counters::<1>::default();
        let metrics = Metrics {
            recording: AtomicBool::new(true),
            accepted: series(&commands, ACCEPTED),
            rejected: CODES.map(|c| series(&commands, rejected(c))),
            duplicates: Counter::default(),
            append_seconds: Histogram::new(APPEND_SECONDS_BUCKETS),
            append_events: Histogram::new(APPEND_EVENTS_BUCKETS),
            appends: Counter::default(),
            conflicts: Counter::default(),
            unavailable: Counter::default(),
            append_failed: Counter::default(),
            cache_hits: series(&state_cache, HIT),
            cache_misses: series(&state_cache, MISS),
            batch_commands: Histogram::new(BATCH_COMMANDS_BUCKETS),
            batch_splits: Counter::default(),
            commit_switches: Counter::default(),
            batching_streams: Gauge::default(),
            loads_direct: series(&loads, DIRECT),
            loads_consumer: series(&loads, CONSUMER),
            load_fallbacks: Counter::default(),
            snapshots_read: series(&snapshots, READ),
            snapshots_ignored: series(&snapshots, IGNORED),
            snapshots_written: series(&snapshots, WRITTEN),
            registry: Registry::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "jetsource_commands",
            "Commands answered, by outcome and rejection code",
            commands,
        );
        registry.register(
            "jetsource_commands_duplicate",
            "Accepted commands whose Command-Id had been accepted before (nothing appended)",
            metrics.duplicates.clone(),
        );
        registry.register(
            "jetsource_append_seconds",
            "Time of one append to JetStream (an atomic batch for several events)",
            metrics.append_seconds.clone(),
        );
        registry.register(
            "jetsource_append_events",
            "Events per append attempt",
            metrics.append_events.clone(),
        );
        registry.register(
            "jetsource_append_conflicts",
            "Appends refused because the aggregate moved (each retried until conflict_retries)",
            metrics.conflicts.clone(),
        );
        registry.register(
            "jetsource_append_unavailable",
            "Appends that found the store unavailable (each retried until unavailable_retries)",
            metrics.unavailable.clone(),
        );
        registry.register(
            "jetsource_append_failed",
            "Appends refused for good (stream full, refused)",
            metrics.append_failed.clone(),
        );
        registry.register(
            "jetsource_batch_commands",
            "Commands per batch sent by group commit (1: a command went out alone)",
            metrics.batch_commands.clone(),
        );
        registry.register(
            "jetsource_batch_splits",
            "Shared batches that failed on one command's conflict or duplicate and were appended command by command",
            metrics.batch_splits.clone(),
        );
        registry.register(
            "jetsource_group_commit_switches",
            "Changes of a stream's way of appending (shared batches or single publishes) chosen by group commit's auto mode, probes included",
            metrics.commit_switches.clone(),
        );
        registry.register(
            "jetsource_group_commit_batching_streams",
            "Streams whose appends share atomic batches now",
            metrics.batching_streams.clone(),
        );
        registry.register(
            "jetsource_state_cache",
            "Commands that found their aggregate's state in memory (hit) or not (miss)",
            state_cache,
        );
        registry.register(
            "jetsource_loads",
            "Aggregate histories read, by direct get alone or with the long tail through a consumer",
            loads,
        );
        registry.register(
            "jetsource_load_consumer_fallbacks",
            "Long loads whose consumer was refused or interrupted, finished by direct get (check the account may create consumers on its event streams)",
            metrics.load_fallbacks.clone(),
        );
        registry.register(
            "jetsource_snapshots",
            "Aggregate snapshots a load started from (read), found but could not use (ignored), or written",
            snapshots,
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Starts or stops recording; while off, every recording call returns
    /// at once and the counters stay where they are.
    pub fn set_recording(&self, on: bool) {
        self.recording.store(on, Ordering::Relaxed);
    }

    /// Whether recording calls count (callers skip measuring when not).
    pub fn recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    /// Counts one batch a commit lane sent, with the commands it carried.
    pub fn batch(&self, commands: usize) {
        if !self.recording() {
            return;
        }
        self.batch_commands.observe(commands as f64);
    }

    /// Counts a change of a stream's way of appending under group commit's
    /// `auto` mode: to shared batches (`batching`) or to single publishes.
    /// Counted whether or not recording is on: it is rare, and the gauge of
    /// streams batching must stay true.
    pub fn commit_mode(&self, batching: bool) {
        self.commit_switches.inc();
        match batching {
            true => self.batching_streams.inc(),
            false => self.batching_streams.dec(),
        };
    }

    /// Counts a shared batch that failed on a conflict or a duplicate and
    /// was appended command by command.
    pub fn batch_split(&self) {
        if !self.recording() {
            return;
        }
        self.batch_splits.inc();
    }

    /// Counts a command's reply.
    pub fn command(&self, reply: &CommandReply) {
        if !self.recording() {
            return;
        }
        match reply {
            CommandReply::Accepted(a) => {
                self.accepted.inc();
                if a.duplicate {
                    self.duplicates.inc();
                }
            }
            CommandReply::Rejected(r) => {
                if let Some(i) = CODES.iter().position(|c| *c == r.code) {
                    self.rejected[i].inc();
                }
            }
        }
    }

    /// Records one append attempt: how long it took, how many events it
    /// carried, and how it failed, if it did. A conflict or an outage is
    /// followed by a retry unless the command's retries ran out.
    pub fn append(&self, took: Duration, events: usize, error: Option<AppendErrorKind>) {
        if !self.recording() {
            return;
        }
        self.append_seconds.observe(took.as_secs_f64());
        self.append_events.observe(events as f64);
        self.appends.inc();
        let counter = match error {
            None => return,
            Some(AppendErrorKind::Conflict | AppendErrorKind::Duplicate) => &self.conflicts,
            Some(AppendErrorKind::Unavailable) => &self.unavailable,
            Some(_) => &self.append_failed,
        };
        counter.inc();
    }

    /// Counts one read of an aggregate's history: by direct get alone, or
    /// with its long tail through a consumer.
    pub fn load(&self, through_consumer: bool) {
        if !self.recording() {
            return;
        }
        match through_consumer {
            true => self.loads_consumer.inc(),
            false => self.loads_direct.inc(),
        };
    }

    /// Counts a long load whose consumer could not be used (refused,
    /// interrupted), finished by direct get.
    pub fn load_fallback(&self) {
        if !self.recording() {
            return;
        }
        self.load_fallbacks.inc();
    }

    /// Counts a snapshot a load started from (`Some(true)`), one it found
    /// and could not use (`Some(false)`), or one written (`None`).
    pub fn snapshot(&self, read: Option<bool>) {
        if !self.recording() {
            return;
        }
        match read {
            Some(true) => self.snapshots_read.inc(),
            Some(false) => self.snapshots_ignored.inc(),
            None => self.snapshots_written.inc(),
        };
    }

    /// Snapshots read, ignored and written.
    pub fn snapshot_counts(&self) -> (u64, u64, u64) {
        (
            self.snapshots_read.get(),
            self.snapshots_ignored.get(),
            self.snapshots_written.get(),
        )
    }

    /// Loads by direct get alone, loads through a consumer, and fallbacks.
    pub fn load_counts(&self) -> (u64, u64, u64) {
        (
            self.loads_direct.get(),
            self.loads_consumer.get(),
            self.load_fallbacks.get(),
        )
    }

    /// Records whether a command found its aggregate's state in memory.
    pub fn state_cache(&self, hit: bool) {
        if !self.recording() {
            return;
        }
        match hit {
            true => self.cache_hits.inc(),
            false => self.cache_misses.inc(),
        };
    }

    /// Commands answered with `code` (`None`: accepted).
    pub fn commands(&self, code: Option<RejectionCode>) -> u64 {
        match code {
            None => self.accepted.get(),
            Some(code) => CODES
                .iter()
                .position(|c| *c == code)
                .map_or(0, |i| self.rejected[i].get()),
        }
    }

    /// Appends refused because an aggregate had moved on (each followed by
    /// a reload and a new decision, unless the retries ran out).
    pub fn conflicts(&self) -> u64 {
        self.conflicts.get()
    }

    /// Appends attempted.
    pub fn appends(&self) -> u64 {
        self.appends.get()
    }

    /// Appends the handlers' state cache answered from memory, and those it
    /// had to load (or create).
    pub fn state_cache_counts(&self) -> (u64, u64) {
        (self.cache_hits.get(), self.cache_misses.get())
    }

    /// Appends these metrics to `out` in the OpenMetrics text format,
    /// without the closing `# EOF` (whoever serves them may append other
    /// registries first), and turns recording on: whatever serves the
    /// registry (jetsource's own `/metrics`, or an embedding application's)
    /// gets counts from its first scrape on without a
    /// [`Metrics::set_recording`] of its own.
    pub fn encode(&self, out: &mut String) -> std::fmt::Result {
        self.set_recording(true);
        prometheus_client::encoding::text::encode_registry(out, &self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_render_every_bucket() {
        let metrics = Metrics::new();
        metrics.append(Duration::from_micros(700), 1, None);
        metrics.append(
            Duration::from_millis(20),
            3,
            Some(AppendErrorKind::Conflict),
        );
        metrics.append(
            Duration::from_secs(60),
            1,
            Some(AppendErrorKind::Unavailable),
        );
        let mut text = String::new();
        metrics.encode(&mut text).expect("encoded");
        assert!(
            text.contains("jetsource_append_seconds_bucket{le=\"0.0005\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("jetsource_append_seconds_bucket{le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jetsource_append_seconds_bucket{le=\"0.025\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("jetsource_append_seconds_bucket{le=\"5.0\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("jetsource_append_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("jetsource_append_events_bucket{le=\"4.0\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("jetsource_append_conflicts_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jetsource_append_unavailable_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jetsource_append_seconds_count 3\n"),
            "{text}"
        );
    }

    #[test]
    fn commands_count_by_code() {
        let metrics = Metrics::new();
        metrics.command(&CommandReply::rejected("c", RejectionCode::NotFound, "no"));
        let mut text = String::new();
        metrics.encode(&mut text).expect("encoded");
        assert!(
            text.contains("jetsource_commands_total{outcome=\"rejected\",code=\"not_found\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jetsource_commands_total{outcome=\"accepted\",code=\"\"} 0\n"),
            "{text}"
        );
        assert_eq!(metrics.commands(Some(RejectionCode::NotFound)), 1);
    }

    #[test]
    fn a_registry_not_recording_counts_nothing_until_turned_on() {
        let metrics = Metrics::new();
        metrics.set_recording(false);
        metrics.command(&CommandReply::rejected("c", RejectionCode::NotFound, "no"));
        metrics.append(Duration::from_millis(1), 1, None);
        metrics.state_cache(true);
        metrics.batch(3);
        metrics.batch_split();
        assert_eq!(metrics.commands(Some(RejectionCode::NotFound)), 0);
        assert_eq!(metrics.appends(), 0);
        assert_eq!(metrics.state_cache_counts(), (0, 0));
        metrics.set_recording(true);
        metrics.command(&CommandReply::rejected("c", RejectionCode::NotFound, "no"));
        metrics.append(Duration::from_millis(1), 1, None);
        metrics.state_cache(true);
        assert_eq!(metrics.commands(Some(RejectionCode::NotFound)), 1);
        assert_eq!(metrics.appends(), 1);
        assert_eq!(metrics.state_cache_counts(), (1, 0));
    }

    #[test]
    fn rendering_a_registry_turns_its_recording_on() {
        let metrics = Metrics::new();
        metrics.set_recording(false);
        metrics.state_cache(true);
        let mut first = String::new();
        metrics.encode(&mut first).expect("encoded");
        assert!(metrics.recording());
        metrics.state_cache(true);
        assert_eq!(metrics.state_cache_counts(), (1, 0));
    }

    #[test]
    fn the_process_registry_records_only_when_served() {
        assert!(!global().recording());
    }
}
