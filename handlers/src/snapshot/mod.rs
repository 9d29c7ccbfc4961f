//! Snapshots of long-lived aggregates, in a key-value bucket per aggregate
//! type (`jetsource_snapshots_<type>`, one value per aggregate id, no history).
//!
//! A snapshot is a cache of the history, never a source of truth: it holds
//! the state after the event at stream sequence `seq` and the aggregate's
//! whole idempotency record up to there, and it is used only when all of it
//! reads back (the aggregate's [`Aggregate::SNAPSHOT_VERSION`], its
//! `from_snapshot`, every chunk below) and the event at `seq` is this
//! aggregate's (a stream made anew must not meet an old snapshot). Anything
//! else, and the history is replayed as without snapshots. Since the record
//! is kept whole, a resend is recognised over all of history, as without
//! snapshots.
//!
//! The record grows with the history (about 70 bytes a command), so it is
//! kept in chunks: the commands in the order of their first event,
//! [`SnapshotConfig::commands_per_chunk`] to a chunk, each chunk under a key
//! of its own (`<id>.commands.<per chunk>.<n>`) and written once, when it
//! fills; the snapshot itself holds the commands past the last full chunk.
//! Which commands share a chunk follows from the history alone, so every
//! process writes the same chunk under the same key, and a snapshot costs
//! the state, the last chunks and the commands past them, however long the
//! history.
//!
//! Writes happen off the command path: after an accepted command brings
//! an aggregate [`SnapshotConfig::every`] events past its last snapshot (or
//! its load), the state is encoded under the aggregate's lock and put in a
//! task of its own. Reads happen only for long histories: a cold load asks
//! for a snapshot once its first direct-get batch shows many events left,
//! before the rest is read, so loading the many short-lived aggregates
//! costs nothing more.
//!
//! Here: the snapshot bucket, reading a snapshot back and checking it,
//! writing one; `progress.rs`: what an aggregate's slot keeps of its
//! snapshots, and how a snapshot takes the idempotency record in chunks.

mod progress;

pub(crate) use progress::{RecordedCommand, SnapshotProgress};

use crate::aggregate::Aggregate;
use crate::store::{EventStore, FirstBatch};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The longest wait for each request opening or creating a bucket.
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// Chunks of a record read at once.
const CHUNK_READS: usize = 16;

/// When to take snapshots.
///
/// Deserializes from one key, `snapshot_every` (named so beside the other
/// command handling keys in one table); the rest keep their defaults.
/// Every value is valid.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Events an aggregate goes past its last snapshot before the next one
    /// is written (default 1,000; 0: never). Only aggregates whose
    /// [`Aggregate::snapshot`] returns a value take snapshots. Key
    /// `snapshot_every`.
    #[serde(rename = "snapshot_every")]
    pub every: u64,
    /// Replicas of the snapshot buckets; the runtime sets the event
    /// streams' own.
    #[serde(skip)]
    pub replicas: usize,
    /// Commands per chunk of a snapshot's idempotency record (default
    /// 1,024: about 70 KB with UUID command ids); 0 keeps the whole record
    /// in the snapshot, which then stops being written once it outgrows
    /// one message.
    #[serde(skip)]
    pub commands_per_chunk: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            every: 1_000,
            replicas: 1,
            commands_per_chunk: 1_024,
        }
    }
}

/// One command of the idempotency record: `[command id, first stream
/// sequence, event types joined by "."]`.
pub(crate) type Command = (String, u64, String);

/// One snapshot as stored (JSON).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    /// The aggregate's [`Aggregate::SNAPSHOT_VERSION`].
    pub version: u32,
    /// The aggregate's [`Aggregate::EVENT_VERSION`] when it was taken: a
    /// snapshot folded from another version's events is not read, since
    /// what `apply` makes of upcast events may differ. 1 when unmarked.
    #[serde(default = "first_version")]
    pub event_version: u32,
    /// The stream sequence of the last event folded into `state`.
    pub seq: u64,
    /// What [`Aggregate::snapshot`] returned.
    pub state: serde_json::Value,
    /// The idempotency record past the chunks, in stream order: every
    /// command up to `seq` that no chunk holds.
    pub commands: Vec<Command>,
    /// The full chunks before `commands`: for each, the first sequence of
    /// its last command (so a chunk from another history does not pass).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<u64>,
    /// Commands in each chunk.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chunk_size: usize,
}

fn first_version() -> u32 {
    1
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A restored snapshot: the state and the whole idempotency record.
pub(crate) struct Restored<A> {
    pub seq: u64,
    pub state: A,
    /// The chunks' commands, then the snapshot's own.
    pub commands: Vec<Command>,
    /// The chunks read, as [`StoredSnapshot::chunks`]: stored already.
    pub chunks: Vec<u64>,
    pub chunk_size: usize,
}

/// The key of chunk `n` of aggregate `id`'s record, `per_chunk` commands a
/// chunk. The size is part of the key, so processes configured with other
/// sizes never overwrite each other's chunks.
fn chunk_key(id: &str, per_chunk: usize, n: usize) -> String {
    format!("{id}.commands.{per_chunk}.{n}")
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
        // A snapshot holds the state in plain text: an aggregate with
        // personal data takes none, so forgetting leaves no copy behind.
        if config.every == 0
            || A::default().snapshot().is_none()
            || !jetsource_schemas::upcast::personal_of::<A>().is_empty()
        {
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

    /// Commands per chunk of the idempotency record (0: no chunks).
    pub(crate) fn commands_per_chunk(&self) -> usize {
        self.config.commands_per_chunk
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

    /// The snapshot a cold load of aggregate `id` starts from, given the
    /// load's first batch: read only when the history is long (its rest
    /// would come through a consumer), `None` otherwise or when there is no
    /// usable one.
    pub(crate) async fn for_load<A: Aggregate>(
        &self,
        store: &EventStore,
        id: &str,
        first: &FirstBatch<'_>,
    ) -> Option<Restored<A>> {
        if !first.is_long() {
            return None;
        }
        self.fetch::<A>(store, id).await
    }

    /// Writes aggregate `id`'s snapshot, in a task of its own, once its slot
    /// is [`SnapshotConfig::every`] events past the last one: `state` at
    /// stream sequence `seq`, with the aggregate's idempotency record
    /// `commands` (in any order).
    pub(crate) fn write_if_due<'c, A: Aggregate>(
        self: &Arc<Self>,
        store: &EventStore,
        id: &str,
        state: &A,
        seq: u64,
        progress: &mut SnapshotProgress,
        commands: impl Iterator<Item = RecordedCommand<'c>>,
    ) {
        if !progress.due(self.config.every) {
            return;
        }
        let per_chunk = self.config.commands_per_chunk;
        let Some((snapshot, new_chunks)) = progress.take(state, seq, commands, per_chunk) else {
            return;
        };
        let chunks = snapshot.chunks.clone();
        let stored = progress.stored_counter();
        if self.write(store, id, snapshot, new_chunks, stored) {
            progress.handed(chunks);
        }
    }

    /// The latest usable snapshot of aggregate `id`, checked as the module
    /// docs say; `None` for no snapshot or one that cannot be used.
    async fn fetch<A: Aggregate>(&self, store: &EventStore, id: &str) -> Option<Restored<A>> {
        let kv = self.kv(store).await?;
        let bytes = match kv.get(id).await {
            Ok(found) => found?,
            // A cache: the history is replayed instead, as without one.
            Err(e) => {
                tracing::debug!(aggregate_id = id, error = %e, "snapshot not read");
                return None;
            }
        };
        let restored = match Self::check::<A>(store, id, &bytes).await {
            Some(restored) => Self::with_chunks(kv, id, restored).await,
            None => None,
        };
        crate::metrics::global().snapshot(Some(restored.is_some()));
        restored
    }

    /// `restored` with the commands of its chunks put first, when every
    /// chunk reads and is the one the snapshot lists.
    async fn with_chunks<A>(
        kv: &kv::Store,
        id: &str,
        mut restored: Restored<A>,
    ) -> Option<Restored<A>> {
        if restored.chunks.is_empty() {
            return Some(restored);
        }
        let per_chunk = restored.chunk_size;
        // Read a few at a time and stop at the first that does not match,
        // however many a snapshot lists.
        let mut reads = futures::stream::iter(0..restored.chunks.len())
            .map(|n| kv.get(chunk_key(id, per_chunk, n)))
            .buffered(CHUNK_READS)
            .zip(futures::stream::iter(&restored.chunks))
            .enumerate();
        let mut commands = Vec::new();
        while let Some((n, (read, last))) = reads.next().await {
            let chunk: Option<Vec<Command>> = match read {
                Ok(Some(bytes)) => serde_json::from_slice(&bytes).ok(),
                Ok(None) => None,
                Err(e) => {
                    tracing::debug!(aggregate_id = id, chunk = n, error = %e, "snapshot chunk not read");
                    None
                }
            };
            match chunk {
                Some(chunk)
                    if chunk.len() == per_chunk
                        && chunk.last().map(|command| command.1) == Some(*last) =>
                {
                    commands.extend(chunk)
                }
                _ => {
                    tracing::debug!(
                        aggregate_id = id,
                        chunk = n,
                        "snapshot chunk missing or not the one listed"
                    );
                    return None;
                }
            }
        }
        drop(reads);
        commands.append(&mut restored.commands);
        restored.commands = commands;
        Some(restored)
    }

    /// The snapshot in `bytes`, when it can be used.
    async fn check<A: Aggregate>(
        store: &EventStore,
        id: &str,
        bytes: &[u8],
    ) -> Option<Restored<A>> {
        let record: StoredSnapshot = match serde_json::from_slice(bytes) {
            Ok(record) => record,
            Err(e) => {
                tracing::debug!(aggregate_id = id, error = %e, "snapshot does not read");
                return None;
            }
        };
        if record.version != A::SNAPSHOT_VERSION || record.event_version != A::EVENT_VERSION {
            tracing::debug!(
                aggregate_id = id,
                version = record.version,
                event_version = record.event_version,
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
            chunks: record.chunks,
            chunk_size: record.chunk_size,
        })
    }

    /// Writes `record` as aggregate `id`'s snapshot, after the chunks it
    /// lists that are not stored yet (`new_chunks`, the last ones), in a
    /// task of its own; `stored` goes up to the chunks stored so far. False
    /// when nothing will be written: a part that cannot be encoded or would
    /// not fit in one message (the server's `max_payload`, 1 MiB by
    /// default).
    fn write(
        self: &Arc<Self>,
        store: &EventStore,
        id: &str,
        record: StoredSnapshot,
        new_chunks: Vec<Vec<Command>>,
        stored: Arc<AtomicUsize>,
    ) -> bool {
        let max = store.client().server_info().max_payload as u64;
        let record_chunks = record.chunks.len();
        let first_new = record_chunks.saturating_sub(new_chunks.len());
        let per_chunk = record.chunk_size;
        // Each part as one message, or nothing is written.
        let encode = |key: String, bytes: serde_json::Result<Vec<u8>>| match bytes {
            Ok(bytes) if bytes.len() as u64 <= max => Some((key, Bytes::from(bytes))),
            Ok(bytes) => {
                tracing::debug!(
                    aggregate_id = id,
                    key,
                    bytes = bytes.len(),
                    "snapshot too large to store"
                );
                None
            }
            Err(_) => None,
        };
        let chunks = new_chunks
            .iter()
            .zip(first_new..)
            .map(|(chunk, n)| encode(chunk_key(id, per_chunk, n), serde_json::to_vec(chunk)));
        // The snapshot last: it must never list a chunk not yet stored.
        let snapshot = encode(id.to_string(), serde_json::to_vec(&record));
        let Some(encoded) = chunks.chain([snapshot]).collect::<Option<Vec<_>>>() else {
            return false;
        };
        let store = store.clone();
        let id = id.to_string();
        let snapshots = self.clone();
        tokio::spawn(async move {
            let Some(kv) = snapshots.kv(&store).await else {
                return;
            };
            for (n, (key, bytes)) in (first_new..).zip(encoded) {
                let put = tokio::time::timeout(Duration::from_secs(10), kv.put(&key, bytes));
                match put.await {
                    // The snapshot itself comes last and counts no chunk.
                    Ok(Ok(_)) => {
                        stored.fetch_max((n + 1).min(record_chunks), Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(aggregate_id = %id, key, error = %e, "snapshot not stored");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(aggregate_id = %id, key, "snapshot not stored in time");
                        return;
                    }
                }
            }
            crate::metrics::global().snapshot(None);
        });
        true
    }
}
