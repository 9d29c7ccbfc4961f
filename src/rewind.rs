//! An aggregate's state at any point of its history: its events up to a
//! stream sequence, folded with the aggregate's own `apply`, as JSON.
//!
//! The handlers fold the same events the same way; a rewind never touches
//! their cache, it reads the stream with [`EventStore::load`].

use jetsource_handlers::error::Error;
use jetsource_handlers::store::EventStore;
use jetsource_handlers::Aggregate;
use jetsource_schemas::upcast;
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
}

impl std::fmt::Display for RewindErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RewindErrorKind::InvalidInput => "invalid rewind",
            RewindErrorKind::Unavailable => "the event store is unavailable",
            RewindErrorKind::Corrupt => "the history cannot be folded",
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
    let mut state = A::default();
    let mut seq = 0;
    let mut events = 0;
    for event in stored
        .into_iter()
        .take_while(|e| to_seq.is_none_or(|to| e.seq <= to))
    {
        upcast::decode_stored::<A>(
            event.event_type(),
            event.version(),
            &event.payload,
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
    })
}
