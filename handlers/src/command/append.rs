//! The decision appended with the expected-sequence check, then, once
//! JetStream acknowledged it, applied to the slot (case 2b): the state,
//! the sequence, the idempotency record, and a snapshot when one is due
//! (written off the command path, see [`crate::snapshot`]).

use super::decide;
use super::failure::CommandFailure;
use super::handler::AggregateHandler;
use super::idempotency::Recorded;
use super::reply::AcceptedEvents;
use super::request::CommandRequest;
use super::slot::Slot;
use crate::aggregate::Aggregate;
use crate::store::AppendMeta;
use jetsource_schemas::EventRef;

impl<A: Aggregate> AggregateHandler<A> {
    /// Appends `decided` after the slot's last sequence and applies it once
    /// the store confirmed; the slot is untouched when the append fails.
    pub(super) async fn append(
        &self,
        slot: &mut Slot<A>,
        request: &CommandRequest<'_>,
        decided: Vec<A::Event>,
    ) -> Result<AcceptedEvents, CommandFailure> {
        let command_id: &str = &request.command_id;
        let mut new_events = decide::encode(&decided)?;
        decide::seal::<A>(self.store.keys(), request.aggregate_id, &mut new_events).await?;
        let meta = AppendMeta {
            command_id,
            correlation_id: request.correlation_id,
            causation_id: request.causation_id,
            event_version: A::EVENT_VERSION,
            traceparent: outgoing_trace(request),
        };
        let metrics = crate::metrics::global();
        let started = metrics.recording().then(std::time::Instant::now);
        let appended = self
            .store
            .append(
                A::TYPE,
                request.aggregate_id,
                slot.last_seq,
                &new_events,
                &meta,
            )
            .await;
        if let Some(started) = started {
            metrics.append(
                started.elapsed(),
                new_events.len(),
                appended.as_ref().err().map(|e| e.kind()),
            );
        }
        let seqs = appended?;
        let refs: Vec<EventRef> = new_events
            .into_iter()
            .zip(&seqs)
            .map(|(event, seq)| EventRef {
                event_type: event.event_type,
                stream: self.stream.clone(),
                seq: *seq,
                aggregate_id: None,
            })
            .collect();
        self.settle(slot, request.aggregate_id, command_id, decided, &refs);
        Ok(AcceptedEvents {
            events: refs,
            duplicate: false,
        })
    }

    /// Case 2b, once the store confirmed `decided` at `refs`: the state
    /// moves, then the sequence, the idempotency record and the snapshot
    /// bookkeeping (a snapshot written when one is due).
    pub(super) fn settle(
        &self,
        slot: &mut Slot<A>,
        aggregate_id: &str,
        command_id: &str,
        decided: Vec<A::Event>,
        refs: &[EventRef],
    ) {
        for event in decided {
            slot.state.apply(event);
        }
        slot.last_seq = refs.last().map_or(slot.last_seq, |last| last.seq);
        // Unloaded, the append's expected sequence 0 proved these are the
        // aggregate's first events.
        slot.loaded = true;
        if let Some((first, rest)) = refs.split_first() {
            let names = self.names();
            let mut recorded = Recorded::new(first.seq, &first.event_type, names);
            for event in rest {
                recorded.extend(event.seq, &event.event_type, names);
            }
            slot.commands.insert(command_id.into(), recorded);
        }
        slot.snapshot.folded(refs.len() as u64);
        if let Some(snapshots) = &self.snapshots {
            let names = self.names();
            let commands = slot
                .commands
                .iter()
                .map(|(id, recorded)| (&**id, recorded.first_seq, recorded.joined(names)));
            snapshots.write_if_due(
                &self.store,
                aggregate_id,
                &slot.state,
                slot.last_seq,
                &mut slot.snapshot,
                commands,
            );
        }
    }
}

/// The `traceparent` a command's events carry: the command's span when it
/// is recorded, else the client's as it came (see
/// [`jetsource_schemas::trace`]).
pub(super) fn outgoing_trace(request: &CommandRequest<'_>) -> Option<String> {
    jetsource_schemas::trace::outgoing(&tracing::Span::current(), request.traceparent.as_ref())
        .map(|parent| parent.to_header())
}
