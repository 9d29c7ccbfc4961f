//! The persisted read model: a durable pull consumer per stream with
//! explicit acks, and one KV record per projection holding the state
//! together with the last stream sequence applied per stream.
//!
//! Each batch is applied, then written to the KV record (a compare-and-set
//! on the record's revision), and only then acknowledged. A crash between
//! the write and the acks makes JetStream redeliver the batch; those events
//! carry sequences at or below the stored ones and are acknowledged without
//! being applied: an exactly-once effect under at-least-once delivery. A
//! restart loads the record and resumes from the durable consumer.
//!
//! The driver never applies an event past a missing one: when a stream
//! sequence jumps, it asks the stream whether a followed event lies in
//! between, and if so leaves the later ones for redelivery.
//!
//! An event whose apply fails is delivered again with a growing back-off;
//! after the poison policy's number of deliveries it is parked (see
//! [`crate::parked`]) and the projection halts or skips it. A skipped
//! event's position is kept in the record's `skipped` set until
//! `replay-parked` applies it, in the same write that removes it from the
//! set: it is never applied twice.
//!
//! Opening a projection rewrites its record (compare-and-set), so an
//! instance that opened it earlier can no longer write: see [`crate::lease`].

use crate::config::{OnPoison, PoisonPolicy, ProjectorConfig};
use crate::control;
use crate::event;
use crate::parked::{self, ParkedEvent};
use crate::position::{self, Positions};
use crate::projector::PersistedProjector;
use crate::shared::{self, ProjectionError, ProjectionErrorKind, Shared};
use crate::status::{Kind, Phase};
use async_nats::jetstream::{self, consumer, kv, AckKind};
use futures::{FutureExt, StreamExt};
use jetsource_schemas::error::Error;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

/// The key of the one record in a projection's bucket.
pub const CHECKPOINT_KEY: &str = "checkpoint";

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

/// The KV record: the state and the positions it includes, written as one
/// value so they can never disagree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint<S> {
    /// The last stream sequence applied, per stream.
    pub positions: Positions,
    /// The projector's state after those events.
    pub state: S,
    /// Events at or below `positions` that were parked and skipped, per
    /// stream: `replay-parked` applies them and removes them here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, BTreeSet<u64>>,
    /// The lease token of the instance that wrote it (0: none).
    #[serde(default)]
    pub lease: u64,
}

type Delivery = (
    usize,
    Result<jetstream::Message, consumer::pull::MessagesError>,
);
type Merged = futures::stream::Peekable<
    futures::stream::SelectAll<futures::stream::BoxStream<'static, Delivery>>,
>;

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

/// How to open a projection's generation.
pub(crate) struct Opening {
    pub generation: u64,
    /// The opener's lease token, written into the record.
    pub lease: u64,
    /// Side effects run (false while a rebuild replays).
    pub live: bool,
    pub control: kv::Store,
}

/// One batch: applied and stored, not yet acknowledged.
pub struct Batch {
    retry_after: std::time::Duration,
    done: Vec<jetstream::Message>,
    held_back: Vec<jetstream::Message>,
    failed: Vec<(jetstream::Message, std::time::Duration)>,
    applied: usize,
    skipped: usize,
    parked: usize,
    halted: Option<String>,
}

impl Batch {
    /// Events applied by this batch.
    pub fn applied(&self) -> usize {
        self.applied
    }

    /// Redelivered events recognised by their sequence and not applied again.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Events parked by this batch (and skipped, under the skip policy).
    pub fn parked(&self) -> usize {
        self.parked
    }

    /// Why the projector halted inside this batch, if it did (events before
    /// that one were applied and stored).
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Acknowledges the events this batch covered, and asks for redelivery
    /// of those it held back behind a missing one (after up to a second).
    pub async fn ack(self) -> Result<(), ProjectionError> {
        for message in &self.done {
            message
                .ack()
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
        }
        for message in &self.held_back {
            // Not before the missing event has had a chance to arrive.
            message
                .ack_with(AckKind::Nak(Some(self.retry_after)))
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
        }
        for (message, delay) in &self.failed {
            message
                .ack_with(AckKind::Nak(Some(*delay)))
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
        }
        Ok(())
    }
}

impl<P: PersistedProjector> PersistedProjection<P> {
    /// Opens the projection of `projector` on `client`: its bucket (created
    /// when missing), the state stored there, and its durable consumers.
    pub async fn open(
        client: async_nats::Client,
        projector: P,
        config: &ProjectorConfig,
    ) -> Result<Self, ProjectionError> {
        let name = projector.name();
        position::validate_name(name)
            .map_err(|e| Error::with_source(ProjectionErrorKind::BadProjector, e))?;
        let streams = position::streams_of_in(&config.namespace, &projector.subjects())
            .map_err(|e| Error::with_source(ProjectionErrorKind::BadProjector, e))?;
        let shared = Shared::new(name, Kind::Persisted, streams);
        let js = jetstream::new(client);
        let control = control::open_bucket(&js, &config.namespace).await?;
        let generation = control::active_generation(&control, name).await?;
        let opening = Opening {
            generation,
            lease: 0,
            live: true,
            control,
        };
        Self::open_shared(
            &js,
            shared,
            Arc::new(RwLock::new(projector)),
            config,
            opening,
        )
        .await
    }

    pub(crate) async fn open_shared(
        js: &jetstream::Context,
        shared: Arc<Shared>,
        model: Arc<RwLock<P>>,
        config: &ProjectorConfig,
        opening: Opening,
    ) -> Result<Self, ProjectionError> {
        let name = shared.name;
        let generation = opening.generation;
        let consumer_name = |name: &str| control::generation_consumer(name, generation);
        let policy = {
            let guard = shared::recover(model.read());
            guard.poison_policy(config.poison_policy())
        };
        let kv = js
            .create_or_update_key_value(kv::Config {
                bucket: config
                    .namespace
                    .bucket(&control::generation_bucket(name, generation)),
                description: format!("read model of projection {name}"),
                history: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
        let mut projection = PersistedProjection {
            shared: shared.clone(),
            model,
            config: config.clone(),
            js: js.clone(),
            control: opening.control,
            generation,
            lease: opening.lease,
            live: opening.live,
            policy,
            kv,
            revision: 0,
            positions: Positions::new(),
            skipped: BTreeMap::new(),
            failures: BTreeMap::new(),
            followed: Vec::new(),
            merged: futures::stream::SelectAll::new().peekable(),
        };
        projection.reload().await?;
        // Fencing: from here on, whoever opened this generation before
        // writes against an old revision and is refused.
        let positions = projection.positions.clone();
        projection.store(&positions).await?;
        for (stream_name, filters) in &shared.streams {
            let stream = crate::runtime::get_stream(js, stream_name).await?;
            let head = stream
                .get_info()
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?
                .state
                .last_sequence;
            let mut wanted = consumer::pull::Config {
                durable_name: Some(consumer_name(name)),
                description: Some(format!("projection {name}")),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                max_ack_pending: config.max_ack_pending,
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            };
            match filters.as_slice() {
                [one] => wanted.filter_subject = one.clone(),
                many => wanted.filter_subjects = many.to_vec(),
            }
            let mut consumer: consumer::PullConsumer = stream
                .get_or_create_consumer(&consumer_name(name), wanted)
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
            let info = consumer
                .info()
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
            let stored = projection.positions.get(stream_name).copied().unwrap_or(0);
            let acked = info.ack_floor.stream_sequence;
            if acked > stored {
                return Err(Error::new(
                    ProjectionErrorKind::Inconsistent,
                    format!("{stream_name}: consumer {} acknowledged up to #{acked} but the record holds #{stored}; resuming would skip events", consumer_name(name)),
                ));
            }
            if info.num_ack_pending > 0 {
                // Events a previous run took but never acknowledged: have
                // them redelivered now and in order (those already stored
                // are skipped by sequence) instead of after `ack_wait`.
                if let Err(e) = stream.reset_consumer(&consumer_name(name), None).await {
                    tracing::warn!(stream = %stream_name, error = %e, "cannot rewind the consumer to its ack floor (server older than 2.14?); unacknowledged events come back after ack_wait");
                }
            }
            let pending = info.num_pending + info.num_ack_pending as u64;
            shared.update(|p| {
                if let Some(s) = p.streams.get_mut(stream_name) {
                    s.head_at_start = head;
                    s.pending = pending;
                    s.caught_up = stored >= head || pending == 0;
                }
            });
            projection.followed.push(Followed {
                name: stream_name.clone(),
                filters: filters.clone(),
                stream,
                consumer,
            });
        }
        let mut merged = futures::stream::SelectAll::new();
        for (index, followed) in projection.followed.iter().enumerate() {
            let messages = followed
                .consumer
                .messages()
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Nats, e))?;
            merged.push(messages.map(move |m| (index, m)).boxed());
        }
        projection.merged = merged.peekable();
        shared.update(|p| p.phase = Phase::Replaying);
        Ok(projection)
    }

    /// The positions stored in the record.
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

    /// Loads the record into the projector (or keeps its initial state when
    /// there is none yet).
    async fn reload(&mut self) -> Result<(), ProjectionError> {
        let entry = self
            .kv
            .entry(CHECKPOINT_KEY)
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let record: Checkpoint<P::State> =
                    serde_json::from_slice(&entry.value).map_err(|e| {
                        Error::with_message_and_source(
                            ProjectionErrorKind::Store,
                            "the stored checkpoint does not decode",
                            e,
                        )
                    })?;
                {
                    let mut guard = shared::recover(self.model.write());
                    guard.restore(record.state);
                }
                self.positions = record.positions;
                self.skipped = record.skipped;
                self.revision = entry.revision;
            }
            Some(entry) => {
                self.revision = entry.revision;
            }
            None => self.revision = 0,
        }
        self.shared.applied.send_replace(self.positions.clone());
        Ok(())
    }

    /// True when a followed event lies strictly between `last` and `seq` in
    /// `followed`'s stream.
    async fn missing_before(
        followed: &Followed,
        last: u64,
        seq: u64,
    ) -> Result<bool, ProjectionError> {
        let from = last + 1;
        if seq <= from {
            return Ok(false);
        }
        for filter in &followed.filters {
            match followed
                .stream
                .direct_get_next_for_subject(filter.as_str(), Some(from))
                .await
            {
                Ok(found) if found.sequence < seq => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == jetstream::stream::DirectGetErrorKind::NotFound => {}
                Err(e) => return Err(Error::with_source(ProjectionErrorKind::Nats, e)),
            }
        }
        Ok(false)
    }

    /// Waits for at least one event, takes those already delivered (up to
    /// the batch size), applies the new ones in order and stores the state
    /// with their positions. The caller acknowledges the batch.
    pub async fn next_batch(&mut self) -> Result<Batch, ProjectionError> {
        let first = self
            .merged
            .next()
            .await
            .ok_or_else(|| Error::new(ProjectionErrorKind::Nats, "the consumers stopped"))?;
        let mut deliveries = vec![first];
        while deliveries.len() < self.config.batch.max(1) {
            match self.merged.next().now_or_never() {
                Some(Some(next)) => deliveries.push(next),
                _ => break,
            }
        }
        let mut batch = Batch {
            retry_after: self.config.ack_wait.min(std::time::Duration::from_secs(1)),
            done: Vec::new(),
            held_back: Vec::new(),
            failed: Vec::new(),
            applied: 0,
            skipped: 0,
            parked: 0,
            halted: None,
        };
        let mut next_positions = self.positions.clone();
        let mut next_skipped = self.skipped.clone();
        let mut blocked = vec![false; self.followed.len()];
        for (index, delivery) in deliveries {
            let message = match delivery {
                Ok(message) => message,
                Err(e) => {
                    tracing::warn!(stream = %self.followed[index].name, error = %e, "consumer trouble; unacknowledged events are redelivered");
                    continue;
                }
            };
            if batch.halted.is_some() || blocked[index] {
                batch.held_back.push(message);
                continue;
            }
            let (seq, pending) = match message.info() {
                Ok(info) => (info.stream_sequence, info.pending),
                Err(e) => {
                    batch.halted = Some(format!("message without JetStream metadata: {e}"));
                    batch.held_back.push(message);
                    continue;
                }
            };
            let stream = self.followed[index].name.clone();
            let last = next_positions.get(&stream).copied().unwrap_or(0);
            if seq <= last {
                batch.skipped += 1;
                batch.done.push(message);
                continue;
            }
            if seq > last + 1 && Self::missing_before(&self.followed[index], last, seq).await? {
                tracing::warn!(%stream, seq, last, "an earlier event was not delivered yet; holding this one back");
                blocked[index] = true;
                batch.held_back.push(message);
                continue;
            }
            let event = match event::from_message(&self.config.namespace, &message) {
                Ok(event) => event,
                Err(e) => {
                    batch.halted = Some(e.to_string());
                    batch.held_back.push(message);
                    continue;
                }
            };
            if let Err(e) =
                shared::apply(&self.model, &event, &self.config, None, false, self.live).await
            {
                let why = format!("{stream} #{seq} ({}): {e}", event.subject);
                let delivered = {
                    let count = self.failures.entry((stream.clone(), seq)).or_insert(0);
                    *count += 1;
                    *count
                };
                if delivered < u64::from(self.policy.max_deliveries) {
                    tracing::warn!(%stream, seq, delivered, error = %e, "apply failed; redelivering");
                    let delay =
                        (self.config.retry_backoff * delivered as u32).min(self.config.ack_wait);
                    blocked[index] = true;
                    batch.failed.push((message, delay));
                    continue;
                }
                if let Err(park_error) =
                    parked::park(&self.control, self.shared.name, &event, &why, delivered).await
                {
                    self.reload().await?;
                    for message in batch
                        .done
                        .iter()
                        .chain(&batch.held_back)
                        .chain(std::iter::once(&message))
                    {
                        let _ = message.ack_with(AckKind::Nak(None)).await;
                    }
                    return Err(park_error);
                }
                batch.parked += 1;
                self.failures.remove(&(stream.clone(), seq));
                tracing::error!(%stream, seq, delivered, error = %e, policy = ?self.policy.on_poison, "event parked");
                match self.policy.on_poison {
                    OnPoison::Skip => {
                        next_positions.insert(stream.clone(), seq);
                        next_skipped.entry(stream.clone()).or_default().insert(seq);
                        batch.done.push(message);
                        self.shared.delivered(&stream, seq, pending);
                    }
                    OnPoison::Stop => {
                        batch.halted = Some(format!(
                            "parked after {delivered} deliveries (policy: stop; fix, then replay-parked): {why}"
                        ));
                        batch.held_back.push(message);
                    }
                }
                continue;
            }
            next_positions.insert(stream.clone(), seq);
            batch.applied += 1;
            batch.done.push(message);
            self.shared.delivered(&stream, seq, pending);
        }
        if batch.applied > 0 || next_skipped != self.skipped {
            let before = std::mem::replace(&mut self.skipped, next_skipped);
            if let Err(e) = self.store(&next_positions).await {
                self.skipped = before;
                // Memory is ahead of the record: go back to the record and
                // let JetStream redeliver the batch.
                self.reload().await?;
                for message in batch.done.iter().chain(&batch.held_back) {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
                return Err(e);
            }
        }
        self.positions = next_positions;
        self.shared.applied.send_replace(self.positions.clone());
        Ok(batch)
    }

    async fn store(&mut self, positions: &Positions) -> Result<(), ProjectionError> {
        let value = {
            let guard = shared::recover(self.model.read());
            serde_json::to_vec(&Checkpoint {
                positions: positions.clone(),
                state: guard.state(),
                skipped: self.skipped.clone(),
                lease: self.lease,
            })
        }
        .map_err(|e| {
            Error::with_message_and_source(
                ProjectionErrorKind::Store,
                "the state does not encode",
                e,
            )
        })?;
        match self
            .kv
            .update(CHECKPOINT_KEY, value.into(), self.revision)
            .await
        {
            Ok(revision) => {
                self.revision = revision;
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(Error::with_source(ProjectionErrorKind::Conflict, e))
            }
            Err(e) => Err(Error::with_source(ProjectionErrorKind::Store, e)),
        }
    }

    /// Applies the parked events of this projection again, oldest first
    /// per stream: a skipped one out of order (it is in the record's
    /// `skipped` set), the one a halted projection stopped at in order.
    /// Each is removed from the parked store only once its application is
    /// stored; one the record already holds is removed without applying.
    pub async fn replay_parked(&mut self) -> Result<control::ReplaySummary, ProjectionError> {
        let mut summary = control::ReplaySummary::default();
        let mut stuck: BTreeSet<String> = BTreeSet::new();
        for p in parked::list_from(&self.control, self.shared.name).await? {
            let position = self.positions.get(&p.stream).copied().unwrap_or(0);
            let skipped = self
                .skipped
                .get(&p.stream)
                .is_some_and(|s| s.contains(&p.seq));
            if !skipped && p.seq <= position {
                parked::remove(&self.control, &p).await?;
                summary.already_applied += 1;
                continue;
            }
            let Some(index) = self.followed.iter().position(|f| f.name == p.stream) else {
                summary.failed.push(format!(
                    "{} #{}: not a stream this projection follows",
                    p.stream, p.seq
                ));
                continue;
            };
            if stuck.contains(&p.stream)
                || (!skipped
                    && Self::missing_before(&self.followed[index], position, p.seq).await?)
            {
                summary.waiting += 1;
                continue;
            }
            match self.replay_one(index, &p, skipped).await {
                Ok(()) => {
                    parked::remove(&self.control, &p).await?;
                    summary.applied += 1;
                }
                Err(why) => {
                    summary.failed.push(why);
                    stuck.insert(p.stream.clone());
                }
            }
        }
        Ok(summary)
    }

    async fn replay_one(
        &mut self,
        index: usize,
        p: &ParkedEvent,
        skipped: bool,
    ) -> Result<(), String> {
        let what = format!("{} #{}", p.stream, p.seq);
        let raw = self.followed[index]
            .stream
            .get_raw_message(p.seq)
            .await
            .map_err(|e| format!("{what}: cannot read it from the stream: {e}"))?;
        let event = event::from_stream_message(&self.config.namespace, &p.stream, raw)
            .map_err(|e| e.to_string())?;
        shared::apply(&self.model, &event, &self.config, None, false, self.live)
            .await
            .map_err(|e| format!("{what} ({}): {e}", event.subject))?;
        let mut positions = self.positions.clone();
        let before = self.skipped.clone();
        if skipped {
            if let Some(set) = self.skipped.get_mut(&p.stream) {
                set.remove(&p.seq);
                if set.is_empty() {
                    self.skipped.remove(&p.stream);
                }
            }
        } else {
            positions.insert(p.stream.clone(), p.seq);
        }
        if let Err(e) = self.store(&positions).await {
            self.skipped = before;
            let _ = self.reload().await;
            return Err(format!(
                "{what}: applied but not stored, so not applied: {e}"
            ));
        }
        self.positions = positions;
        self.shared.applied.send_replace(self.positions.clone());
        Ok(())
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
