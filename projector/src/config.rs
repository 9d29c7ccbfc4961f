//! Settings of the projector runtime.

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
    /// Retries of an apply that failed with a transient error before the
    /// projector halts (default 5).
    pub apply_retries: u32,
    /// The first back-off between those retries; it grows linearly
    /// (default 100 ms).
    pub retry_backoff: Duration,
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
        }
    }
}
