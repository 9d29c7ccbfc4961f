//! The jetsource command side: the [`Aggregate`] trait and the runtime that
//! handles commands on NATS and appends events to JetStream.
//!
//! # Layout
//! In the order a command meets them:
//! - [`runtime`]: the builder ([`Runtime::builder`], [`RuntimeConfig`]),
//!   the command subscription, shutdown; `workers.rs`: the long-lived tasks
//!   that serve one command after another.
//! - [`command`]: one command's way from the message to the reply, a file
//!   per step: the request, the aggregate's slot in the state cache, its
//!   load, the idempotency record, the decision, the append and the apply
//!   after the ack, the retry policy, the typed failure and the reply.
//!   [`command::AggregateHandler`] handles one aggregate type's commands.
//! - [`aggregate`]: the domain contract (pure `handle`, infallible `apply`),
//!   from `jetsource-schemas`, where read models name it too.
//! - [`store`]: the JetStream event store, a file per concern: stream
//!   set-up, loads (direct gets, a short-lived consumer for long
//!   histories), appends (single publishes, atomic batches, group commit),
//!   their errors.
//! - [`snapshot`]: snapshots of long-lived aggregates: the bucket, and the
//!   idempotency record in chunks.
//! - [`forget`]: the `forget.<type>.<id>` request and its notice.
//! - [`keys`]: the data keys that seal personal fields, and forgetting one.
//! - [`metrics`]: counters and histograms, rendered for Prometheus.
//! - [`connect()`]: connecting with the server version check.
//! - [`testing`]: a given/when/then harness for aggregates.

pub use jetsource_schemas::aggregate;
pub mod command;
pub mod connect;
pub mod forget;
mod header_names;
pub mod keys;
pub mod metrics;
pub mod runtime;
pub mod snapshot;
pub mod store;
pub mod testing;
mod workers;

pub use aggregate::{Aggregate, DomainError, Rejection, RejectionKind};
pub use connect::connect;
pub use jetsource_schemas::{codec, error};
pub use runtime::{Runtime, RuntimeBuilder, RuntimeConfig};
