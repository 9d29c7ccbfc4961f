//! The decision: the command decoded, the client's `Expected-Seq` checked,
//! the aggregate's `handle` asked, its events encoded for the append.

use super::failure::{BadRequest, CommandFailure, Conflict, StoreFailure};
use super::request::CommandRequest;
use super::slot::Slot;
use crate::aggregate::Aggregate;
use crate::codec::{self, EncodedEvent};
use crate::keys::KeyRing;
use crate::store::NewEvent;
use jetsource_schemas::{personal, upcast};

/// What a decision on the slot's state came to.
pub(crate) enum Decision<E> {
    /// Events to append.
    Events(Vec<E>),
    /// Nothing to append: the command is accepted as it is.
    Nothing,
    /// A decision on the empty state of a slot never loaded that proves
    /// nothing (no events, or a refusal): load the aggregate and decide
    /// again.
    Unproven,
}

/// The request's command, decoded from its name and body.
pub(crate) fn decode<A: Aggregate>(
    request: &CommandRequest<'_>,
) -> Result<A::Command, CommandFailure> {
    codec::decode_command::<A::Command>(request.command, request.body)
        .map_err(|e| BadRequest::Body(e).into())
}

/// Refuses a command whose `Expected-Seq` is not the aggregate's last
/// sequence.
pub(crate) fn check_expected_seq(expected: Option<u64>, actual: u64) -> Result<(), CommandFailure> {
    match expected {
        Some(expected) if expected != actual => {
            Err(Conflict::ExpectedSeq { expected, actual }.into())
        }
        _ => Ok(()),
    }
}

/// `handle` on the slot's state.
pub(crate) fn decide<A: Aggregate>(
    slot: &Slot<A>,
    command: A::Command,
) -> Result<Decision<A::Event>, CommandFailure> {
    match slot.state.handle(command) {
        Ok(events) if events.is_empty() && !slot.loaded => Ok(Decision::Unproven),
        Ok(events) if events.is_empty() => Ok(Decision::Nothing),
        Ok(events) => Ok(Decision::Events(events)),
        Err(_) if !slot.loaded => Ok(Decision::Unproven),
        Err(rejection) => Err(CommandFailure::Denied(rejection)),
    }
}

/// The events as the store appends them.
pub(crate) fn encode<E: serde::Serialize>(events: &[E]) -> Result<Vec<NewEvent>, CommandFailure> {
    events
        .iter()
        .map(|event| {
            codec::encode_event(event)
                .map(|EncodedEvent { event_type, body }| NewEvent { event_type, body })
                .map_err(CommandFailure::Unencodable)
        })
        .collect()
}

/// `events` of aggregate `aggregate_id` with their personal fields sealed
/// under its data key (made at its first personal field); untouched, and
/// no key looked up, when `A` declares no personal data.
pub(crate) async fn seal<A: Aggregate>(
    keys: &KeyRing,
    aggregate_id: &str,
    events: &mut [NewEvent],
) -> Result<(), CommandFailure> {
    let personal = upcast::personal_of::<A>();
    if !events.iter().any(|e| personal.covers(&e.event_type)) {
        return Ok(());
    }
    let subject = personal::data_subject(A::TYPE, aggregate_id);
    let key = keys
        .key_for_write(&subject)
        .await
        .map_err(|e| CommandFailure::Store(StoreFailure::Keys(e)))?;
    for event in events {
        let sealed = personal::seal_body(&personal, &event.event_type, &event.body, &key)
            .map_err(CommandFailure::Unsealable)?;
        if let Some(sealed) = sealed {
            event.body = sealed.into();
        }
    }
    Ok(())
}
