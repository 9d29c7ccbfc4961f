//! Projectors for jetsource: read models folded from the event streams,
//! queried over NATS request/reply.
//!
//! A [`TypedProjector`] names itself, folds the decoded events of the
//! aggregate types its input follows ([`Envelope`], [`follows!`]) and
//! answers typed queries ([`typed::Queries`]); every one is a
//! [`Projector`], the raw form the runtime runs, which a tool needing raw
//! events implements itself. A [`Projector`] names itself, lists the event subjects it follows
//! (possibly over several aggregate types, one stream each), folds each
//! [`Event`] in `apply`, and answers [`Query`]s from its state. The
//! [`ProjectorRuntime`] attaches it as a JetStream consumer:
//!
//! - **in memory** ([`ProjectorRuntimeBuilder::in_memory`]): an ordered
//!   consumer per stream from sequence 1 at every start, then the live
//!   tail; every process serving queries holds the complete model;
//! - **persisted** ([`ProjectorRuntimeBuilder::persisted`], a
//!   [`PersistedProjector`]): a durable consumer per stream and one KV
//!   checkpoint holding the state with the last sequence applied per
//!   stream; restarts
//!   resume, redeliveries are recognised by sequence and never applied twice.
//!   One process at a time holds its [`lease`] and applies events; a
//!   rebuild builds a new generation beside the served one and switches
//!   when it caught up; events that keep failing are [`parked`];
//! - **documents** ([`ProjectorRuntimeBuilder::documents`], a
//!   [`DocumentProjector`]): persisted like the above, but one KV entry
//!   per document instead of one value for the whole model, so the model
//!   may grow past a message's size; `get` and `list` queries are built in;
//! - **any store** ([`ProjectorRuntimeBuilder::read_store`]): a persisted
//!   projection kept in a [`store::ReadStore`] of its own.
//!
//! Queries arrive on `query.<name>.<path…>`; a query carrying `After-Seq`
//! (the `seq` of a command reply) is answered only once that position is
//! applied, or with `timeout`. `query.projectors.status` reports each
//! projector's position and lag per stream. Nothing in the domain-facing
//! types ([`Projector`], [`Event`], [`Query`]) is a NATS type.
//!
//! Before attaching to a stream the runtime reads its `jetsource.contract`
//! metadata: a stream of another contract version is refused
//! ([`ProjectionErrorKind::ContractMismatch`]), one without the key is accepted.
//!
//! Under a subject prefix ([`ProjectorConfig::namespace`]) projectors still
//! name their subjects without it; the runtime puts every subject, stream
//! and bucket it uses under the prefix.
//!
//! # Layout
//! - [`projector`]: the traits a read model implements, and their error
//!   types.
//! - [`event`]: the event a projector folds, and the one conversion of a
//!   stored message into it.
//! - [`position`]: positions, `After-Seq`, projection names, subjects to
//!   streams.
//! - [`runtime`]: the builder, starting, stopping, status.
//! - `error`: [`ProjectionError`], what goes wrong setting up or running
//!   a projector.
//! - `shared`: what a running projector's driver, query server and status
//!   report share; applying one event; taking its locks.
//! - `memory`: the in-memory driver (ordered consumers from sequence 1).
//! - [`persisted`]: a KV-backed projection, batch by batch: opening it,
//!   applying a batch, its checkpoint, replaying parked events.
//! - `driver`: a persisted projection's life in one process: standby,
//!   lease, batches, control requests, rebuilds.
//! - [`query`]: the query subjects and replies.
//! - [`status`]: the status report.
//! - [`control`]: generations, control subjects, rebuild and replay clients.
//! - [`lease`]: one active instance per persisted projection.
//! - [`parked`]: events parked after failing too often.
//! - [`store`]: the [`store::ReadStore`] seam: where a persisted
//!   projection keeps its read model and checkpoint; the one-value store.
//! - [`document`]: [`DocumentProjector`], a read model of many documents
//!   stored one KV entry each ([`store::DocumentStore`]), or folded in
//!   memory ([`document::InMemory`]); their `get` and `list` queries.
//! - [`typed`]: typed projectors ([`TypedProjector`]) and their events:
//!   [`Envelope`], [`Meta`], [`Follows`] and [`follows!`] for several
//!   aggregate types; typed queries ([`typed::Queries`]).
//! - [`testing`]: given events, then this read model: projectors tested
//!   without a server.
//! - [`config`](mod@config): settings.

pub mod config;
pub mod control;
pub mod document;
mod driver;
mod error;
pub mod event;
pub mod keys;
pub mod lease;
mod memory;
pub mod parked;
pub mod persisted;
pub mod position;
pub mod projector;
pub mod query;
pub mod runtime;
mod shared;
pub mod status;
pub mod store;
pub mod testing;
mod trace;
pub mod typed;

pub use config::{OnPoison, PoisonPolicy, ProjectorConfig};
pub use document::{DocumentProjector, Forgotten};
pub use error::{ProjectionError, ProjectionErrorKind};
pub use event::{Event, EventError, EventErrorKind};
pub use position::Positions;
pub use projector::{
    PersistedProjector, Projector, ProjectorError, ProjectorErrorKind, Query, QueryError,
    QueryErrorCode,
};
pub use runtime::{ProjectorRuntime, ProjectorRuntimeBuilder, RunningProjectors};
pub use status::{Kind, Phase, StatusReport};
pub use typed::{Envelope, Follows, Meta, TypedProjector};
