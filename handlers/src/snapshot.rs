//! Snapshots of long-lived aggregates, in a key-value bucket per aggregate
//! type (`jetsource_snapshots_<type>`, one value per aggregate id, no history).
//!
//! A snapshot is a cache of the history, never a source of truth: it holds
//! the state after the event at stream sequence `seq` and the aggregate's
//! whole idempotency record up to there, and it is used only when all of it
//! reads back (the aggregate's [`Aggregate::SNAPSHOT_VERSION`], its
//! `from_snapshot`) and the event at `seq` is this aggregate's (a stream
//! made anew must not meet an old snapshot). Anything else, and the history
//! is replayed as without snapshots. Since the record is kept whole, a
//! resend is recognised over all of history, as without snapshots; a
//! snapshot that would not fit in one message is not written.
//!
//! Writes happen off the command path: after an accepted command brings
//! an aggregate [`SnapshotConfig::every`] events past its last snapshot (or
//! its load), the state is encoded under the aggregate's lock and put in a
//! task of its own. Reads happen only for long histories: the store asks
//! for a snapshot once its first direct-get batch shows many events left
//! (see [`crate::store::EventStore::load_types_or_snapshot`]), so loading
//! the many short-lived aggregates costs nothing more.

use crate::aggregate::Aggregate;
use crate::store::EventStore;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The longest wait for each request opening or creating a bucket.
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// When to take snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// Events an aggregate goes past its last snapshot before the next one
    /// is written (default 1,000; 0: never). Only aggregates whose
    /// [`Aggregate::snapshot`] returns a value take snapshots.
    pub every: u64,
    /// Replicas of the snapshot buckets; the runtime sets the event
    /// streams' own.
    pub replicas: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            every: 1_000,
            replicas: 1,
        }
    }
}

/// One snapshot as stored (JSON).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The aggregate's [`Aggregate::SNAPSHOT_VERSION`].
    pub version: u32,
    /// The stream sequence of the last event folded into `state`.
    pub seq: u64,
    /// What [`Aggregate::snapshot`] returned.
    pub state: serde_json::Value,
    /// The idempotency record: `[command id, first stream sequence, event
    /// types joined by "."]` for every command up to `seq`.
    pub commands: Vec<(String, u64, String)>,
}

/// A restored snapshot: the state and the rest of the record.
pub(crate) struct Restored<A> {
    pub seq: u64,
    pub state: A,
    pub commands: Vec<(String, u64, String)>,
}

/// One aggregate type's snapshot bucket, opened at first use.
pub(crate) struct Snapshots {
    bucket: String,
    config: SnapshotConfig,
    kv: OnceCell<Option<kv::Store>>,
}

impl Snapshots {
    /// Snapshots for `A` in `store`'s namespace, or `None` when `A` takes
    /// none or `config.every` is 0.
    pub(crate) fn for_aggregate<A: Aggregate>(
        store: &EventStore,
        config: &SnapshotConfig,
    ) -> Option<Self> {
        if config.every == 0 || A::default().snapshot().is_none() {
            return None;
        }
        Some(Snapshots {
            bucket: store
                .namespace()
                .bucket(&format!("jetsource_snapshots_{}", A::TYPE)),
            config: config.clone(),
            kv: OnceCell::new(),
        })
    }

    /// Events past the last snapshot after which the next is written.
    pub(crate) fn every(&self) -> u64 {
        self.config.every
    }

    /// The bucket, created when absent; `None` (with a warning, once) when
    /// it can be neither opened nor created, and snapshots are off then for
    /// the life of the process. A request the account may not make goes
    /// unanswered: each waits [`OPEN_TIMEOUT`] at most, once.
    async fn kv(&self, store: &EventStore) -> Option<&kv::Store> {
        self.kv
            .get_or_init(|| async {
                let mut js = jetstream::new(store.client().clone());
                js.set_timeout(OPEN_TIMEOUT);
                if let Ok(kv) = js.get_key_value(&self.bucket).await {
                    return Some(kv);
                }
                let created = js
                    .create_key_value(kv::Config {
                        bucket: self.bucket.clone(),
                        description: "jetsource: aggregate snapshots".into(),
                        history: 1,
                        num_replicas: self.config.replicas,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(kv) => Some(kv),
                    // Another process created it meanwhile, or it may not.
                    Err(e) => match js.get_key_value(&self.bucket).await {
                        Ok(kv) => Some(kv),
                        Err(_) => {
                            tracing::warn!(bucket = %self.bucket, error = %e, "no snapshot bucket: replaying histories in full");
                            None
                        }
                    },
                }
            })
            .await
            .as_ref()
    }

    /// The latest usable snapshot of aggregate `id`, checked as the module
    /// docs say; `None` for no snapshot or one that cannot be used.
    pub(crate) async fn fetch<A: Aggregate>(
        &self,
        store: &EventStore,
        id: &str,
    ) -> Option<Restored<A>> {
        let kv = self.kv(store).await?;
        let bytes = match kv.get(id).await {
            Ok(found) => found?,
            // A cache: the history is replayed instead, as without one.
            Err(e) => {
                tracing::debug!(aggregate_id = id, error = %e, "snapshot not read");
                return None;
            }
        };
        let restored = Self::check::<A>(store, id, &bytes).await;
        crate::metrics::global().snapshot(Some(restored.is_some()));
        restored
    }

    /// The snapshot in `bytes`, when it can be used.
    async fn check<A: Aggregate>(
        store: &EventStore,
        id: &str,
        bytes: &[u8],
    ) -> Option<Restored<A>> {
        let record: Record = match serde_json::from_slice(bytes) {
            Ok(record) => record,
            Err(e) => {
                tracing::debug!(aggregate_id = id, error = %e, "snapshot does not read");
                return None;
            }
        };
        if record.version != A::SNAPSHOT_VERSION {
            tracing::debug!(
                aggregate_id = id,
                version = record.version,
                "snapshot of another version"
            );
            return None;
        }
        let filter = store.namespace().aggregate_filter(A::TYPE, id).ok()?;
        let own = filter.strip_suffix('*')?;
        match store.subject_at(A::TYPE, record.seq).await {
            Ok(Some(subject)) if subject.starts_with(own) => {}
            other => {
                tracing::debug!(aggregate_id = id, seq = record.seq, found = ?other.ok().flatten(), "snapshot does not match the stream");
                return None;
            }
        }
        let state = A::from_snapshot(record.state)?;
        Some(Restored {
            seq: record.seq,
            state,
            commands: record.commands,
        })
    }

    /// Writes `record` as aggregate `id`'s snapshot, in a task of its own.
    pub(crate) fn write(self: &Arc<Self>, store: &EventStore, id: &str, record: Record) {
        let Ok(bytes) = serde_json::to_vec(&record) else {
            return;
        };
        // A message cannot exceed the server's max_payload (1 MiB by
        // default): such an aggregate is replayed in full instead.
        if bytes.len() as u64 > store.client().server_info().max_payload as u64 {
            tracing::debug!(
                aggregate_id = id,
                bytes = bytes.len(),
                "snapshot too large to store"
            );
            return;
        }
        let store = store.clone();
        let id = id.to_string();
        let snapshots = self.clone();
        tokio::spawn(async move {
            let Some(kv) = snapshots.kv(&store).await else {
                return;
            };
            let put =
                tokio::time::timeout(Duration::from_secs(10), kv.put(&id, Bytes::from(bytes)));
            match put.await {
                Ok(Ok(_)) => crate::metrics::global().snapshot(None),
                Ok(Err(e)) => {
                    tracing::debug!(aggregate_id = %id, error = %e, "snapshot not stored")
                }
                Err(_) => tracing::debug!(aggregate_id = %id, "snapshot not stored in time"),
            }
        });
    }
}
