//! The jetsource command side: the [`Aggregate`] trait and the runtime that
//! handles commands on NATS and appends events to JetStream.
//!
//! # Layout
//! - [`aggregate`]: the domain contract (pure `handle`, infallible `apply`).
//! - [`testing`]: a given/when/then harness for aggregates.
//! - [`store`]: the JetStream event store: stream set-up, loads (direct
//!   gets, a short-lived consumer for long histories), appends (single
//!   publishes, atomic batches, group commit), a file per concern.
//! - [`command`]: one command's way, from the message to the reply: the
//!   request, one aggregate type's handler (state cache, one command per
//!   aggregate at a time, conflict retries, idempotency).
//! - [`snapshot`]: snapshots of long-lived aggregates.
//! - [`metrics`]: counters and histograms, rendered for Prometheus.
//! - [`runtime`]: the builder, the command subscription and shutdown.
//! - [`connect()`]: connecting with the server version check.

pub mod aggregate;
pub mod command;
pub mod connect;
mod header_names;
pub mod metrics;
pub mod runtime;
pub mod snapshot;
pub mod store;
pub mod testing;
mod workers;

pub use aggregate::{Aggregate, Rejection, RejectionKind};
pub use connect::connect;
pub use jetsource_schemas::{codec, error};
pub use runtime::{Runtime, RuntimeBuilder, RuntimeConfig};
