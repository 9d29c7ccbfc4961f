//! A slot rebuilt from the store: a cold load (from a snapshot when the
//! history is long and one can be used), or, after a failed append, the
//! events past the slot's sequence.

use super::failure::{CommandFailure, CorruptHistory, StoreFailure};
use super::handler::AggregateHandler;
use super::slot::Slot;
use crate::aggregate::Aggregate;
use std::ops::ControlFlow;

impl<A: Aggregate> AggregateHandler<A> {
    /// Rebuilds a slot from the store: from a snapshot and the events after
    /// it when the history is long and one can be used, else from all of it.
    /// Each event is folded as it arrives (see
    /// [`crate::store::EventStore::load_each`]). On failure the slot is
    /// left empty and unloaded: nothing half-folded stays, and the next
    /// command loads again.
    pub(super) async fn load(
        &self,
        slot: &mut Slot<A>,
        aggregate_id: &str,
    ) -> Result<(), CommandFailure> {
        *slot = Slot::default();
        // A long history asks for a snapshot; one that can be used lands
        // here, before any event is handed on, and is restored first.
        let restored = std::sync::Mutex::new(None);
        let probe = || async {
            let snapshots = self.snapshots.as_ref()?;
            let found = snapshots.fetch::<A>(&self.store, aggregate_id).await?;
            let seq = found.seq;
            *restored.lock().ok()? = Some(found);
            Some(seq)
        };
        let per_chunk = self
            .snapshots
            .as_ref()
            .map_or(0, |s| s.commands_per_chunk());
        let names = self.names();
        let restore = |slot: &mut Slot<A>| {
            if let Some(found) = restored.lock().ok().and_then(|mut r| r.take()) {
                slot.restore(found, names, per_chunk);
            }
        };
        let mut corrupt = None;
        let loaded = self
            .store
            .load_each(A::TYPE, aggregate_id, names, probe, &mut |event| {
                restore(slot);
                match slot.fold(&self.stream, names, event) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        corrupt = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })
            .await;
        restore(slot);
        let failed: Option<CommandFailure> = match (corrupt, loaded) {
            (Some(corrupt), _) => Some(corrupt.into()),
            (None, Err(e)) => Some(StoreFailure::Load(e).into()),
            (None, Ok(())) => None,
        };
        if let Some(failed) = failed {
            *slot = Slot::default();
            return Err(failed);
        }
        slot.loaded = true;
        Ok(())
    }

    /// Reads the aggregate again after a failed append: the events past the
    /// slot's sequence, or the whole aggregate as a cold load does (from a
    /// snapshot when its history is long) when the slot was never loaded.
    /// True when it found newer events.
    pub(super) async fn reload(
        &self,
        slot: &mut Slot<A>,
        aggregate_id: &str,
    ) -> Result<bool, CommandFailure> {
        if !slot.loaded {
            self.load(slot, aggregate_id).await?;
            return Ok(slot.last_seq > 0);
        }
        let events = self
            .store
            .load(A::TYPE, aggregate_id, slot.last_seq)
            .await
            .map_err(StoreFailure::Reload)?;
        let moved = events.iter().any(|e| e.seq > slot.last_seq);
        let folded: Result<(), CorruptHistory> = events
            .into_iter()
            .try_for_each(|event| slot.fold(&self.stream, self.names(), event));
        if let Err(corrupt) = folded {
            *slot = Slot::default();
            return Err(corrupt.into());
        }
        Ok(moved)
    }
}
