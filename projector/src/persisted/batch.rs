//! One batch: the deliveries already waiting (up to the batch size),
//! committed in stream order to the store with their checkpoint, and only then
//! acknowledged by the caller. Redeliveries are recognised by sequence;
//! an event behind a missing one is held back; one that keeps failing is
//! parked.

use super::{Followed, PersistedProjection};
use crate::config::OnPoison;
use crate::error::{ProjectionError, ProjectionErrorKind};
use crate::event;
use crate::event::Event;
use crate::parked;
use crate::store::ReadStore;
use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt, StreamExt};
use jetsource_schemas::error::Error;
use jetsource_schemas::forgotten;
use std::collections::VecDeque;

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

impl<S: ReadStore> PersistedProjection<S> {
    /// True when a followed event lies strictly between `last` and `seq` in
    /// `followed`'s stream.
    pub(super) async fn missing_before(
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
    /// the batch size) and commits the new ones in order to the store with
    /// their positions. The caller acknowledges the batch.
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
        let mut queue = VecDeque::new();
        let mut planned = self.checkpoint.positions.clone();
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
            let stored = self.checkpoint.positions.get(&stream).copied().unwrap_or(0);
            if seq <= stored {
                batch.skipped += 1;
                batch.done.push(message);
                continue;
            }
            let last = planned.get(&stream).copied().unwrap_or(0);
            if seq <= last {
                // A redelivery of an event this batch already holds: it
                // goes with that one's fate.
                batch.held_back.push(message);
                continue;
            }
            if seq > last + 1 && Self::missing_before(&self.followed[index], last, seq).await? {
                tracing::warn!(%stream, seq, last, "an earlier event was not delivered yet; holding this one back");
                blocked[index] = true;
                batch.held_back.push(message);
                continue;
            }
            let event = if stream == forgotten::stream_name(&self.config.namespace) {
                // A notice seals nothing.
                event::notice_from_message(&self.config.namespace, &message)
            } else {
                match event::from_message(&self.config.namespace, &message) {
                    Ok(event) => self.keys.reveal(event).await,
                    Err(e) => Err(e),
                }
            };
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    batch.halted = Some(e.to_string());
                    batch.held_back.push(message);
                    continue;
                }
            };
            planned.insert(stream, seq);
            let span = crate::trace::applying(self.shared.name, &event);
            queue.push_back(New {
                index,
                message,
                event,
                pending,
                _span: span,
            });
        }
        let mut next = self.checkpoint.clone();
        while !queue.is_empty() {
            let events: Vec<Event> = queue.iter().map(|n| n.event.clone()).collect();
            let committed = match self
                .store
                .commit(self.generation, events, next.clone(), self.live)
                .await
            {
                Ok(committed) => committed,
                Err(e) => return Err(self.refuse(batch, queue, e).await),
            };
            for new in queue.drain(..committed.applied.min(queue.len())) {
                next.advance(&new.event);
                batch.applied += 1;
                self.shared
                    .delivered(&new.event.stream, new.event.seq, new.pending);
                batch.done.push(new.message);
            }
            self.checkpoint = next.clone();
            let Some(new) = queue.pop_front() else { break };
            let Some(e) = committed.failure else {
                // Not applied and no reason given: have them all again.
                batch.held_back.push(new.message);
                batch.held_back.extend(queue.drain(..).map(|n| n.message));
                break;
            };
            let (stream, seq) = (new.event.stream.clone(), new.event.seq);
            let why = format!("{stream} #{seq} ({}): {e}", new.event.subject);
            let delivered = {
                let count = self.failures.entry((stream.clone(), seq)).or_insert(0);
                *count += 1;
                *count
            };
            if delivered < u64::from(self.policy.max_deliveries) {
                tracing::warn!(%stream, seq, delivered, error = %e, "apply failed; redelivering");
                let delay =
                    (self.config.retry_backoff * delivered as u32).min(self.config.ack_wait);
                batch.failed.push((new.message, delay));
                hold_back_stream(&mut batch, &mut queue, new.index);
                continue;
            }
            if let Err(park_error) =
                parked::park(&self.control, self.shared.name, &new.event, &why, delivered).await
            {
                queue.push_front(new);
                return Err(self.refuse(batch, queue, park_error).await);
            }
            batch.parked += 1;
            self.failures.remove(&(stream.clone(), seq));
            tracing::error!(%stream, seq, delivered, error = %e, policy = ?self.policy.on_poison, "event parked");
            match self.policy.on_poison {
                OnPoison::Skip => {
                    next.advance(&new.event);
                    next.skipped.entry(stream.clone()).or_default().insert(seq);
                    self.shared.delivered(&stream, seq, new.pending);
                    batch.done.push(new.message);
                }
                OnPoison::Stop => {
                    batch.halted = Some(format!(
                        "parked after {delivered} deliveries (policy: stop; fix, then replay-parked): {why}"
                    ));
                    batch.held_back.push(new.message);
                    batch.held_back.extend(queue.drain(..).map(|n| n.message));
                }
            }
        }
        if next != self.checkpoint {
            // A parked and skipped event last: its position still to store.
            if let Err(e) = self
                .store
                .commit(self.generation, Vec::new(), next.clone(), self.live)
                .await
            {
                return Err(self.refuse(batch, queue, e).await);
            }
            self.checkpoint = next;
        }
        self.shared.set_applied(&self.checkpoint.positions);
        Ok(batch)
    }

    /// The batch was not (completely) stored: every event it took is
    /// delivered again at once, those already stored to be skipped.
    fn refuse(
        &self,
        batch: Batch,
        queue: VecDeque<New>,
        e: ProjectionError,
    ) -> impl std::future::Future<Output = ProjectionError> + Send + 'static {
        self.shared.set_applied(&self.checkpoint.positions);
        async move {
            let failed = batch.failed.into_iter().map(|(m, _)| m);
            for message in batch
                .done
                .into_iter()
                .chain(batch.held_back)
                .chain(failed)
                .chain(queue.into_iter().map(|n| n.message))
            {
                let _ = message.ack_with(AckKind::Nak(None)).await;
            }
            e
        }
    }
}

/// A new event of the batch, not committed yet.
struct New {
    index: usize,
    message: jetstream::Message,
    event: Event,
    pending: u64,
    /// Open from delivery to commit when the event carries a trace.
    _span: Option<tracing::Span>,
}

/// Holds back the events of stream `index` still queued: they wait for the
/// one before them.
fn hold_back_stream(batch: &mut Batch, queue: &mut VecDeque<New>, index: usize) {
    let (held, kept): (VecDeque<New>, VecDeque<New>) =
        queue.drain(..).partition(|n| n.index == index);
    batch.held_back.extend(held.into_iter().map(|n| n.message));
    *queue = kept;
}
