//! A command that decides over several aggregates of its type (it
//! [`Aggregate::involves`] others): each involved aggregate's slot locked,
//! in id order; all of them loaded; one decision over all their states;
//! every aggregate's events in one atomic batch, each aggregate checked at
//! the sequence its state was read at; then each slot moved (case 2b).
//!
//! Locks are taken in sorted id order, whoever is addressed: two such
//! commands over overlapping aggregates then take the locks they share in
//! the same order, and neither can hold one the other waits for while
//! waiting for one the other holds. A one-aggregate command takes one lock
//! and cannot close a cycle. Across processes the batch's checks decide:
//! a conflict on any aggregate stores nothing, reloads them all and
//! decides again, as the retry policy allows.

use super::append::outgoing_trace;
use super::decide;
use super::failure::{BadRequest, CommandFailure};
use super::handler::AggregateHandler;
use super::reply::AcceptedEvents;
use super::request::CommandRequest;
use super::retry::Attempts;
use super::slot::Slot;
use crate::aggregate::Aggregate;
use crate::store::{AggregateAppend, AppendMeta, NewEvent};
use jetsource_schemas::{token, EventRef};
use std::collections::BTreeMap;
use tokio::sync::Mutex;

/// The most aggregates one command may involve, the addressed one
/// included: each is loaded and locked, and all their events go in one
/// batch (JetStream takes at most 1,000 messages in one).
pub(crate) const MAX_INVOLVED: usize = 64;

/// How often a refusal is decided again after reads that found the
/// aggregates moved on, before it stands as it is.
const MAX_RECHECKS: u32 = 16;

/// One aggregate's share of a decision: its index among the involved ids,
/// its events in order.
struct Share<E> {
    index: usize,
    events: Vec<E>,
}

impl<A: Aggregate> AggregateHandler<A> {
    /// Handles `command`, addressed to `request.aggregate_id`, which
    /// involves the aggregates `named` too.
    pub(super) async fn execute_involving(
        &self,
        request: &CommandRequest<'_>,
        command: A::Command,
        named: Vec<String>,
    ) -> Result<AcceptedEvents, CommandFailure> {
        for id in &named {
            token::validate("involved aggregate id", id)
                .map_err(|e| CommandFailure::from(BadRequest::Involved(e)))?;
        }
        let mut ids = named;
        ids.push(request.aggregate_id.to_string());
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > MAX_INVOLVED {
            return Err(BadRequest::TooManyInvolved {
                named: ids.len(),
                max: MAX_INVOLVED,
            }
            .into());
        }
        // Pushed above, so always found.
        let addressed = ids
            .iter()
            .position(|id| id == request.aggregate_id)
            .unwrap_or_default();
        let held: Vec<_> = ids
            .iter()
            .map(|id| {
                self.cache
                    .get_or_insert_with(id, || Mutex::new(Slot::default()))
            })
            .collect();
        // In id order: see the module's comment.
        let mut guards = Vec::with_capacity(held.len());
        for slot in &held {
            guards.push(slot.lock().await);
        }
        for slot in &guards {
            crate::metrics::global().state_cache(slot.loaded);
        }
        let mut command = Some(command);
        let mut attempts = Attempts::new();
        let mut rechecks = 0;
        loop {
            for (id, slot) in ids.iter().zip(guards.iter_mut()) {
                if !slot.loaded {
                    self.load(slot, id).await?;
                }
            }
            // A command another process stored shows on every slot it
            // touched only once each has read that far: when any holds the
            // id, read the tails of those that do not before answering.
            let command_id: &str = &request.command_id;
            if guards
                .iter()
                .any(|slot| slot.commands.contains_key(command_id))
            {
                for (id, slot) in ids.iter().zip(guards.iter_mut()) {
                    if !slot.commands.contains_key(command_id) {
                        self.reload(slot, id).await?;
                    }
                }
            }
            if let Some(answer) = self.answered(&ids, &guards, addressed, request)? {
                return Ok(answer);
            }
            decide::check_expected_seq(request.expected_seq, guards[addressed].last_seq)?;
            let command = match command.take() {
                Some(command) => command,
                None => decide::decode::<A>(request)?,
            };
            let others: BTreeMap<&str, &A> = ids
                .iter()
                .zip(&guards)
                .enumerate()
                .filter(|(i, _)| *i != addressed)
                .map(|(_, (id, slot))| (id.as_str(), &slot.state))
                .collect();
            let decided =
                guards[addressed]
                    .state
                    .handle_many(request.aggregate_id, command, &others);
            drop(others);
            let decided = match decided {
                Ok(decided) => decided,
                Err(rejection) => {
                    // A refusal is never checked at commit, and another
                    // process may have moved any of the aggregates (or
                    // stored this very command): it stands only once the
                    // slots are shown current.
                    rechecks += 1;
                    if rechecks <= MAX_RECHECKS {
                        let mut pairs: Vec<(&str, &mut Slot<A>)> = ids
                            .iter()
                            .map(String::as_str)
                            .zip(guards.iter_mut().map(|g| &mut **g))
                            .collect();
                        if self.reload_all(&mut pairs).await? {
                            continue;
                        }
                    }
                    return Err(CommandFailure::Denied(rejection));
                }
            };
            let shares = shares(&ids, decided)?;
            if shares.is_empty() {
                return Ok(AcceptedEvents {
                    events: Vec::new(),
                    duplicate: false,
                });
            }
            let mut slots: Vec<&mut Slot<A>> = guards.iter_mut().map(|g| &mut **g).collect();
            match self
                .append_involving(&mut slots, &ids, addressed, request, shares)
                .await
            {
                Ok(accepted) => return Ok(accepted),
                Err(failure) => {
                    let mut pairs: Vec<(&str, &mut Slot<A>)> =
                        ids.iter().map(String::as_str).zip(slots).collect();
                    self.recover(&mut pairs, request, &mut attempts, failure)
                        .await?
                }
            }
        }
    }

    /// The answer to a resend: `Some` when the addressed aggregate already
    /// accepted the command id, listing its events and those the same id
    /// put on the other involved aggregates; an error when only another
    /// involved aggregate holds the id (another command used it).
    fn answered(
        &self,
        ids: &[String],
        slots: &[tokio::sync::MutexGuard<'_, Slot<A>>],
        addressed: usize,
        request: &CommandRequest<'_>,
    ) -> Result<Option<AcceptedEvents>, CommandFailure> {
        let command_id: &str = &request.command_id;
        let names = self.names();
        if !slots[addressed].commands.contains_key(command_id) {
            return match ids
                .iter()
                .zip(slots)
                .find(|(_, slot)| slot.commands.contains_key(command_id))
            {
                Some((id, _)) => Err(BadRequest::CommandIdTaken {
                    command_id: command_id.to_string(),
                    aggregate_id: id.clone(),
                }
                .into()),
                None => Ok(None),
            };
        }
        let mut events: Vec<EventRef> = Vec::new();
        for (i, (id, slot)) in ids.iter().zip(slots).enumerate() {
            if let Some(recorded) = slot.commands.get(command_id) {
                let owner = (i != addressed).then(|| id.clone());
                events.extend(
                    recorded
                        .events(&self.stream, names)
                        .into_iter()
                        .map(|event| EventRef {
                            aggregate_id: owner.clone(),
                            ..event
                        }),
                );
            }
        }
        events.sort_by_key(|event| event.seq);
        Ok(Some(AcceptedEvents {
            events,
            duplicate: true,
        }))
    }

    /// Appends every share in one atomic batch, each aggregate checked at
    /// its slot's sequence, and settles each slot once the store
    /// confirmed; no slot moves when the append fails.
    async fn append_involving(
        &self,
        slots: &mut [&mut Slot<A>],
        ids: &[String],
        addressed: usize,
        request: &CommandRequest<'_>,
        shares: Vec<Share<A::Event>>,
    ) -> Result<AcceptedEvents, CommandFailure> {
        let command_id: &str = &request.command_id;
        let mut encoded: Vec<Vec<NewEvent>> = shares
            .iter()
            .map(|share| decide::encode(&share.events))
            .collect::<Result<_, _>>()?;
        for (share, events) in shares.iter().zip(encoded.iter_mut()) {
            decide::seal::<A>(self.store.keys(), &ids[share.index], events).await?;
        }
        let appends: Vec<AggregateAppend<'_>> = shares
            .iter()
            .zip(&encoded)
            .map(|(share, events)| AggregateAppend {
                aggregate_id: &ids[share.index],
                expected: slots[share.index].last_seq,
                events,
            })
            .collect();
        let meta = AppendMeta {
            command_id,
            correlation_id: request.correlation_id,
            causation_id: request.causation_id,
            event_version: A::EVENT_VERSION,
            traceparent: outgoing_trace(request),
        };
        let metrics = crate::metrics::global();
        let started = metrics.recording().then(std::time::Instant::now);
        let appended = self.store.append_many(A::TYPE, &appends, &meta).await;
        let count: usize = encoded.iter().map(Vec::len).sum();
        if let Some(started) = started {
            metrics.append(
                started.elapsed(),
                count,
                appended.as_ref().err().map(|e| e.kind()),
            );
        }
        let seqs = appended?;
        drop(appends);
        let mut seqs = seqs.into_iter();
        let mut listed = Vec::with_capacity(count);
        for (share, events) in shares.into_iter().zip(encoded) {
            let refs: Vec<EventRef> = events
                .into_iter()
                .zip(seqs.by_ref())
                .map(|(event, seq)| EventRef {
                    event_type: event.event_type,
                    stream: self.stream.clone(),
                    seq,
                    aggregate_id: None,
                })
                .collect();
            let id = &ids[share.index];
            self.settle(slots[share.index], id, command_id, share.events, &refs);
            let owner = (share.index != addressed).then(|| id.clone());
            listed.extend(refs.into_iter().map(|event| EventRef {
                aggregate_id: owner.clone(),
                ..event
            }));
        }
        Ok(AcceptedEvents {
            events: listed,
            duplicate: false,
        })
    }
}

/// The decision's events by aggregate, in the order each aggregate first
/// appears, each aggregate's in the order decided: so that one aggregate's
/// events sit at consecutive sequences, as its idempotency record lists a
/// command's events. An event for an id the command does not involve is a
/// bug in the decision.
fn shares<E>(ids: &[String], decided: Vec<(String, E)>) -> Result<Vec<Share<E>>, CommandFailure> {
    let mut shares: Vec<Share<E>> = Vec::new();
    for (id, event) in decided {
        let Ok(index) = ids.binary_search(&id) else {
            return Err(CommandFailure::Uninvolved(
                jetsource_schemas::reply::excerpt(&id, 64),
            ));
        };
        match shares.iter_mut().find(|share| share.index == index) {
            Some(share) => share.events.push(event),
            None => shares.push(Share {
                index,
                events: vec![event],
            }),
        }
    }
    Ok(shares)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_keep_each_aggregates_events_together_in_decided_order() {
        let ids = ["a".to_string(), "b".to_string(), "c".to_string()];
        let decided = vec![
            ("c".to_string(), 1),
            ("a".to_string(), 2),
            ("c".to_string(), 3),
        ];
        let shares = shares(&ids, decided).expect("all involved");
        let listed: Vec<_> = shares.iter().map(|s| (s.index, s.events.clone())).collect();
        assert_eq!(listed, [(2, vec![1, 3]), (0, vec![2])]);
    }

    #[test]
    fn an_event_for_an_uninvolved_aggregate_is_internal() {
        let ids = ["a".to_string()];
        let failure = shares(&ids, vec![("z".to_string(), 1)])
            .err()
            .expect("refused");
        assert!(matches!(failure, CommandFailure::Uninvolved(_)));
        assert_eq!(failure.code(), jetsource_schemas::RejectionCode::Internal);
    }
}
