//! Where a persisted projection keeps its read model and its checkpoint:
//! the [`ReadStore`] seam.
//!
//! The runtime owns everything NATS-side of a persisted projection: its
//! durable consumers, the lease, generations and rebuilds, parking, the
//! status. A [`ReadStore`] owns what is stored: per generation, the read
//! model and the [`Checkpoint`] that says which events it holds. The
//! runtime hands it the new events of a batch in stream order, with the
//! checkpoint they advance, and acknowledges them only once `commit`
//! returned; it answers queries from it.
//!
//! Implementations: [`OneValue`] (a [`PersistedProjector`]'s whole state
//! and checkpoint in one KV value: fine for small models) and
//! [`DocumentStore`] (one KV entry per document, for a
//! [`crate::document::DocumentProjector`]). Host any other
//! with [`crate::ProjectorRuntimeBuilder::read_store`].
//!
//! # Contract
//! - **Exactly-once effect.** Delivery is at least once: after a crash the
//!   runtime commits again events a previous `commit` may have stored. It
//!   skips those at or below the checkpoint it knows, but a `commit` that
//!   returned `Err` (its answer lost while the server went away) may have
//!   been stored all the same: a store recognises events it already holds
//!   (by stream and sequence, against its own stored checkpoint or
//!   per-document sequences) and does not apply them twice.
//! - **The checkpoint is stored with the effects.** After `commit` returns
//!   `Ok`, the stored checkpoint is the one given, advanced over the events
//!   applied ([`Checkpoint::advance`]), and every effect of those events is
//!   stored. Storing both in one transaction (one KV value, one SQL
//!   transaction) is the simple way; otherwise effects first, checkpoint
//!   last.
//! - **Fencing.** `open` stores the given lease token in the checkpoint; a
//!   later `commit` must fail with [`ProjectionErrorKind::Conflict`] once
//!   another instance opened the generation (compare-and-set on a revision,
//!   or `WHERE lease = token`). The runtime then steps down.
//! - **Order and failures.** `commit` applies events in the order given and
//!   stops at the first whose apply fails: it stores those before it and
//!   reports how many it applied and the failure. An `Err` means nothing
//!   of this call is known stored: the runtime has the batch redelivered.
//!
//! # Layout
//! - `checkpoint`: [`Checkpoint`], what a generation has applied.
//! - `one_value`: [`OneValue`], the one-value store.
//! - `documents`: [`DocumentStore`], one KV entry per document.
//! - `document_query`: its `get` and `list` queries.
//! - `document_reads`: reading a batch's documents, batched.
//! - `key_index`: the key order its `list` pages are read in.

mod checkpoint;
mod document_query;
mod document_reads;
mod documents;
mod key_index;
pub(crate) mod one_value;

pub use checkpoint::Checkpoint;
pub use document_query::{DEFAULT_LIMIT, MAX_LIMIT};
pub use documents::{DocumentStore, DOCUMENT_CHECKPOINT_KEY, WRITES_IN_FLIGHT};
pub use one_value::OneValue;

use crate::config::PoisonPolicy;
use crate::error::ProjectionError;
use crate::event::Event;
use crate::projector::{ProjectorError, Query, QueryError};
#[cfg(doc)]
use crate::{error::ProjectionErrorKind, projector::PersistedProjector};
use std::future::Future;

/// A generation as `open` found it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    /// The checkpoint stored (a fresh one for new storage), with the
    /// opener's lease token in it.
    pub checkpoint: Checkpoint,
    /// The storage held data of another format and was emptied: the
    /// projection starts over from sequence 1, so the runtime recreates the
    /// generation's consumers.
    pub reset: bool,
}

/// What one `commit` stored.
#[derive(Debug)]
pub struct Committed {
    /// How many of the events given were applied and stored, in order.
    pub applied: usize,
    /// Why the event after those failed, when one did.
    pub failure: Option<ProjectorError>,
}

/// Where a persisted projection keeps its read model and checkpoint, one
/// generation (`0`, `1`, … — a rebuild builds the next) at a time. See the
/// [module docs](self) for the contract.
pub trait ReadStore: Send + Sync + 'static {
    /// The projection's name (see [`crate::Projector::name`]).
    fn name(&self) -> &'static str;

    /// The event subjects it follows (see [`crate::Projector::subjects`]).
    fn subjects(&self) -> Vec<String>;

    /// Its poison policy; the default keeps the runtime's.
    fn poison_policy(&self, default: PoisonPolicy) -> PoisonPolicy {
        default
    }

    /// The aggregate types whose forgotten notices (see
    /// [`jetsource_schemas::forgotten`]) `commit` is handed, in order with
    /// the events, as events of type [`crate::event::FORGOTTEN_EVENT`] from
    /// the notices stream; their position is kept in the checkpoint like a
    /// stream's. None by default: a store that asks for none never sees one.
    fn forgotten_types(&self) -> Vec<String> {
        Vec::new()
    }

    /// Opens generation `generation` for writing: creates its storage when
    /// missing, stores `lease` in its checkpoint (fencing out earlier
    /// openers) and returns that checkpoint.
    fn open(
        &self,
        generation: u64,
        lease: u64,
    ) -> impl Future<Output = Result<Opened, ProjectionError>> + Send;

    /// For an instance standing by: brings what queries on `generation`
    /// read up to what is stored, without writing; the stored checkpoint,
    /// or `None` when the generation has no storage yet.
    fn refresh(
        &self,
        generation: u64,
    ) -> impl Future<Output = Result<Option<Checkpoint>, ProjectionError>> + Send;

    /// Applies `events` (new ones, in stream order) to `generation` and
    /// stores them with `checkpoint` advanced over those applied; `live`:
    /// the projection meets them live (not in a rebuild's replay), so
    /// effects outside the read model may run.
    fn commit(
        &self,
        generation: u64,
        events: Vec<Event>,
        checkpoint: Checkpoint,
        live: bool,
    ) -> impl Future<Output = Result<Committed, ProjectionError>> + Send;

    /// Answers a query from `generation` (the one served).
    fn query(
        &self,
        generation: u64,
        query: Query,
    ) -> impl Future<Output = Result<serde_json::Value, QueryError>> + Send;

    /// Deletes generation `generation`'s storage; a missing one is fine.
    fn remove(&self, generation: u64) -> impl Future<Output = ()> + Send;
}
