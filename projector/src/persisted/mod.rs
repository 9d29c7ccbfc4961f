//! A persisted projection: a durable pull consumer per stream with
//! explicit acks, and a [`ReadStore`] holding the read model of each
//! generation together with its [`Checkpoint`], the last stream sequence
//! applied per stream.
//!
//! Each batch's new events are committed to the store with the advanced
//! checkpoint as one step, and only then acknowledged. A crash between the
//! commit and the acks makes JetStream redeliver the batch; those events
//! carry sequences at or below the stored ones and are acknowledged without
//! being applied: an exactly-once effect under at-least-once delivery. A
//! restart loads the checkpoint and resumes from the durable consumer.
//!
//! The driver never applies an event past a missing one: when a stream
//! sequence jumps, it asks the stream whether a followed event lies in
//! between, and if so leaves the later ones for redelivery.
//!
//! An event whose apply fails is delivered again with a growing back-off;
//! after the poison policy's number of deliveries it is parked (see
//! [`crate::parked`]) and the projection halts or skips it. A skipped
//! event's position is kept in the checkpoint's `skipped` set until
//! `replay-parked` applies it, in the same commit that removes it from the
//! set: it is never applied twice.
//!
//! Opening a projection stores the opener's lease token in its checkpoint,
//! so an instance that opened it earlier can no longer commit: see
//! [`crate::lease`].
//!
//! # Layout
//! - `open`: opening a generation: its storage, its checkpoint, its durable
//!   consumers.
//! - `batch`: taking one batch of deliveries and committing its new events.
//! - `checkpoint`: the one-value store's key.
//! - `replay`: applying parked events again (`replay-parked`).

mod batch;
mod checkpoint;
mod open;
mod replay;

pub use batch::Batch;
pub use checkpoint::{Checkpoint, CHECKPOINT_KEY};
pub(crate) use open::Opening;

use crate::config::{PoisonPolicy, ProjectorConfig};
use crate::control;
use crate::error::{ProjectionError, ProjectionErrorKind};
use crate::position::Positions;
use crate::projector::PersistedProjector;
use crate::shared::Shared;
use crate::store::{OneValue, ReadStore};
use async_nats::jetstream::{self, consumer, kv};
use jetsource_schemas::error::Error;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The bucket of projection `name`'s first generation (see
/// [`control::generation_bucket`] for the others), without a subject
/// prefix (under one: [`jetsource_schemas::Namespace::bucket`] of it).
pub fn bucket_name(name: &str) -> String {
    control::generation_bucket(name, 0)
}

/// The durable consumer of projection `name`'s first generation on each
/// stream it follows (see [`control::generation_consumer`]).
pub fn consumer_name(name: &str) -> String {
    control::generation_consumer(name, 0)
}

/// One consumer's next message, with the index of its stream in
/// `followed`.
type Delivery = (
    usize,
    Result<jetstream::Message, consumer::pull::MessagesError>,
);
/// Every followed stream's deliveries, peekable so the driver can wait for
/// one without taking it (see [`PersistedProjection::ready`]).
type Merged = futures::stream::Peekable<
    futures::stream::SelectAll<futures::stream::BoxStream<'static, Delivery>>,
>;

/// One stream the projection follows: its filters and durable consumer.
struct Followed {
    name: String,
    filters: Vec<String>,
    stream: jetstream::stream::Stream,
    consumer: consumer::PullConsumer,
}

/// A persisted projection's generation, driven one batch at a time, over
/// its store `S`.
///
/// [`crate::ProjectorRuntime`] drives it; it is public so a batch can be
/// committed without being acknowledged, as after a crash.
pub struct PersistedProjection<S: ReadStore> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: Arc<S>,
    config: ProjectorConfig,
    control: kv::Store,
    generation: u64,
    live: bool,
    policy: PoisonPolicy,
    /// The checkpoint as stored (positions, skipped events, lease token).
    checkpoint: Checkpoint,
    /// Failed applies per (stream, seq) in this process. JetStream's own
    /// delivery count also counts redeliveries of events held back behind
    /// a failing one, so it cannot say how often *this* event failed.
    failures: BTreeMap<(String, u64), u64>,
    followed: Vec<Followed>,
    merged: Merged,
    /// Opens the personal fields of the events it folds.
    keys: crate::keys::DataKeys,
}

impl<S: ReadStore> PersistedProjection<S> {
    /// The positions stored in the checkpoint.
    pub fn positions(&self) -> &Positions {
        &self.checkpoint.positions
    }

    /// The generation it reads and writes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Completes once an event is waiting (false: the consumers ended).
    /// Cancel-safe: the event stays for [`Self::next_batch`].
    pub async fn ready(&mut self) -> bool {
        std::pin::Pin::new(&mut self.merged).peek().await.is_some()
    }

    /// Makes this (rebuilt) generation the one queries read: it now
    /// reports to `shared` and runs side effects.
    pub(crate) fn adopt(&mut self, shared: Arc<Shared>) {
        self.shared = shared;
        self.live = true;
    }

    /// Events its consumers still have to deliver or see acknowledged.
    pub(crate) async fn outstanding(&mut self) -> Result<u64, ProjectionError> {
        let mut total = 0;
        for followed in &mut self.followed {
            let info = followed
                .consumer
                .info()
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
            total += info.num_pending + info.num_ack_pending as u64;
        }
        Ok(total)
    }

    /// Deletes this generation's consumers and storage (after a switch to
    /// a newer one, or to retry a failed rebuild).
    pub(crate) async fn remove(self) {
        let (store, name, generation) = (self.store.clone(), self.shared.name, self.generation);
        let streams: Vec<jetstream::stream::Stream> =
            self.followed.iter().map(|f| f.stream.clone()).collect();
        drop(self);
        remove_generation(store.as_ref(), name, generation, &streams).await;
    }
}

impl<P: PersistedProjector> PersistedProjection<OneValue<P>> {
    /// Reads the projector.
    pub fn read<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        self.store.read(self.generation, f)
    }
}

/// Deletes generation `generation` of `name`: its consumer on each of
/// `streams`, and its storage in `store`. Missing ones are fine.
pub(crate) async fn remove_generation<S: ReadStore>(
    store: &S,
    name: &str,
    generation: u64,
    streams: &[jetstream::stream::Stream],
) {
    remove_consumers(name, generation, streams).await;
    store.remove(generation).await;
}

/// Deletes generation `generation`'s consumer on each of `streams`.
pub(crate) async fn remove_consumers(
    name: &str,
    generation: u64,
    streams: &[jetstream::stream::Stream],
) {
    // Consumer names are scoped by their stream, which is the namespace's:
    // they need no prefix.
    let consumer = control::generation_consumer(name, generation);
    for stream in streams {
        if let Err(e) = stream.delete_consumer(&consumer).await {
            tracing::debug!(%consumer, error = %e, "consumer not deleted");
        }
    }
}
