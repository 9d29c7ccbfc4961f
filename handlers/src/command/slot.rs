//! An aggregate's entry in the state cache: its state, its last stream
//! sequence and its idempotency record, rebuilt from confirmed events only.

use super::failure::CorruptHistory;
use super::idempotency::Recorded;
use crate::aggregate::Aggregate;
use crate::snapshot::{Restored, SnapshotProgress};
use crate::store::StoredEvent;
use jetsource_schemas::personal::DataKey;
use jetsource_schemas::upcast;
use std::collections::HashMap;

/// The in-memory state of one aggregate instance.
pub(super) struct Slot<A> {
    pub(super) loaded: bool,
    pub(super) state: A,
    pub(super) last_seq: u64,
    /// Accepted command ids and where their events went: the idempotency
    /// record, rebuilt from the events' `Command-Id` headers on every load.
    /// It holds every command of the aggregate's history, so it is kept
    /// compact: two small allocations per command.
    pub(super) commands: HashMap<Box<str>, Recorded>,
    /// How far past its last snapshot, and which chunks of its record are
    /// stored.
    pub(super) snapshot: SnapshotProgress,
}

impl<A: Aggregate> Default for Slot<A> {
    fn default() -> Self {
        Slot {
            loaded: false,
            state: A::default(),
            last_seq: 0,
            commands: HashMap::new(),
            snapshot: SnapshotProgress::default(),
        }
    }
}

impl<A: Aggregate> Slot<A> {
    /// Folds one confirmed event into the slot (none at or below the
    /// slot's sequence); `names` are the aggregate's event types, when
    /// known (see [`Recorded`]); `key` opens its personal fields.
    pub(super) fn fold(
        &mut self,
        stream: &str,
        names: &[&'static str],
        key: Option<&DataKey>,
        stored: StoredEvent,
    ) -> Result<(), CorruptHistory> {
        if stored.seq <= self.last_seq {
            return Ok(());
        }
        let event_type = stored.event_type();
        let state = &mut self.state;
        let read = upcast::decode_stored::<A>(
            event_type,
            stored.version(),
            &stored.payload,
            key,
            |_, event| state.apply(event),
        );
        if let Err(source) = read {
            return Err(CorruptHistory {
                stream: stream.to_string(),
                subject: stored.subject.clone(),
                seq: stored.seq,
                source,
            });
        }
        if let Some(command_id) = stored.command_id() {
            match self.commands.get_mut(command_id) {
                Some(recorded) => recorded.extend(stored.seq, event_type, names),
                None => {
                    self.commands.insert(
                        command_id.into(),
                        Recorded::new(stored.seq, event_type, names),
                    );
                }
            }
        }
        self.last_seq = stored.seq;
        self.snapshot.folded(1);
        Ok(())
    }

    /// Starts from a snapshot: its state, sequence and idempotency record.
    /// Its chunks count as stored when they are of `per_chunk` commands
    /// (see [`SnapshotProgress::restored`]).
    pub(super) fn restore(
        &mut self,
        restored: Restored<A>,
        names: &[&'static str],
        per_chunk: usize,
    ) {
        self.state = restored.state;
        self.last_seq = restored.seq;
        self.commands = restored
            .commands
            .into_iter()
            .map(|(id, first_seq, joined)| {
                (
                    id.into_boxed_str(),
                    Recorded::restore(first_seq, &joined, names),
                )
            })
            .collect();
        self.snapshot = SnapshotProgress::restored(restored.chunks, restored.chunk_size, per_chunk);
    }
}
