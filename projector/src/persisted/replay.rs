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
                summary.fail(format!(
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
                    summary.fail(why);
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

impl<S: ReadStore> PersistedProjection<S> {
    /// Gives up on parked event `seq` of `stream` without applying it: the
    /// read model stays without it for good. A skipped one (in the
    /// checkpoint's `skipped` set) leaves the set; the one a halted
    /// projection stopped at becomes its position, so it resumes after it.
    /// Either way in one commit of the checkpoint, then the record goes. One
    /// the checkpoint already holds only loses its record.
    pub async fn skip_parked(
        &mut self,
        stream: &str,
        seq: u64,
    ) -> Result<control::SkipOutcome, ProjectionError> {
        let parked = parked::list_from(&self.control, self.shared.name).await?;
        let Some(p) = parked.iter().find(|p| p.stream == stream && p.seq == seq) else {
            return Ok(control::SkipOutcome::NotParked);
        };
        let position = self.checkpoint.positions.get(stream).copied().unwrap_or(0);
        let mut next = self.checkpoint.clone();
        let skipped = next
            .skipped
            .get_mut(stream)
            .is_some_and(|set| set.remove(&seq));
        if next.skipped.get(stream).is_some_and(|set| set.is_empty()) {
            next.skipped.remove(stream);
        }
        if !skipped && seq <= position {
            parked::remove(&self.control, p).await?;
            return Ok(control::SkipOutcome::AlreadyApplied);
        }
        if !skipped {
            let Some(index) = self.followed.iter().position(|f| f.name == stream) else {
                return Ok(control::SkipOutcome::Refused {
                    reason: format!("{stream} is not a stream this projection follows"),
                });
            };
            if Self::missing_before(&self.followed[index], position, seq).await? {
                return Ok(control::SkipOutcome::Refused {
                    reason: format!(
                        "{stream} #{seq} is not next: events before it are not applied yet"
                    ),
                });
            }
            next.advance_to(stream, seq);
        }
        let committed = self
            .store
            .commit(self.generation, Vec::new(), next.clone(), self.live)
            .await?;
        if let Some(e) = committed.failure {
            return Ok(control::SkipOutcome::Refused {
                reason: format!("the checkpoint was not stored: {e}"),
            });
        }
        self.checkpoint = next;
        self.shared
            .applied
            .send_replace(self.checkpoint.positions.clone());
        parked::remove(&self.control, p).await?;
        tracing::warn!(
            projection = self.shared.name,
            stream,
            seq,
            "parked event skipped for good"
        );
        Ok(control::SkipOutcome::Skipped)
    }
}
