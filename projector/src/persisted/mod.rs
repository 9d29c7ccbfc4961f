//! The persisted read model: a durable pull consumer per stream with
//! explicit acks, and one KV record per projection generation, its
//! [`Checkpoint`], holding the state together with the last stream
//! sequence applied per stream.
//!
//! Each batch is applied, then written to the checkpoint (a compare-and-set
//! on its revision), and only then acknowledged. A crash between the write
//! and the acks makes JetStream redeliver the batch; those events carry
//! sequences at or below the stored ones and are acknowledged without
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
//! `replay-parked` applies it, in the same write that removes it from the
//! set: it is never applied twice.
//!
//! Opening a projection rewrites its checkpoint (compare-and-set), so an
//! instance that opened it earlier can no longer write: see
//! [`crate::lease`].
//!
//! # Layout
//! - `open`: opening a generation: its bucket, its checkpoint, its durable
//!   consumers.
//! - `batch`: taking, applying and storing one batch of deliveries.
//! - `checkpoint`: the KV record of state and positions, loaded and stored.
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
use crate::shared::{self, Shared};
use async_nats::jetstream::{self, consumer, kv};
use jetsource_schemas::error::Error;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

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

/// A persisted projection, driven one batch at a time.
///
/// [`crate::ProjectorRuntime`] drives it; it is public so a batch can be
/// applied and stored without being acknowledged, as after a crash.
pub struct PersistedProjection<P: PersistedProjector> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) model: Arc<RwLock<P>>,
    config: ProjectorConfig,
    js: jetstream::Context,
    control: kv::Store,
    generation: u64,
    lease: u64,
    live: bool,
    policy: PoisonPolicy,
    kv: kv::Store,
    revision: u64,
    positions: Positions,
    skipped: BTreeMap<String, BTreeSet<u64>>,
    /// Failed applies per (stream, seq) in this process. JetStream's own
    /// delivery count also counts redeliveries of events held back behind
    /// a failing one, so it cannot say how often *this* event failed.
    failures: BTreeMap<(String, u64), u64>,
    followed: Vec<Followed>,
    merged: Merged,
}

impl<P: PersistedProjector> PersistedProjection<P> {
    /// The positions stored in the checkpoint.
    pub fn positions(&self) -> &Positions {
        &self.positions
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
    /// reports to `shared`, folds into `model` and runs side effects.
    pub(crate) fn adopt(&mut self, shared: Arc<Shared>, model: Arc<RwLock<P>>) {
        self.shared = shared;
        self.model = model;
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

    /// Deletes this generation's consumers and bucket (after a switch to a
    /// newer one, or to retry a failed rebuild).
    pub(crate) async fn remove(self) {
        let (js, name, generation) = (self.js.clone(), self.shared.name, self.generation);
        let namespace = self.config.namespace.clone();
        let streams: Vec<jetstream::stream::Stream> =
            self.followed.iter().map(|f| f.stream.clone()).collect();
        drop(self);
        remove_generation(&js, &namespace, name, generation, &streams).await;
    }

    /// Reads the projector.
    pub fn read<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        let guard = shared::recover(self.model.read());
        f(&guard)
    }
}

/// Deletes generation `generation` of `name` in `namespace`: its consumer
/// on each of `streams`, and its bucket. Missing ones are fine.
pub(crate) async fn remove_generation(
    js: &jetstream::Context,
    namespace: &jetsource_schemas::Namespace,
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
    let bucket = namespace.bucket(&control::generation_bucket(name, generation));
    if let Err(e) = js.delete_key_value(&bucket).await {
        tracing::debug!(%bucket, error = %e, "bucket not deleted");
    }
}
