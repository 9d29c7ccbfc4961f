//! Settings of the projector runtime.

use jetsource_schemas::Namespace;
use std::time::Duration;

/// Settings of the projector runtime. Every field documents its default.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// How long a query with `After-Seq` waits for the projection to reach
    /// that position before answering `timeout` (default 5 s).
    pub query_wait: Duration,
    /// The queue group of query subscribers (default `jetsource-queries`),
    /// so one of several processes answers each query.
    pub queue_group: String,
    /// Events applied together before the read model is published to
    /// queries, and, when persisted, written to its bucket once (default 256).
    pub batch: usize,
    /// Persisted projectors: how long JetStream waits for an ack before it
    /// redelivers (default 30 s). Redeliveries are recognised by their
    /// sequence and never applied twice.
    pub ack_wait: Duration,
    /// Persisted projectors: events delivered but not yet acknowledged, at
    /// most (default 1,000).
    pub max_ack_pending: i64,
    /// In-memory projectors: retries of an apply that failed with a
    /// transient error before the projector halts (default 5).
    pub apply_retries: u32,
    /// The first back-off between those retries; it grows linearly
    /// (default 100 ms).
    pub retry_backoff: Duration,
    /// Persisted projectors: deliveries of an event whose apply keeps
    /// failing before it is parked (default 5). Each failed delivery is
    /// redelivered after `retry_backoff` times the deliveries so far.
    pub max_deliveries: u32,
    /// Persisted projectors: what follows parking an event (default
    /// [`OnPoison::Stop`], so nothing is skipped unless a projector or the
    /// settings say so).
    pub on_poison: OnPoison,
    /// Persisted projectors: how long the active instance's lease lasts
    /// unrenewed (default 5 s); a standby takes over within about this
    /// long after the holder dies.
    pub lease_ttl: Duration,
    /// The subject prefix (default: none). Projectors name their subjects
    /// without it (`evt.blogpost.>`); the runtime follows them, and serves
    /// queries, control subjects and buckets, under it.
    pub namespace: Namespace,
}

/// What a persisted projector does once an event is parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPoison {
    /// Halt at the event and report why in the status.
    Stop,
    /// Go on with the next event; the parked one waits for `replay-parked`.
    Skip,
}

/// When an event counts as poison and what then happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoisonPolicy {
    /// Failed deliveries before the event is parked (at least 1).
    pub max_deliveries: u32,
    /// Stop or skip once parked.
    pub on_poison: OnPoison,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        ProjectorConfig {
            query_wait: Duration::from_secs(5),
            queue_group: "jetsource-queries".into(),
            batch: 256,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            apply_retries: 5,
            retry_backoff: Duration::from_millis(100),
            max_deliveries: 5,
            on_poison: OnPoison::Stop,
            lease_ttl: Duration::from_secs(5),
            namespace: Namespace::default(),
        }
    }
}

impl ProjectorConfig {
    /// The poison policy these settings give.
    pub fn poison_policy(&self) -> PoisonPolicy {
        PoisonPolicy {
            max_deliveries: self.max_deliveries.max(1),
            on_poison: self.on_poison,
        }
    }
}
