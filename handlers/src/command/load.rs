//! A slot rebuilt from the store.

use super::handler::AggregateHandler;
use super::slot::Slot;
use crate::aggregate::Aggregate;
use jetsource_schemas::RejectionCode;
use std::ops::ControlFlow;

impl<A: Aggregate> AggregateHandler<A> {
    /// Rebuilds a slot from the store: from a snapshot and the events after
    /// it when the history is long and one can be used, else from all of it.
    /// Each event is folded as it arrives (see [`crate::store::EventStore::load_each`]).
    pub(super) async fn load(
        &self,
        slot: &mut Slot<A>,
        aggregate_id: &str,
    ) -> Result<(), (RejectionCode, String)> {
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
        let mut undecodable = None;
        let loaded = self
            .store
            .load_each(A::TYPE, aggregate_id, names, probe, &mut |event| {
                restore(slot);
                match slot.fold(&self.stream, names, event) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(reason) => {
                        undecodable = Some(reason);
                        ControlFlow::Break(())
                    }
                }
            })
            .await;
        restore(slot);
        let failed = match (undecodable, loaded) {
            (Some(reason), _) => Some((RejectionCode::Internal, reason)),
            (None, Err(e)) => Some((
                RejectionCode::Unavailable,
                format!("loading the aggregate: {e}"),
            )),
            (None, Ok(())) => None,
        };
        if let Some(failed) = failed {
            // Nothing half-folded stays: the next command loads again.
            *slot = Slot::default();
            return Err(failed);
        }
        slot.loaded = true;
        Ok(())
    }
}
