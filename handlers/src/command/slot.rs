//! An aggregate's entry in the state cache: its state, its last stream
//! sequence and its idempotency record, rebuilt from confirmed events only.

use super::failure::CorruptHistory;
use super::idempotency::Recorded;
use crate::aggregate::Aggregate;
use crate::codec;
use crate::snapshot::{Command, Restored, StoredSnapshot};
use crate::store::StoredEvent;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
    /// Events folded since the last snapshot was written or read (or since
    /// the load, without one).
    pub(super) since_snapshot: u64,
    /// The snapshot chunks of the record this slot knows of, as
    /// [`StoredSnapshot::chunks`]: read with its snapshot or handed to a write.
    pub(super) chunks: Vec<u64>,
    /// How many of `chunks` are known stored (a write that failed leaves
    /// its chunks out, and the next snapshot writes them again); created at
    /// the first snapshot, so aggregates without one carry no allocation.
    pub(super) stored_chunks: Option<Arc<AtomicUsize>>,
}

impl<A: Aggregate> Default for Slot<A> {
    fn default() -> Self {
        Slot {
            loaded: false,
            state: A::default(),
            last_seq: 0,
            commands: HashMap::new(),
            since_snapshot: 0,
            chunks: Vec::new(),
            stored_chunks: None,
        }
    }
}

impl<A: Aggregate> Slot<A> {
    /// Folds one confirmed event into the slot (none at or below the
    /// slot's sequence); `names` are the aggregate's event types, when
    /// known (see [`Recorded`]).
    pub(super) fn fold(
        &mut self,
        stream: &str,
        names: &[&'static str],
        stored: StoredEvent,
    ) -> Result<(), CorruptHistory> {
        if stored.seq <= self.last_seq {
            return Ok(());
        }
        let event_type = stored.event_type();
        let event: A::Event = match codec::decode_event(event_type, &stored.payload) {
            Ok(event) => event,
            Err(source) => {
                return Err(CorruptHistory {
                    stream: stream.to_string(),
                    subject: stored.subject.clone(),
                    seq: stored.seq,
                    source,
                })
            }
        };
        self.state.apply(event);
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
        self.since_snapshot += 1;
        Ok(())
    }

    /// Starts from a snapshot: its state, sequence and idempotency record.
    /// Its chunks count as stored when they are of `per_chunk` commands.
    pub(super) fn restore(
        &mut self,
        restored: Restored<A>,
        names: &[&'static str],
        per_chunk: usize,
    ) {
        self.state = restored.state;
        self.last_seq = restored.seq;
        self.since_snapshot = 0;
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
        if restored.chunk_size == per_chunk {
            self.stored_chunks = Some(Arc::new(AtomicUsize::new(restored.chunks.len())));
            self.chunks = restored.chunks;
        }
    }

    /// The snapshot of this slot, when the aggregate takes snapshots, and
    /// the chunks of its record not handed to a write before: the commands
    /// past the last stored chunk, in stream order, `per_chunk` to a chunk
    /// while a chunk fills (0: none). The caller hands both to
    /// [`Snapshots::write`], then takes the record's chunks as its own.
    pub(super) fn record(
        &mut self,
        names: &[&'static str],
        per_chunk: usize,
    ) -> Option<(StoredSnapshot, Vec<Vec<Command>>)> {
        let state = self.state.snapshot()?;
        let stored = self
            .stored_chunks
            .as_ref()
            .map_or(0, |stored| stored.load(Ordering::Relaxed));
        self.chunks.truncate(stored);
        let sealed = self.chunks.last().copied().unwrap_or(0);
        let mut open: Vec<(&str, &Recorded)> = self
            .commands
            .iter()
            .filter(|(_, recorded)| recorded.first_seq > sealed)
            .map(|(id, recorded)| (&**id, recorded))
            .collect();
        open.sort_unstable_by_key(|(_, recorded)| recorded.first_seq);
        let command = |(id, recorded): &(&str, &Recorded)| {
            (
                id.to_string(),
                recorded.first_seq,
                recorded.joined(names).to_string(),
            )
        };
        let mut chunks = self.chunks.clone();
        let mut new_chunks = Vec::new();
        let mut rest = open.as_slice();
        while per_chunk > 0 && rest.len() >= per_chunk {
            let (chunk, after) = rest.split_at(per_chunk);
            chunks.extend(chunk.last().map(|(_, recorded)| recorded.first_seq));
            new_chunks.push(chunk.iter().map(command).collect());
            rest = after;
        }
        let record = StoredSnapshot {
            version: A::SNAPSHOT_VERSION,
            seq: self.last_seq,
            state,
            commands: rest.iter().map(command).collect(),
            chunks,
            chunk_size: per_chunk,
        };
        Some((record, new_chunks))
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

    /// A slot that has seen `commands` one-event commands, at sequences
    /// 1, 2, …
    fn tally(commands: u64) -> Slot<Tally> {
        let mut slot = Slot::<Tally>::default();
        accept(&mut slot, 1..=commands);
        slot
    }

    /// Records one-event commands `c<seq>` at sequences `seqs`.
    fn accept(slot: &mut Slot<Tally>, seqs: std::ops::RangeInclusive<u64>) {
        for seq in seqs {
            slot.commands.insert(
                format!("c{seq}").into(),
                Recorded::new(seq, "Added", &["Added"]),
            );
            slot.last_seq = seq;
        }
    }

    /// The command ids in each chunk and in the record's own list.
    fn layout(record: &StoredSnapshot, chunks: &[Vec<Command>]) -> (Vec<Vec<String>>, Vec<String>) {
        let ids = |commands: &[Command]| commands.iter().map(|c| c.0.clone()).collect();
        (
            chunks.iter().map(|c| ids(c)).collect(),
            ids(&record.commands),
        )
    }

    #[test]
    fn a_snapshot_writes_each_chunk_once_in_stream_order_and_again_after_a_failure() {
        let names = ["Added"];
        let mut slot = tally(7);
        let (record, chunks) = slot.record(&names, 3).expect("a snapshot");
        assert_eq!(
            layout(&record, &chunks),
            (
                vec![
                    vec!["c1".into(), "c2".into(), "c3".into()],
                    vec!["c4".into(), "c5".into(), "c6".into()]
                ],
                vec!["c7".to_string()]
            )
        );
        assert_eq!((record.chunks.clone(), record.chunk_size), (vec![3, 6], 3));
        // Handed to a write that stored the first chunk only.
        slot.chunks = record.chunks;
        slot.stored_chunks = Some(Arc::new(AtomicUsize::new(1)));
        accept(&mut slot, 8..=9);
        let (record, chunks) = slot.record(&names, 3).expect("a snapshot");
        assert_eq!(
            layout(&record, &chunks),
            (
                vec![
                    vec!["c4".into(), "c5".into(), "c6".into()],
                    vec!["c7".into(), "c8".into(), "c9".into()]
                ],
                vec![]
            )
        );
        assert_eq!(record.chunks, [3, 6, 9]);
        // Once all are stored, the next snapshot writes none again.
        slot.chunks = record.chunks;
        slot.stored_chunks = Some(Arc::new(AtomicUsize::new(3)));
        let (record, chunks) = slot.record(&names, 3).expect("a snapshot");
        assert!(chunks.is_empty());
        assert_eq!(
            (record.chunks.as_slice(), record.commands.len()),
            (&[3, 6, 9][..], 0)
        );
        // Without chunks the record is whole.
        let (record, chunks) = tally(7).record(&names, 0).expect("a snapshot");
        assert!(chunks.is_empty() && record.chunks.is_empty());
        assert_eq!(record.commands.len(), 7);
    }
}
