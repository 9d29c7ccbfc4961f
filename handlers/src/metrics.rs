//! The command side's metrics: plain atomics, rendered in the Prometheus
//! text format on demand.
//!
//! One registry per process ([`global`]), like a Prometheus client's
//! default registry: handlers record with one call per outcome, per
//! append and per state lookup, and whoever serves `/metrics` calls
//! [`Metrics::render`]. Recording never blocks and never allocates.
//!
//! The process's registry records only once something serves it
//! ([`Metrics::set_recording`]): every command would otherwise pay for a
//! clock read and about eight atomic additions on cache lines both cores
//! fight over, for numbers nobody reads.
//!
//! It stays one file past 500 lines: the registry, its recording calls and
//! its rendering change together, and a fifth of the file is their tests.

use crate::store::AppendErrorKind;
use jetsource_schemas::{CommandReply, RejectionCode};
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// A histogram with fixed buckets (`N` bounds, plus `+Inf`).
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    counts: [AtomicU64; N],
    count: AtomicU64,
    /// The sum in millionths, so it stays an integer.
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    const fn new(bounds: &'static [f64; N]) -> Self {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; N],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        // Buckets are stored non-cumulatively and summed when rendered.
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// The command side's counters.
#[derive(Debug)]
pub struct Metrics {
    recording: AtomicBool,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: [AtomicU64; CODES.len()],
    append_seconds: Histogram<13>,
    append_events: Histogram<8>,
    conflicts: AtomicU64,
    unavailable: AtomicU64,
    append_failed: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    batch_commands: Histogram<10>,
    batch_splits: AtomicU64,
    commit_switches: AtomicU64,
    batching_streams: std::sync::atomic::AtomicI64,
    loads_direct: AtomicU64,
    loads_consumer: AtomicU64,
    load_fallbacks: AtomicU64,
    snapshots_read: AtomicU64,
    snapshots_ignored: AtomicU64,
    snapshots_written: AtomicU64,
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// The process's registry; it records once [`Metrics::set_recording`]
/// turned it on, or once it is first rendered (serving `/metrics` does both).
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

impl Metrics {
    /// A registry with every counter at zero, recording.
    pub const fn new() -> Self {
        Metrics {
            recording: AtomicBool::new(true),
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            rejected: [const { AtomicU64::new(0) }; CODES.len()],
            append_seconds: Histogram::new(&APPEND_SECONDS_BUCKETS),
            append_events: Histogram::new(&APPEND_EVENTS_BUCKETS),
            conflicts: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            append_failed: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            batch_commands: Histogram::new(&BATCH_COMMANDS_BUCKETS),
            batch_splits: AtomicU64::new(0),
            commit_switches: AtomicU64::new(0),
            batching_streams: std::sync::atomic::AtomicI64::new(0),
            loads_direct: AtomicU64::new(0),
            loads_consumer: AtomicU64::new(0),
            load_fallbacks: AtomicU64::new(0),
            snapshots_read: AtomicU64::new(0),
            snapshots_ignored: AtomicU64::new(0),
            snapshots_written: AtomicU64::new(0),
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
        self.commit_switches.fetch_add(1, Ordering::Relaxed);
        self.batching_streams
            .fetch_add(if batching { 1 } else { -1 }, Ordering::Relaxed);
    }

    /// Counts a shared batch that failed on a conflict or a duplicate and
    /// was appended command by command.
    pub fn batch_split(&self) {
        if !self.recording() {
            return;
        }
        self.batch_splits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a command's reply.
    pub fn command(&self, reply: &CommandReply) {
        if !self.recording() {
            return;
        }
        match reply {
            CommandReply::Accepted(a) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                if a.duplicate {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            CommandReply::Rejected(r) => {
                if let Some(i) = CODES.iter().position(|c| *c == r.code) {
                    self.rejected[i].fetch_add(1, Ordering::Relaxed);
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
        let counter = match error {
            None => return,
            Some(AppendErrorKind::Conflict | AppendErrorKind::Duplicate) => &self.conflicts,
            Some(AppendErrorKind::Unavailable) => &self.unavailable,
            Some(_) => &self.append_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one read of an aggregate's history: by direct get alone, or
    /// with its long tail through a consumer.
    pub fn load(&self, through_consumer: bool) {
        if !self.recording() {
            return;
        }
        let counter = if through_consumer {
            &self.loads_consumer
        } else {
            &self.loads_direct
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a long load whose consumer could not be used (refused,
    /// interrupted), finished by direct get.
    pub fn load_fallback(&self) {
        if !self.recording() {
            return;
        }
        self.load_fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a snapshot a load started from (`Some(true)`), one it found
    /// and could not use (`Some(false)`), or one written (`None`).
    pub fn snapshot(&self, read: Option<bool>) {
        if !self.recording() {
            return;
        }
        let counter = match read {
            Some(true) => &self.snapshots_read,
            Some(false) => &self.snapshots_ignored,
            None => &self.snapshots_written,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Snapshots read, ignored and written.
    pub fn snapshot_counts(&self) -> (u64, u64, u64) {
        (
            self.snapshots_read.load(Ordering::Relaxed),
            self.snapshots_ignored.load(Ordering::Relaxed),
            self.snapshots_written.load(Ordering::Relaxed),
        )
    }

    /// Loads by direct get alone, loads through a consumer, and fallbacks.
    pub fn load_counts(&self) -> (u64, u64, u64) {
        (
            self.loads_direct.load(Ordering::Relaxed),
            self.loads_consumer.load(Ordering::Relaxed),
            self.load_fallbacks.load(Ordering::Relaxed),
        )
    }

    /// Records whether a command found its aggregate's state in memory.
    pub fn state_cache(&self, hit: bool) {
        if !self.recording() {
            return;
        }
        let counter = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Commands answered with `code` (`None`: accepted).
    pub fn commands(&self, code: Option<RejectionCode>) -> u64 {
        match code {
            None => self.accepted.load(Ordering::Relaxed),
            Some(code) => CODES
                .iter()
                .position(|c| *c == code)
                .map_or(0, |i| self.rejected[i].load(Ordering::Relaxed)),
        }
    }

    /// Appends refused because an aggregate had moved on (each followed by
    /// a reload and a new decision, unless the retries ran out).
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Appends attempted.
    pub fn appends(&self) -> u64 {
        self.append_seconds.count()
    }

    /// Appends the handlers' state cache answered from memory, and those it
    /// had to load (or create).
    pub fn state_cache_counts(&self) -> (u64, u64) {
        (
            self.cache_hits.load(Ordering::Relaxed),
            self.cache_misses.load(Ordering::Relaxed),
        )
    }

    /// Appends these metrics to `out` in the Prometheus text format, and
    /// turns recording on: whatever serves the registry (jetsource's own
    /// `/metrics`, or an embedding application's) gets counts from its first
    /// scrape on without a [`Metrics::set_recording`] of its own.
    pub fn render(&self, out: &mut String) {
        self.set_recording(true);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP jetsource_commands_total Commands answered, by outcome and rejection code.\n\
             # TYPE jetsource_commands_total counter\n\
             jetsource_commands_total{{outcome=\"accepted\",code=\"\"}} {}",
            load(&self.accepted)
        );
        for (code, count) in CODES.iter().zip(&self.rejected) {
            let _ = writeln!(
                out,
                "jetsource_commands_total{{outcome=\"rejected\",code=\"{}\"}} {}",
                code.as_str(),
                load(count)
            );
        }
        counter(
            out,
            "jetsource_commands_duplicate_total",
            "Accepted commands whose Command-Id had been accepted before (nothing appended).",
            load(&self.duplicates),
        );
        self.append_seconds.render(
            out,
            "jetsource_append_seconds",
            "Time of one append to JetStream (an atomic batch for several events).",
        );
        self.append_events
            .render(out, "jetsource_append_events", "Events per append attempt.");
        counter(
            out,
            "jetsource_append_conflicts_total",
            "Appends refused because the aggregate moved (each retried until conflict_retries).",
            load(&self.conflicts),
        );
        counter(
            out,
            "jetsource_append_unavailable_total",
            "Appends that found the store unavailable (each retried until unavailable_retries).",
            load(&self.unavailable),
        );
        counter(
            out,
            "jetsource_append_failed_total",
            "Appends refused for good (stream full, refused).",
            load(&self.append_failed),
        );
        self.batch_commands.render(
            out,
            "jetsource_batch_commands",
            "Commands per batch sent by group commit (1: a command went out alone).",
        );
        counter(
            out,
            "jetsource_batch_splits_total",
            "Shared batches that failed on one command's conflict or duplicate and were appended command by command.",
            load(&self.batch_splits),
        );
        counter(
            out,
            "jetsource_group_commit_switches_total",
            "Changes of a stream's way of appending (shared batches or single publishes) chosen by group commit's auto mode, probes included.",
            load(&self.commit_switches),
        );
        gauge(
            out,
            "jetsource_group_commit_batching_streams",
            "Streams whose appends share atomic batches now.",
            u64::try_from(self.batching_streams.load(Ordering::Relaxed)).unwrap_or(0),
        );
        let _ = writeln!(
            out,
            "# HELP jetsource_state_cache_total Commands that found their aggregate's state in memory (hit) or not (miss).\n\
             # TYPE jetsource_state_cache_total counter\n\
             jetsource_state_cache_total{{result=\"hit\"}} {}\n\
             jetsource_state_cache_total{{result=\"miss\"}} {}",
            load(&self.cache_hits),
            load(&self.cache_misses)
        );
        let _ = writeln!(
            out,
            "# HELP jetsource_loads_total Aggregate histories read, by direct get alone or with the long tail through a consumer.\n\
             # TYPE jetsource_loads_total counter\n\
             jetsource_loads_total{{read=\"direct\"}} {}\n\
             jetsource_loads_total{{read=\"consumer\"}} {}",
            load(&self.loads_direct),
            load(&self.loads_consumer)
        );
        counter(
            out,
            "jetsource_load_consumer_fallbacks_total",
            "Long loads whose consumer was refused or interrupted, finished by direct get (check the account may create consumers on its event streams).",
            load(&self.load_fallbacks),
        );
        let _ = writeln!(
            out,
            "# HELP jetsource_snapshots_total Aggregate snapshots a load started from (read), found but could not use (ignored), or written.\n\
             # TYPE jetsource_snapshots_total counter\n\
             jetsource_snapshots_total{{event=\"read\"}} {}\n\
             jetsource_snapshots_total{{event=\"ignored\"}} {}\n\
             jetsource_snapshots_total{{event=\"written\"}} {}",
            load(&self.snapshots_read),
            load(&self.snapshots_ignored),
            load(&self.snapshots_written)
        );
    }
}

/// Writes one counter with its help and type lines.
pub fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// Writes one gauge with its help and type lines.
pub fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
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
        metrics.render(&mut text);
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
            text.contains("jetsource_append_seconds_bucket{le=\"5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("jetsource_append_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("jetsource_append_events_bucket{le=\"4\"} 3\n"),
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
        metrics.render(&mut text);
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
        metrics.render(&mut first);
        assert!(metrics.recording());
        metrics.state_cache(true);
        assert_eq!(metrics.state_cache_counts(), (1, 0));
    }

    #[test]
    fn the_process_registry_records_only_when_served() {
        assert!(!global().recording());
    }
}
