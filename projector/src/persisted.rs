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

use crate::config::ProjectorConfig;
use crate::event;
use crate::position::{self, Positions};
use crate::projector::PersistedProjector;
use crate::shared::{self, RunError, RunErrorKind, Shared};
use crate::status::{Kind, Phase};
use async_nats::jetstream::{self, consumer, kv, AckKind};
use futures::{FutureExt, StreamExt};
use jetsource_handlers::error::Error;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use tracing::Instrument;

/// The key of the one record in a projection's bucket.
pub const RECORD_KEY: &str = "checkpoint";

/// The bucket of projection `name`.
pub fn bucket_name(name: &str) -> String {
    format!("projection_{name}")
}

/// The durable consumer of projection `name` on each stream it follows.
pub fn consumer_name(name: &str) -> String {
    format!("projector_{name}")
}

/// The KV record: the state and the positions it includes, written as one
/// value so they can never disagree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record<S> {
    /// The last stream sequence applied, per stream.
    pub positions: Positions,
    /// The projector's state after those events.
    pub state: S,
}

type Delivery = (usize, Result<jetstream::Message, String>);
type Merged = futures::stream::SelectAll<futures::stream::BoxStream<'static, Delivery>>;

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
    shared: Arc<Shared>,
    model: Arc<RwLock<P>>,
    config: ProjectorConfig,
    kv: kv::Store,
    revision: u64,
    positions: Positions,
    followed: Vec<Followed>,
    merged: Merged,
}

/// One batch: applied and stored, not yet acknowledged.
pub struct Batch {
    retry_after: std::time::Duration,
    done: Vec<jetstream::Message>,
    held_back: Vec<jetstream::Message>,
    applied: usize,
    skipped: usize,
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

    /// Why the projector halted inside this batch, if it did (events before
    /// that one were applied and stored).
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Acknowledges the events this batch covered, and asks for redelivery
    /// of those it held back behind a missing one (after up to a second).
    pub async fn ack(self) -> Result<(), RunError> {
        for message in &self.done {
            message
                .ack()
                .await
                .map_err(|e| Error::new(RunErrorKind::Nats, e.to_string()))?;
        }
        for message in &self.held_back {
            // Not before the missing event has had a chance to arrive.
            message
                .ack_with(AckKind::Nak(Some(self.retry_after)))
                .await
                .map_err(|e| Error::new(RunErrorKind::Nats, e.to_string()))?;
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
    ) -> Result<Self, RunError> {
        let name = projector.name();
        position::validate_name(name).map_err(|e| Error::new(RunErrorKind::BadProjector, e))?;
        let streams = position::streams_of(&projector.subjects())
            .map_err(|e| Error::new(RunErrorKind::BadProjector, e))?;
        let shared = Shared::new(name, Kind::Persisted, streams);
        let js = jetstream::new(client);
        Self::open_shared(&js, shared, Arc::new(RwLock::new(projector)), config).await
    }

    pub(crate) async fn open_shared(
        js: &jetstream::Context,
        shared: Arc<Shared>,
        model: Arc<RwLock<P>>,
        config: &ProjectorConfig,
    ) -> Result<Self, RunError> {
        let name = shared.name;
        let kv = js
            .create_or_update_key_value(kv::Config {
                bucket: bucket_name(name),
                description: format!("read model of projection {name}"),
                history: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::with_source(RunErrorKind::Store, e))?;
        let mut projection = PersistedProjection {
            shared: shared.clone(),
            model,
            config: config.clone(),
            kv,
            revision: 0,
            positions: Positions::new(),
            followed: Vec::new(),
            merged: futures::stream::SelectAll::new(),
        };
        projection.reload().await?;
        for (stream_name, filters) in &shared.streams {
            let stream = crate::runtime::get_stream(js, stream_name).await?;
            let head = stream
                .get_info()
                .await
                .map_err(|e| Error::with_source(RunErrorKind::Nats, e))?
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
                .map_err(|e| Error::with_source(RunErrorKind::Nats, e))?;
            let info = consumer
                .info()
                .await
                .map_err(|e| Error::with_source(RunErrorKind::Nats, e))?;
            let stored = projection.positions.get(stream_name).copied().unwrap_or(0);
            let acked = info.ack_floor.stream_sequence;
            if acked > stored {
                return Err(Error::new(
                    RunErrorKind::Inconsistent,
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
        for (index, followed) in projection.followed.iter().enumerate() {
            let messages = followed
                .consumer
                .messages()
                .await
                .map_err(|e| Error::with_source(RunErrorKind::Nats, e))?;
            projection.merged.push(
                messages
                    .map(move |m| (index, m.map_err(|e| e.to_string())))
                    .boxed(),
            );
        }
        shared.update(|p| p.phase = Phase::Replaying);
        Ok(projection)
    }

    /// The positions stored in the record.
    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    /// Reads the projector.
    pub fn read<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        let guard = self.model.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// Loads the record into the projector (or keeps its initial state when
    /// there is none yet).
    async fn reload(&mut self) -> Result<(), RunError> {
        let entry = self
            .kv
            .entry(RECORD_KEY)
            .await
            .map_err(|e| Error::with_source(RunErrorKind::Store, e))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let record: Record<P::State> =
                    serde_json::from_slice(&entry.value).map_err(|e| {
                        Error::new(
                            RunErrorKind::Store,
                            format!("the stored record does not decode: {e}"),
                        )
                    })?;
                {
                    let mut guard = self.model.write().unwrap_or_else(|p| p.into_inner());
                    guard.restore(record.state);
                }
                self.positions = record.positions;
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
    async fn missing_before(followed: &Followed, last: u64, seq: u64) -> Result<bool, RunError> {
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
                Err(e) => return Err(Error::with_source(RunErrorKind::Nats, e)),
            }
        }
        Ok(false)
    }

    /// Waits for at least one event, takes those already delivered (up to
    /// the batch size), applies the new ones in order and stores the state
    /// with their positions. The caller acknowledges the batch.
    pub async fn next_batch(&mut self) -> Result<Batch, RunError> {
        let first = self
            .merged
            .next()
            .await
            .ok_or_else(|| Error::new(RunErrorKind::Nats, "the consumers stopped"))?;
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
            applied: 0,
            skipped: 0,
            halted: None,
        };
        let mut next_positions = self.positions.clone();
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
            let event = match event::from_message(&message) {
                Ok(event) => event,
                Err(why) => {
                    batch.halted = Some(why);
                    batch.held_back.push(message);
                    continue;
                }
            };
            if let Err(e) = shared::apply(&self.model, &event, &self.config, None).await {
                batch.halted = Some(format!("{stream} #{seq} ({}): {e}", event.subject));
                batch.held_back.push(message);
                continue;
            }
            next_positions.insert(stream.clone(), seq);
            batch.applied += 1;
            batch.done.push(message);
            self.shared.delivered(&stream, seq, pending);
        }
        if batch.applied > 0 {
            if let Err(e) = self.store(&next_positions).await {
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

    async fn store(&mut self, positions: &Positions) -> Result<(), RunError> {
        let value = {
            let guard = self.model.read().unwrap_or_else(|p| p.into_inner());
            serde_json::to_vec(&Record {
                positions: positions.clone(),
                state: guard.state(),
            })
        }
        .map_err(|e| {
            Error::new(
                RunErrorKind::Store,
                format!("the state does not encode: {e}"),
            )
        })?;
        match self
            .kv
            .update(RECORD_KEY, value.into(), self.revision)
            .await
        {
            Ok(revision) => {
                self.revision = revision;
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(Error::with_source(RunErrorKind::Conflict, e))
            }
            Err(e) => Err(Error::with_source(RunErrorKind::Store, e)),
        }
    }

    /// Applies batches until `stop` turns true or the projector halts.
    pub(crate) async fn drive(mut self, mut stop: watch::Receiver<bool>) {
        let shared = self.shared.clone();
        let span = tracing::info_span!("projector", projector = shared.name, kind = "persisted");
        async move {
            loop {
                let batch = tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    batch = self.next_batch() => batch,
                };
                match batch {
                    Ok(batch) => {
                        let halted = batch.halted.clone();
                        if let Err(e) = batch.ack().await {
                            tracing::warn!(error = %e, "acks not sent; the events will be redelivered and skipped");
                        }
                        if let Some(why) = halted {
                            shared.halt(why);
                            return;
                        }
                    }
                    Err(e) if matches!(e.kind(), RunErrorKind::Conflict | RunErrorKind::Store | RunErrorKind::Nats) => {
                        tracing::warn!(error = %e, "batch not stored; reloaded, waiting for redelivery");
                        tokio::time::sleep(self.config.retry_backoff).await;
                    }
                    Err(e) => {
                        shared.halt(e.to_string());
                        return;
                    }
                }
            }
            shared.update(|p| p.phase = Phase::Stopped);
        }
        .instrument(span)
        .await
    }
}
