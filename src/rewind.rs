//! An aggregate's state at any point of its history: its events up to a
//! stream sequence, folded with the aggregate's own `apply`, as JSON.
//!
//! The handlers fold the same events the same way; a rewind never touches
//! their cache, it reads the stream with [`EventStore::load`].
//!
//! A rewind stops at command boundaries: the events one command appended
//! (consecutive, with one `Command-Id`) are folded all or none, since the
//! state between two of them never existed. A sequence inside a command
//! snaps back to the end of the command before it, and says so.

use jetsource_handlers::error::Error;
use jetsource_handlers::keys::KeyErrorKind;
use jetsource_handlers::store::{EventStore, StoredEvent};
use jetsource_handlers::Aggregate;
use jetsource_schemas::{personal, upcast};
use serde::Serialize;

/// What went wrong rewinding an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindErrorKind {
    /// The aggregate type is not hosted by this application, or the id is not a token.
    InvalidInput,
    /// The event store could not be read.
    Unavailable,
    /// A stored event does not decode, or the state does not serialize.
    Corrupt,
    /// The aggregate's data key is wrapped under a master key, and the
    /// settings name none, or another (`[keys] master_key_file`).
    MasterKey,
}

impl std::fmt::Display for RewindErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RewindErrorKind::InvalidInput => "invalid rewind",
            RewindErrorKind::Unavailable => "the event store is unavailable",
            RewindErrorKind::Corrupt => "the history cannot be folded",
            RewindErrorKind::MasterKey => {
                "the data key is wrapped under a master key not configured"
            }
        })
    }
}

/// A rewind failure.
pub type RewindError = Error<RewindErrorKind>;

/// An aggregate's state after its events up to `seq`.
#[derive(Debug, Clone, Serialize)]
pub struct Rewound {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The stream sequence of the last event folded (0: none).
    pub seq: u64,
    /// How many events were folded.
    pub events: usize,
    /// The state, as the aggregate serializes it.
    pub state: serde_json::Value,
    /// The sequence asked for, when it fell inside one command's events:
    /// `seq` is then the end of the command before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapped_from: Option<u64>,
}

/// Folds `A`'s events of `aggregate_id` with a stream sequence at most
/// `to_seq` (all of them when `None`).
pub async fn rewind<A: Aggregate + Serialize>(
    store: &EventStore,
    aggregate_id: &str,
    to_seq: Option<u64>,
) -> Result<Rewound, RewindError> {
    jetsource_schemas::token::validate("aggregate id", aggregate_id)
        .map_err(|e| Error::with_source(RewindErrorKind::InvalidInput, e))?;
    let stored = store
        .load(A::TYPE, aggregate_id, 0)
        .await
        .map_err(|e| Error::with_source(RewindErrorKind::Unavailable, e))?;
    let key = match upcast::personal_of::<A>().is_empty() {
        true => None,
        false => store
            .keys()
            .key(&personal::data_subject(A::TYPE, aggregate_id))
            .await
            .map_err(|e| {
                let kind = match e.kind() {
                    KeyErrorKind::NoMasterKey | KeyErrorKind::WrongMasterKey => {
                        RewindErrorKind::MasterKey
                    }
                    KeyErrorKind::Corrupt => RewindErrorKind::Corrupt,
                    _ => RewindErrorKind::Unavailable,
                };
                Error::with_source(kind, e)
            })?,
    };
    let (whole, snapped_from) = whole_commands(&stored, to_seq);
    let mut state = A::default();
    let mut seq = 0;
    let mut events = 0;
    for event in stored.into_iter().take(whole) {
        upcast::decode_stored::<A>(
            event.event_type(),
            event.version(),
            &event.payload,
            key.as_ref(),
            |_, decoded| state.apply(decoded),
        )
        .map_err(|e| {
            Error::new(
                RewindErrorKind::Corrupt,
                format!("{} at sequence {}: {e}", event.subject, event.seq),
            )
        })?;
        seq = event.seq;
        events += 1;
    }
    let state = serde_json::to_value(&state)
        .map_err(|e| Error::with_source(RewindErrorKind::Corrupt, e))?;
    Ok(Rewound {
        aggregate_type: A::TYPE.to_string(),
        aggregate_id: aggregate_id.to_string(),
        seq,
        events,
        state,
        snapped_from,
    })
}

/// How many of `stored`'s first events are whole commands at or below
/// `to_seq`, and `to_seq` when a command was cut there.
fn whole_commands(stored: &[StoredEvent], to_seq: Option<u64>) -> (usize, Option<u64>) {
    let Some(to) = to_seq else {
        return (stored.len(), None);
    };
    let within = stored.iter().take_while(|e| e.seq <= to).count();
    let cut = |i: usize| match (stored[i - 1].command_id(), stored[i].command_id()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    };
    let mut whole = within;
    while whole > 0 && whole < stored.len() && cut(whole) {
        whole -= 1;
    }
    (whole, (whole < within).then_some(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, command_id: Option<&str>) -> StoredEvent {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = command_id {
            headers.insert("Command-Id", id);
        }
        StoredEvent {
            subject: "evt.order.o1.Changed".into(),
            seq,
            headers,
            payload: bytes::Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn a_sequence_inside_a_command_snaps_to_the_command_before() {
        // c1: #1; c2: #3 #4 #5; by hand: #6, #7; c3: #9.
        let stored = vec![
            event(1, Some("c1")),
            event(3, Some("c2")),
            event(4, Some("c2")),
            event(5, Some("c2")),
            event(6, None),
            event(7, None),
            event(9, Some("c3")),
        ];
        assert_eq!(whole_commands(&stored, None), (7, None));
        assert_eq!(whole_commands(&stored, Some(1)), (1, None));
        assert_eq!(whole_commands(&stored, Some(2)), (1, None));
        assert_eq!(whole_commands(&stored, Some(3)), (1, Some(3)));
        assert_eq!(whole_commands(&stored, Some(4)), (1, Some(4)));
        assert_eq!(whole_commands(&stored, Some(5)), (4, None));
        assert_eq!(whole_commands(&stored, Some(6)), (5, None));
        assert_eq!(whole_commands(&stored, Some(8)), (6, None));
        assert_eq!(whole_commands(&stored, Some(100)), (7, None));
        assert_eq!(whole_commands(&stored, Some(0)), (0, None));
    }
}
