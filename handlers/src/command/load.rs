//! A slot rebuilt from the store: a cold load (from a snapshot when the
//! history is long and one can be used), or, after a failed append, the
//! events past the slot's sequence.

use super::failure::{CommandFailure, CorruptHistory, StoreFailure};
use super::handler::AggregateHandler;
use super::slot::Slot;
use crate::aggregate::Aggregate;
use jetsource_schemas::personal::{self, DataKey};
use jetsource_schemas::upcast;
use std::ops::ControlFlow;

impl<A: Aggregate> AggregateHandler<A> {
    /// Rebuilds a slot from the store: from a snapshot and the events after
    /// it when the history is long and one can be used, else from all of
    /// it. On failure the slot is left empty and unloaded: nothing
    /// half-folded stays, and the next command loads again.
    pub(super) async fn load(
        &self,
        slot: &mut Slot<A>,
        aggregate_id: &str,
    ) -> Result<(), CommandFailure> {
        *slot = Slot::default();
        let read = self.read_history(slot, aggregate_id).await;
        if read.is_ok() {
            slot.loaded = true;
        } else {
            *slot = Slot::default();
        }
        read
    }

    /// Reads the aggregate's history into `slot`, in two steps: the first
    /// direct-get batch (nearly every aggregate whole, in one round trip),
    /// then, for a long history with a usable snapshot, the snapshot and
    /// the events after it, else the rest; each event folded as it arrives.
    async fn read_history(
        &self,
        slot: &mut Slot<A>,
        aggregate_id: &str,
    ) -> Result<(), CommandFailure> {
        let names = self.names();
        let key = self.data_key(aggregate_id).await?;
        let key = key.as_ref();
        let mut first = self
            .store
            .first_batch(A::TYPE, aggregate_id, names)
            .await
            .map_err(StoreFailure::Load)?;
        if let Some(snapshots) = &self.snapshots {
            let restored = snapshots
                .for_load::<A>(&self.store, aggregate_id, &first)
                .await;
            if let Some(restored) = restored {
                first.resume_after(restored.seq);
                slot.restore(restored, names, snapshots.commands_per_chunk());
            }
        }
        let mut corrupt = None;
        let read = first
            .read_rest(
                &mut |event| match slot.fold(&self.stream, names, key, event) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        corrupt = Some(e);
                        ControlFlow::Break(())
                    }
                },
            )
            .await;
        match corrupt {
            Some(corrupt) => Err(corrupt.into()),
            None => read.map_err(|e| StoreFailure::Load(e).into()),
        }
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
        let key = match moved {
            true => self.data_key(aggregate_id).await?,
            false => None,
        };
        let folded: Result<(), CorruptHistory> = events
            .into_iter()
            .try_for_each(|event| slot.fold(&self.stream, self.names(), key.as_ref(), event));
        if let Err(corrupt) = folded {
            *slot = Slot::default();
            return Err(corrupt.into());
        }
        Ok(moved)
    }
}

impl<A: Aggregate> AggregateHandler<A> {
    /// The aggregate's data key, read before its events so that its
    /// personal fields open; `None` when it has none (forgotten) or `A`
    /// declares no personal data (then nothing is read).
    async fn data_key(&self, aggregate_id: &str) -> Result<Option<DataKey>, CommandFailure> {
        if upcast::personal_of::<A>().is_empty() {
            return Ok(None);
        }
        self.store
            .keys()
            .key(&personal::data_subject(A::TYPE, aggregate_id))
            .await
            .map_err(|e| StoreFailure::Keys(e).into())
    }
}
