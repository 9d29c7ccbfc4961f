//! Whether a stream's appends share atomic batches, decided from what the
//! appends cost on the server at hand.
//!
//! On a server that syncs every write, an atomic batch is synced as one
//! unit, so sharing batches multiplies throughput (4 × the bare path was
//! measured with 256 clients). Under JetStream's default flushing the same
//! batches cost the server more per message than pipelined single publishes
//! and cap what is in flight: about a fifth of the single publishes'
//! throughput was measured. Which one a server is cannot be asked, and can
//! change under a running process (a cluster's leader moves, a disk slows),
//! so the choice is made by measuring: while the stream is busy, the rate
//! of completed appends in the current way is compared, now and then, with
//! a short probe of the other way, and the faster one is kept.
//!
//! [`Policy`] is that decision as a value, fed observations and the clock
//! by its caller, so it is tested without a server. [`Chooser`] is what
//! the append path touches per append: two atomic counters, and the lock
//! of the policy once a window has passed.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one measurement lasts.
pub(crate) const WINDOW: Duration = Duration::from_millis(200);
/// Appends in flight at once on a stream from which it counts as busy: with
/// fewer, batches hardly form and either way costs about the same.
pub(crate) const BUSY_IN_FLIGHT: usize = 4;
/// Busy windows between probes at first, and again after a switch.
const FIRST_PROBE_AFTER: u32 = 10;
/// The longest stretch between probes once the choice keeps holding: a
/// probe spends a window in the slower way, so probing rarely costs little.
const LONGEST_PROBE_AFTER: u32 = 150;
/// How much faster the other way must be to be taken: measurements move,
/// and switching back and forth costs a settling window each time.
const MARGIN: f64 = 1.10;
/// A change of the measured rate this large (either way) says the server or
/// the load changed: probe again soon.
const CHANGE: f64 = 0.30;
/// Busy windows in a row the change must hold for: a single odd window (a
/// burst ending, a pause of the clients) is not a new server, and each
/// probe it set off would cost a window in the slower way.
const CHANGE_WINDOWS: u32 = 3;

/// Where the policy is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// The window after a change of way is not measured: appends started
    /// the other way are still finishing.
    Settling { then: Then },
    /// Measuring the current way.
    Measuring,
    /// Measuring the other way, to compare with `base` (the current way's
    /// rate before the probe).
    Probing { base: f64 },
}

/// What comes after a settling window.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Then {
    Measure,
    Probe { base: f64 },
}

/// The decision: batching or single publishes, and when to look again.
#[derive(Debug)]
pub(crate) struct Policy {
    batching: bool,
    phase: Phase,
    /// The current way's rate, smoothed over busy windows.
    rate: Option<f64>,
    /// Busy windows measured since the last probe.
    since_probe: u32,
    /// Busy windows between probes now.
    probe_after: u32,
    /// Busy windows in a row whose rate was off the smoothed one by more
    /// than [`CHANGE`].
    changed: u32,
}

impl Policy {
    /// A policy starting with single publishes: the way with the lowest
    /// latency, and the one that is right for the most common server.
    pub(crate) fn new() -> Self {
        Policy {
            batching: false,
            phase: Phase::Measuring,
            rate: None,
            since_probe: 0,
            probe_after: FIRST_PROBE_AFTER,
            changed: 0,
        }
    }

    /// Whether appends share batches now.
    pub(crate) fn batching(&self) -> bool {
        self.batching
    }

    /// Takes one window's measurement: `rate` completed appends a second,
    /// `busy` whether the stream was busy through it. Returns the way to
    /// append from now on.
    pub(crate) fn observe(&mut self, rate: f64, busy: bool) -> bool {
        match self.phase {
            Phase::Settling { then } => {
                self.phase = match then {
                    Then::Measure => Phase::Measuring,
                    Then::Probe { base } => Phase::Probing { base },
                };
            }
            // An idle stream says nothing about which way is faster.
            _ if !busy => {}
            Phase::Measuring => self.measure(rate),
            Phase::Probing { base } => {
                if rate > base * MARGIN {
                    // The other way is faster: keep it.
                    self.rate = Some(rate);
                    self.probe_after = FIRST_PROBE_AFTER;
                    self.phase = Phase::Measuring;
                } else {
                    // Back to the way that was faster, which holds for now.
                    self.batching = !self.batching;
                    self.probe_after = (self.probe_after * 2).min(LONGEST_PROBE_AFTER);
                    self.phase = Phase::Settling {
                        then: Then::Measure,
                    };
                }
                self.since_probe = 0;
            }
        }
        self.batching
    }

    fn measure(&mut self, rate: f64) {
        let smoothed = match self.rate {
            Some(before) if (rate - before).abs() > before * CHANGE => {
                self.changed += 1;
                if self.changed >= CHANGE_WINDOWS {
                    // The server or the load changed: look at the other
                    // way soon.
                    self.changed = 0;
                    self.probe_after = FIRST_PROBE_AFTER;
                    rate
                } else {
                    before
                }
            }
            Some(before) => {
                self.changed = 0;
                before * 0.7 + rate * 0.3
            }
            None => rate,
        };
        self.rate = Some(smoothed);
        self.since_probe += 1;
        if self.since_probe >= self.probe_after {
            self.batching = !self.batching;
            self.phase = Phase::Settling {
                then: Then::Probe { base: smoothed },
            };
        }
    }
}

/// One stream's way of appending, as the append path sees it.
#[derive(Debug)]
pub(crate) struct Chooser {
    batching: AtomicBool,
    in_flight: AtomicUsize,
    completed: AtomicU64,
    /// Completions that found the stream busy (for the window's verdict).
    busy: AtomicU64,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    policy: Policy,
    started: Instant,
    completed_at_start: u64,
    busy_at_start: u64,
}

impl Chooser {
    pub(crate) fn new(now: Instant) -> Self {
        let policy = Policy::new();
        Chooser {
            batching: AtomicBool::new(policy.batching()),
            in_flight: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            window: Mutex::new(Window {
                policy,
                started: now,
                completed_at_start: 0,
                busy_at_start: 0,
            }),
        }
    }

    /// Whether the next append shares a batch; the caller reports its end
    /// with [`Self::finished`].
    pub(crate) fn start(&self) -> bool {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.batching.load(Ordering::Relaxed)
    }

    /// One append ended at `now` (whatever its outcome: a refused append
    /// cost the server as much).
    pub(crate) fn finished(&self, now: Instant) {
        let in_flight = self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.completed.fetch_add(1, Ordering::Relaxed);
        if in_flight >= BUSY_IN_FLIGHT {
            self.busy.fetch_add(1, Ordering::Relaxed);
        }
        // Whoever finds the window over closes it; the others go on.
        let Ok(mut window) = self.window.try_lock() else {
            return;
        };
        let elapsed = now.saturating_duration_since(window.started);
        if elapsed < WINDOW {
            return;
        }
        let completed = self.completed.load(Ordering::Relaxed);
        let busy = self.busy.load(Ordering::Relaxed);
        let done = completed - window.completed_at_start;
        let rate = done as f64 / elapsed.as_secs_f64();
        // Busy when nearly every append of the window found many in flight,
        // and the window had no idle stretch in it: a window closes only
        // when an append ends, so one that lasted far past its length spans
        // a pause, and its rate says nothing about the way of appending.
        let was_busy =
            elapsed < WINDOW * 2 && (busy - window.busy_at_start) * 10 >= done * 9 && done > 0;
        let before = window.policy.batching();
        let batching = window.policy.observe(rate, was_busy);
        if batching != before {
            tracing::debug!(
                batching,
                rate,
                "group commit: changing the way of appending"
            );
        }
        self.batching.store(batching, Ordering::Relaxed);
        window.started = now;
        window.completed_at_start = completed;
        window.busy_at_start = busy;
    }

    /// Whether appends share batches now.
    pub(crate) fn batching(&self) -> bool {
        self.batching.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `policy` busy windows whose rate is `single` or `batched` per
    /// the way it appends in, `windows` times; returns the share of those
    /// windows spent batching.
    fn run(policy: &mut Policy, single: f64, batched: f64, windows: u32) -> f64 {
        let mut batching_windows = 0;
        for _ in 0..windows {
            let rate = if policy.batching() { batched } else { single };
            if policy.batching() {
                batching_windows += 1;
            }
            policy.observe(rate, true);
        }
        f64::from(batching_windows) / f64::from(windows)
    }

    #[test]
    fn a_syncing_server_gets_batches_and_a_flushing_one_single_publishes() {
        // Rates as measured: syncing, 4.5k/s single against 18k/s batched;
        // default flushing, 40k/s single against 9k/s batched.
        let mut syncing = Policy::new();
        run(&mut syncing, 4_500.0, 18_000.0, 50);
        assert!(syncing.batching(), "batches on a syncing server");
        let share = run(&mut syncing, 4_500.0, 18_000.0, 1_000);
        assert!(share > 0.95, "most of the time batching: {share}");

        let mut flushing = Policy::new();
        let share = run(&mut flushing, 40_000.0, 9_000.0, 1_000);
        assert!(!flushing.batching());
        assert!(share < 0.05, "probes only, and rarer with time: {share}");
    }

    #[test]
    fn a_server_that_changes_under_load_is_followed() {
        let mut policy = Policy::new();
        run(&mut policy, 4_500.0, 18_000.0, 100);
        assert!(policy.batching());
        // The disk stops syncing every write (or the leader moved to a
        // server that does not): single publishes are faster now.
        run(&mut policy, 40_000.0, 9_000.0, 100);
        assert!(!policy.batching(), "followed within a hundred windows");
        run(&mut policy, 4_500.0, 18_000.0, 100);
        assert!(policy.batching(), "and back");
    }

    #[test]
    fn an_idle_stream_keeps_its_way_and_never_probes() {
        let mut policy = Policy::new();
        for _ in 0..1_000 {
            assert!(!policy.observe(10.0, false));
        }
        run(&mut policy, 4_500.0, 18_000.0, 50);
        assert!(policy.batching());
        for _ in 0..1_000 {
            assert!(policy.observe(10.0, false), "not busy: no probe, no switch");
        }
    }

    #[test]
    fn odd_windows_now_and_then_set_off_no_probes() {
        // A flushing server, with every seventh window at a third of the
        // rate (clients pausing): only the regular probes go out.
        let mut policy = Policy::new();
        let mut batching_windows = 0;
        for i in 0..1_000 {
            let rate = match (policy.batching(), i % 7 == 6) {
                (true, _) => 9_000.0,
                (false, true) => 13_000.0,
                (false, false) => 40_000.0,
            };
            if policy.batching() {
                batching_windows += 1;
            }
            policy.observe(rate, true);
        }
        assert!(!policy.batching());
        assert!(batching_windows < 50, "{batching_windows} windows batching");
    }

    #[test]
    fn close_rates_do_not_flap() {
        let mut policy = Policy::new();
        let mut changes = 0;
        let mut before = policy.batching();
        for i in 0..1_000 {
            // Within the margin of each other, with a little noise.
            let noise = if i % 2 == 0 { 1.02 } else { 0.98 };
            let rate = if policy.batching() {
                10_300.0
            } else {
                10_000.0
            } * noise;
            let now = policy.observe(rate, true);
            if now != before {
                changes += 1;
                before = now;
            }
        }
        // Probes go out and come back; the gaps between them grow.
        assert!(changes <= 20, "{changes} changes in 1,000 windows");
    }
}
