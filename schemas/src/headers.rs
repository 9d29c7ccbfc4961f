//! Header names of the contract.
//!
//! Clients may send [`COMMAND_ID`], [`CORRELATION_ID`], [`CAUSATION_ID`] and
//! [`EXPECTED_SEQ`] with a command. Every stored event carries
//! [`COMMAND_ID`], [`EVENT_VERSION`] when its version is not 1, and the
//! correlation and causation ids when the command had them.

/// The command's id: `[A-Za-z0-9_-]{1,128}`, generated when absent.
/// Command ids are global: one id names one command on one aggregate.
pub const COMMAND_ID: &str = "Command-Id";
/// An id shared by every message of one business flow; copied onto events.
pub const CORRELATION_ID: &str = "Correlation-Id";
/// The id of the message that caused this one; copied onto events.
pub const CAUSATION_ID: &str = "Causation-Id";
/// The aggregate's stream sequence the client decided on. When the aggregate
/// has moved past it, the command is rejected with `conflict`.
pub const EXPECTED_SEQ: &str = "Expected-Seq";
/// The schema version of an event's body (a positive integer); an event
/// without it is at version 1.
pub const EVENT_VERSION: &str = "Event-Version";
/// An event's time, RFC 3339 UTC, when it differs from the time JetStream
/// stored it: jetsource does not write it (an event is stored as it is
/// decided), tools that copy events from elsewhere may. Version 1 of the
/// contract wrote it on every event.
pub const EVENT_TIME: &str = "Event-Time";
/// W3C Trace Context on a command, carried onto its events (see
/// [`crate::trace`]).
pub const TRACEPARENT: &str = crate::trace::TRACEPARENT;
/// On a query: answer only once the read model has applied this position.
pub const AFTER_SEQ: &str = "After-Seq";
