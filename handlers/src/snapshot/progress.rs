//! What an aggregate's slot keeps of its snapshots, and how a snapshot
//! takes the aggregate's idempotency record: in chunks of
//! [`super::SnapshotConfig::commands_per_chunk`] commands, in the order of
//! their first event, each written once, when it fills.

use super::{Command, StoredSnapshot};
use crate::aggregate::Aggregate;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One command of an aggregate's idempotency record, as a snapshot takes
/// it: its id, the stream sequence of its first event, its event types
/// joined by `.`.
pub(crate) type RecordedCommand<'a> = (&'a str, u64, &'a str);

/// A slot's snapshot bookkeeping: how far it is past its last snapshot,
/// and the chunks of its record that are stored.
#[derive(Debug, Default)]
pub(crate) struct SnapshotProgress {
    /// Events folded since the last snapshot was written or read (or since
    /// the load, without one).
    since: u64,
    /// The snapshot chunks of the record this slot knows of, as
    /// [`StoredSnapshot::chunks`]: read with its snapshot or handed to a
    /// write.
    chunks: Vec<u64>,
    /// How many of `chunks` are known stored (a write that failed leaves
    /// its chunks out, and the next snapshot writes them again); created at
    /// the first snapshot, so aggregates without one carry no allocation.
    stored: Option<Arc<AtomicUsize>>,
}

impl SnapshotProgress {
    /// The progress of a slot restored from a snapshot listing `chunks` of
    /// `chunk_size` commands: those chunks count as stored when they are of
    /// the `per_chunk` commands this process writes.
    pub(crate) fn restored(chunks: Vec<u64>, chunk_size: usize, per_chunk: usize) -> Self {
        if chunk_size != per_chunk {
            return SnapshotProgress::default();
        }
        SnapshotProgress {
            since: 0,
            stored: Some(Arc::new(AtomicUsize::new(chunks.len()))),
            chunks,
        }
    }

    /// Counts `events` more folded into the slot.
    pub(crate) fn folded(&mut self, events: u64) {
        self.since += events;
    }

    /// Whether the slot is `every` events past its last snapshot; if so,
    /// counting starts again.
    pub(super) fn due(&mut self, every: u64) -> bool {
        if self.since < every {
            return false;
        }
        self.since = 0;
        true
    }

    /// The snapshot of `state` at stream sequence `seq`, when the aggregate
    /// takes snapshots, and the chunks of its record not handed to a write
    /// before: the `commands` (in any order) past the last stored chunk, in
    /// stream order, `per_chunk` to a chunk while a chunk fills (0: none).
    /// Which commands share a chunk follows from the history alone, so
    /// every process writes the same chunk under the same key.
    pub(super) fn take<'c, A: Aggregate>(
        &mut self,
        state: &A,
        seq: u64,
        commands: impl Iterator<Item = RecordedCommand<'c>>,
        per_chunk: usize,
    ) -> Option<(StoredSnapshot, Vec<Vec<Command>>)> {
        let state = state.snapshot()?;
        let stored = self
            .stored
            .as_ref()
            .map_or(0, |stored| stored.load(Ordering::Relaxed));
        self.chunks.truncate(stored);
        let sealed = self.chunks.last().copied().unwrap_or(0);
        let mut open: Vec<RecordedCommand<'c>> = commands
            .filter(|(_, first_seq, _)| *first_seq > sealed)
            .collect();
        open.sort_unstable_by_key(|(_, first_seq, _)| *first_seq);
        let command = |(id, first_seq, joined): &RecordedCommand<'_>| {
            (id.to_string(), *first_seq, joined.to_string())
        };
        let mut chunks = self.chunks.clone();
        let mut new_chunks = Vec::new();
        let mut rest = open.as_slice();
        while per_chunk > 0 && rest.len() >= per_chunk {
            let (chunk, after) = rest.split_at(per_chunk);
            chunks.extend(chunk.last().map(|(_, first_seq, _)| *first_seq));
            new_chunks.push(chunk.iter().map(command).collect());
            rest = after;
        }
        let snapshot = StoredSnapshot {
            version: A::SNAPSHOT_VERSION,
            event_version: A::EVENT_VERSION,
            seq,
            state,
            commands: rest.iter().map(command).collect(),
            chunks,
            chunk_size: per_chunk,
        };
        Some((snapshot, new_chunks))
    }

    /// The counter a write of `snapshot` raises as its chunks are stored.
    pub(super) fn stored_counter(&mut self) -> Arc<AtomicUsize> {
        self.stored
            .get_or_insert_with(|| Arc::new(AtomicUsize::new(0)))
            .clone()
    }

    /// A write of a snapshot listing `chunks` is under way: they are this
    /// slot's now (counted stored as the write stores them).
    pub(super) fn handed(&mut self, chunks: Vec<u64>) {
        self.chunks = chunks;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Clone)]
    struct Tally(u64);

    #[derive(serde::Deserialize)]
    enum TallyCommand {}

    #[derive(serde::Serialize, serde::Deserialize)]
    enum TallyEvent {
        Added {},
    }

    impl Aggregate for Tally {
        const TYPE: &'static str = "tally";
        type Command = TallyCommand;
        type Event = TallyEvent;

        fn handle(&self, command: TallyCommand) -> Result<Vec<TallyEvent>, crate::Rejection> {
            match command {}
        }

        fn apply(&mut self, _: TallyEvent) {
            self.0 += 1;
        }

        fn snapshot(&self) -> Option<serde_json::Value> {
            Some(self.0.into())
        }
    }

    /// One-event commands `c<seq>` at sequences `seqs`, in no order.
    fn accepted(seqs: std::ops::RangeInclusive<u64>) -> Vec<(String, u64, String)> {
        let mut commands: Vec<_> = seqs
            .map(|seq| (format!("c{seq}"), seq, "Added".to_string()))
            .collect();
        commands.reverse();
        commands
    }

    fn take(
        progress: &mut SnapshotProgress,
        commands: &[(String, u64, String)],
        per_chunk: usize,
    ) -> (StoredSnapshot, Vec<Vec<Command>>) {
        let seq = commands.iter().map(|c| c.1).max().unwrap_or(0);
        progress
            .take(
                &Tally(seq),
                seq,
                commands
                    .iter()
                    .map(|(id, s, t)| (id.as_str(), *s, t.as_str())),
                per_chunk,
            )
            .expect("a snapshot")
    }

    /// The command ids in each chunk and in the snapshot's own list.
    fn layout(
        snapshot: &StoredSnapshot,
        chunks: &[Vec<Command>],
    ) -> (Vec<Vec<String>>, Vec<String>) {
        let ids = |commands: &[Command]| commands.iter().map(|c| c.0.clone()).collect();
        (
            chunks.iter().map(|c| ids(c)).collect(),
            ids(&snapshot.commands),
        )
    }

    #[test]
    fn a_snapshot_writes_each_chunk_once_in_stream_order_and_again_after_a_failure() {
        let mut progress = SnapshotProgress::default();
        let (snapshot, chunks) = take(&mut progress, &accepted(1..=7), 3);
        assert_eq!(
            layout(&snapshot, &chunks),
            (
                vec![
                    vec!["c1".into(), "c2".into(), "c3".into()],
                    vec!["c4".into(), "c5".into(), "c6".into()]
                ],
                vec!["c7".to_string()]
            )
        );
        assert_eq!(
            (snapshot.chunks.clone(), snapshot.chunk_size),
            (vec![3, 6], 3)
        );
        // Handed to a write that stored the first chunk only.
        let stored = progress.stored_counter();
        progress.handed(snapshot.chunks);
        stored.store(1, Ordering::Relaxed);
        let (snapshot, chunks) = take(&mut progress, &accepted(1..=9), 3);
        assert_eq!(
            layout(&snapshot, &chunks),
            (
                vec![
                    vec!["c4".into(), "c5".into(), "c6".into()],
                    vec!["c7".into(), "c8".into(), "c9".into()]
                ],
                vec![]
            )
        );
        assert_eq!(snapshot.chunks, [3, 6, 9]);
        // Once all are stored, the next snapshot writes none again.
        progress.handed(snapshot.chunks);
        stored.store(3, Ordering::Relaxed);
        let (snapshot, chunks) = take(&mut progress, &accepted(1..=9), 3);
        assert!(chunks.is_empty());
        assert_eq!(
            (snapshot.chunks.as_slice(), snapshot.commands.len()),
            (&[3, 6, 9][..], 0)
        );
        // Without chunks the record is whole.
        let (snapshot, chunks) = take(&mut SnapshotProgress::default(), &accepted(1..=7), 0);
        assert!(chunks.is_empty() && snapshot.chunks.is_empty());
        assert_eq!(snapshot.commands.len(), 7);
    }

    #[test]
    fn a_snapshot_is_due_every_so_many_events() {
        let mut progress = SnapshotProgress::default();
        progress.folded(999);
        assert!(!progress.due(1_000));
        progress.folded(1);
        assert!(progress.due(1_000));
        assert!(!progress.due(1_000), "counting starts again");
    }

    #[test]
    fn restored_chunks_count_as_stored_only_at_this_chunk_size() {
        let mut same = SnapshotProgress::restored(vec![3, 6], 3, 3);
        let (snapshot, chunks) = take(&mut same, &accepted(1..=7), 3);
        assert_eq!((snapshot.chunks, chunks.len()), (vec![3, 6], 0));
        let mut other = SnapshotProgress::restored(vec![3, 6], 3, 4);
        let (snapshot, chunks) = take(&mut other, &accepted(1..=9), 4);
        assert_eq!((snapshot.chunks, chunks.len()), (vec![4, 8], 2));
    }
}
