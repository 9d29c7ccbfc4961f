//! The checkpoint: which events a generation holds.

use crate::event::Event;
use crate::position::Positions;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What a generation has applied, stored with its read model: the last
/// stream sequence per stream, the parked events skipped below it, and the
/// lease token of the instance that wrote it. `S` is what is stored along
/// with it: nothing for the seam, a [`crate::PersistedProjector`]'s whole
/// state in the one-value store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint<S = ()> {
    /// The last stream sequence applied, per stream.
    pub positions: Positions,
    /// The projector's state after those events (one-value store).
    pub state: S,
    /// Events at or below `positions` that were parked and skipped, per
    /// stream: `replay-parked` applies them and removes them here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, BTreeSet<u64>>,
    /// The lease token of the instance that wrote it (0: none).
    #[serde(default)]
    pub lease: u64,
}

impl<S> Checkpoint<S> {
    /// Advances the positions over `event` (never backwards: a skipped
    /// event applied again leaves them as they are).
    pub fn advance(&mut self, event: &Event) {
        self.advance_to(&event.stream, event.seq);
    }

    /// Advances the position in `stream` to `seq`, never backwards.
    pub fn advance_to(&mut self, stream: &str, seq: u64) {
        let at = self.positions.entry(stream.to_string()).or_insert(0);
        *at = (*at).max(seq);
    }

    /// The checkpoint without what is stored with it.
    pub fn mark(&self) -> Checkpoint {
        Checkpoint {
            positions: self.positions.clone(),
            state: (),
            skipped: self.skipped.clone(),
            lease: self.lease,
        }
    }

    /// This checkpoint with `state` stored along.
    pub fn with<T>(self, state: T) -> Checkpoint<T> {
        Checkpoint {
            positions: self.positions,
            state,
            skipped: self.skipped,
            lease: self.lease,
        }
    }
}
