//! The checkpoint: the one KV record of a projection's generation, holding
//! its state with the positions that state includes, written by
//! compare-and-set on its revision.

use super::PersistedProjection;
use crate::error::{ProjectionError, ProjectionErrorKind};
use crate::position::Positions;
use crate::projector::PersistedProjector;
use crate::shared;
use async_nats::jetstream::kv;
use jetsource_schemas::error::Error;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The key of the checkpoint in a projection's bucket.
pub const CHECKPOINT_KEY: &str = "checkpoint";

/// A projection's state and the positions it includes, written as one
/// value so they can never disagree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint<S> {
    /// The last stream sequence applied, per stream.
    pub positions: Positions,
    /// The projector's state after those events.
    pub state: S,
    /// Events at or below `positions` that were parked and skipped, per
    /// stream: `replay-parked` applies them and removes them here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, BTreeSet<u64>>,
    /// The lease token of the instance that wrote it (0: none).
    #[serde(default)]
    pub lease: u64,
}

impl<P: PersistedProjector> PersistedProjection<P> {
    /// Loads the checkpoint into the projector (or keeps its initial state
    /// when there is none yet).
    pub(super) async fn reload(&mut self) -> Result<(), ProjectionError> {
        let entry = self
            .kv
            .entry(CHECKPOINT_KEY)
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let checkpoint: Checkpoint<P::State> = serde_json::from_slice(&entry.value)
                    .map_err(|e| {
                        Error::with_message_and_source(
                            ProjectionErrorKind::Store,
                            "the stored checkpoint does not decode",
                            e,
                        )
                    })?;
                {
                    let mut guard = shared::recover(self.model.write());
                    guard.restore(checkpoint.state);
                }
                self.positions = checkpoint.positions;
                self.skipped = checkpoint.skipped;
                self.revision = entry.revision;
            }
            Some(entry) => {
                self.revision = entry.revision;
            }
            None => self.revision = 0,
        }
        self.shared.applied.send_replace(self.positions.clone());
        Ok(())
    }

    pub(super) async fn store(&mut self, positions: &Positions) -> Result<(), ProjectionError> {
        let value = {
            let guard = shared::recover(self.model.read());
            serde_json::to_vec(&Checkpoint {
                positions: positions.clone(),
                state: guard.state(),
                skipped: self.skipped.clone(),
                lease: self.lease,
            })
        }
        .map_err(|e| {
            Error::with_message_and_source(
                ProjectionErrorKind::Store,
                "the state does not encode",
                e,
            )
        })?;
        match self
            .kv
            .update(CHECKPOINT_KEY, value.into(), self.revision)
            .await
        {
            Ok(revision) => {
                self.revision = revision;
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(Error::with_source(ProjectionErrorKind::Conflict, e))
            }
            Err(e) => Err(Error::with_source(ProjectionErrorKind::Store, e)),
        }
    }
}
