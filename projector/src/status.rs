//! What `query.projectors.status` answers: per projector and stream, the
//! last sequence applied, the stream's last sequence and the lag.

use jetsource_schemas::Namespace;
use serde::{Deserialize, Serialize};

/// The subject serving [`StatusReport`] as JSON (without a subject prefix;
/// see [`status_subject`]).
pub const STATUS_SUBJECT: &str = "query.projectors.status";

/// The status subject in `namespace`: `<prefix>.query.projectors.status`.
pub fn status_subject(namespace: &Namespace) -> String {
    namespace.subject(STATUS_SUBJECT)
}

/// The projectors of the process that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// One entry per projector.
    pub projectors: Vec<ProjectorStatus>,
}

/// One projector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectorStatus {
    /// Its name.
    pub name: String,
    /// `in_memory` or `persisted`.
    pub kind: Kind,
    /// Where it is.
    pub phase: Phase,
    /// Why it halted or is failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// One entry per stream it follows.
    pub streams: Vec<StreamStatus>,
}

/// The two kinds of read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Folded in memory from sequence 1 at every start.
    InMemory,
    /// Kept in a KV bucket, driven by a durable consumer.
    Persisted,
}

/// Where a projector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not started yet.
    Starting,
    /// Persisted: another process holds the lease and applies events; this
    /// one answers queries from the stored checkpoint and takes over when the
    /// holder's lease runs out.
    Standby,
    /// Applying the history that was in the streams when it started.
    Replaying,
    /// Caught up on every stream; following the live tail.
    Live,
    /// Stopped at an event it could not apply (never skipped); queries
    /// still answer from the state before it.
    Halted,
    /// Persisted: its store keeps refusing the writes of a batch (`error`
    /// says why; the streams' `applied_seq` is where it is stuck, `lag`
    /// how far behind). It retries with a growing back-off and is `live`
    /// again once a write succeeds; queries answer from what is stored.
    Failing,
    /// Shut down.
    Stopped,
}

/// One stream of one projector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStatus {
    /// The stream (`EVT_BLOGPOST`).
    pub stream: String,
    /// The filter subjects followed in it.
    pub subjects: Vec<String>,
    /// The stream sequence of the last event applied (0: none).
    pub applied_seq: u64,
    /// The stream's last sequence now.
    pub stream_last_seq: u64,
    /// `stream_last_seq - applied_seq`: stream sequences not yet covered.
    /// For a projector following part of a stream it also counts events it
    /// does not follow; `pending` does not.
    pub lag: u64,
    /// Events it follows that JetStream still had to deliver, as of the last
    /// delivery (persisted: as of now, delivered-but-unacknowledged included).
    pub pending: u64,
    /// The stream's last sequence when the projector started.
    pub head_at_start: u64,
    /// It has applied everything that was in the stream when it started.
    pub caught_up: bool,
}
