//! `replay-parked`: the parked events of a projection applied again, each
//! committed with the checkpoint before it leaves the parked store.

use super::PersistedProjection;
use crate::control;
use crate::error::ProjectionError;
use crate::event;
use crate::parked::{self, ParkedEvent};
use crate::store::ReadStore;
use jetsource_schemas::forgotten;
use std::collections::BTreeSet;

impl<S: ReadStore> PersistedProjection<S> {
    /// Applies the parked events of this projection again, oldest first
    /// per stream: a skipped one out of order (it is in the checkpoint's
    /// `skipped` set), the one a halted projection stopped at in order.
    /// Each is removed from the parked store only once its application is
    /// stored; one the checkpoint already holds is removed without applying.
    pub async fn replay_parked(&mut self) -> Result<control::ReplaySummary, ProjectionError> {
        let mut summary = control::ReplaySummary::default();
        let mut stuck: BTreeSet<String> = BTreeSet::new();
        for p in parked::list_from(&self.control, self.shared.name).await? {
            let position = self
                .checkpoint
                .positions
                .get(&p.stream)
                .copied()
                .unwrap_or(0);
            let skipped = self
                .checkpoint
                .skipped
                .get(&p.stream)
                .is_some_and(|s| s.contains(&p.seq));
            if !skipped && p.seq <= position {
                parked::remove(&self.control, &p).await?;
                summary.already_applied += 1;
                continue;
            }
            let Some(index) = self.followed.iter().position(|f| f.name == p.stream) else {
                summary.failed.push(format!(
                    "{} #{}: not a stream this projection follows",
                    p.stream, p.seq
                ));
                continue;
            };
            if stuck.contains(&p.stream)
                || (!skipped
                    && Self::missing_before(&self.followed[index], position, p.seq).await?)
            {
                summary.waiting += 1;
                continue;
            }
            match self.replay_one(index, &p, skipped).await {
                Ok(()) => {
                    parked::remove(&self.control, &p).await?;
                    summary.applied += 1;
                }
                Err(why) => {
                    summary.failed.push(why);
                    stuck.insert(p.stream.clone());
                }
            }
        }
        Ok(summary)
    }

    async fn replay_one(
        &mut self,
        index: usize,
        p: &ParkedEvent,
        skipped: bool,
    ) -> Result<(), String> {
        let what = format!("{} #{}", p.stream, p.seq);
        let raw = self.followed[index]
            .stream
            .get_raw_message(p.seq)
            .await
            .map_err(|e| format!("{what}: cannot read it from the stream: {e}"))?;
        let event = if p.stream == forgotten::stream_name(&self.config.namespace) {
            event::notice_from_stream_message(&self.config.namespace, &p.stream, raw)
                .map_err(|e| e.to_string())?
        } else {
            let event = event::from_stream_message(&self.config.namespace, &p.stream, raw)
                .map_err(|e| e.to_string())?;
            self.keys.reveal(event).await.map_err(|e| e.to_string())?
        };
        let mut next = self.checkpoint.clone();
        if skipped {
            if let Some(set) = next.skipped.get_mut(&p.stream) {
                set.remove(&p.seq);
                if set.is_empty() {
                    next.skipped.remove(&p.stream);
                }
            }
        }
        let subject = event.subject.clone();
        let committed = self
            .store
            .commit(self.generation, vec![event], next.clone(), self.live)
            .await
            .map_err(|e| format!("{what}: not stored, so not applied: {e}"))?;
        if committed.applied == 0 {
            // Nothing stored: the checkpoint is as it was.
            return Err(match committed.failure {
                Some(e) => format!("{what} ({subject}): {e}"),
                None => format!("{what} ({subject}): not applied"),
            });
        }
        next.advance_to(&p.stream, p.seq);
        self.checkpoint = next;
        self.shared.set_applied(&self.checkpoint.positions);
        Ok(())
    }
}
