//! One batch: the deliveries already waiting (up to the batch size),
//! applied in stream order, stored as one checkpoint, and only then
//! acknowledged by the caller. Redeliveries are recognised by sequence;
//! an event behind a missing one is held back; one that keeps failing is
//! parked.

use super::{Followed, PersistedProjection};
use crate::config::OnPoison;
use crate::error::{ProjectionError, ProjectionErrorKind};
use crate::event;
use crate::parked;
use crate::projector::PersistedProjector;
use crate::shared;
use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt, StreamExt};
use jetsource_schemas::error::Error;

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
                // Memory is ahead of the checkpoint: go back to it and
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
}
