//! One aggregate type's command handling.
//!
//! Handler state follows "case 2b": the state used to validate a command is
//! built only from events the store has confirmed, and a decision's events
//! are applied to it only after JetStream acknowledged the append. Each
//! aggregate instance has a slot in a bounded cache (`cache.rs`) holding its state,
//! its last stream sequence and the command ids it has accepted; a per-slot
//! lock lets one command at a time decide on an aggregate inside this
//! process, while commands on different aggregates run in parallel. Across
//! processes the expected-sequence check decides: a conflict reloads the
//! tail, decides again and retries, a bounded number of times.

use super::cache::SlotCache;
use super::request::CommandRequest;
use crate::aggregate::Aggregate;
use crate::codec::{self, EncodedEvent};
use crate::error::Error;
use crate::snapshot::{Command, Restored, SnapshotConfig, Snapshots, StoredSnapshot};
use crate::store::{AppendErrorKind, AppendMeta, EventStore, NewEvent, StoredEvent};
use jetsource_schemas::{Accepted, CommandReply, EventRef, RejectionCode};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Settings of command handling.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// Aggregates whose state is kept in memory (default 100,000).
    pub cache_capacity: u64,
    /// An aggregate unused this long leaves the cache (default 10 minutes).
    pub cache_idle: Duration,
    /// Decide-append attempts after concurrency conflicts (default 16).
    pub conflict_retries: u32,
    /// Append attempts after store trouble (default 5).
    pub unavailable_retries: u32,
    /// The first back-off after store trouble; it grows linearly (default 50 ms).
    pub retry_backoff: Duration,
    /// Snapshots of long-lived aggregates (see [`crate::snapshot`]).
    pub snapshots: SnapshotConfig,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        HandlerConfig {
            cache_capacity: 100_000,
            cache_idle: Duration::from_secs(600),
            conflict_retries: 16,
            unavailable_retries: 5,
            retry_backoff: Duration::from_millis(50),
            snapshots: SnapshotConfig::default(),
        }
    }
}

/// Why [`AggregateHandler::warm`] could not load an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarmErrorKind {
    /// The id makes no subject (a `.`, `*`, `>`, whitespace, or empty).
    BadId,
    /// The store did not answer in time.
    Unavailable,
    /// A stored event does not decode into the aggregate's events.
    Undecodable,
}

impl std::fmt::Display for WarmErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WarmErrorKind::BadId => "bad aggregate id",
            WarmErrorKind::Unavailable => "unavailable",
            WarmErrorKind::Undecodable => "undecodable history",
        })
    }
}

/// A failure to warm an aggregate.
pub type WarmError = Error<WarmErrorKind>;

/// The in-memory state of one aggregate instance.
struct Slot<A> {
    loaded: bool,
    state: A,
    last_seq: u64,
    /// Accepted command ids and where their events went: the idempotency
    /// record, rebuilt from the events' `Command-Id` headers on every load.
    /// It holds every command of the aggregate's history, so it is kept
    /// compact: two small allocations per command.
    commands: HashMap<Box<str>, Recorded>,
    /// Events folded since the last snapshot was written or read (or since
    /// the load, without one).
    since_snapshot: u64,
    /// The snapshot chunks of the record this slot knows of, as
    /// [`StoredSnapshot::chunks`]: read with its snapshot or handed to a write.
    chunks: Vec<u64>,
    /// How many of `chunks` are known stored (a write that failed leaves
    /// its chunks out, and the next snapshot writes them again); created at
    /// the first snapshot, so aggregates without one carry no allocation.
    stored_chunks: Option<Arc<AtomicUsize>>,
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
    fn fold(
        &mut self,
        stream: &str,
        names: &[&'static str],
        stored: StoredEvent,
    ) -> Result<(), String> {
        if stored.seq <= self.last_seq {
            return Ok(());
        }
        let event_type = stored.event_type();
        let event: A::Event = codec::decode_event(event_type, &stored.payload).map_err(|e| {
            format!(
                "stored event {} at {stream}:{} does not decode: {e}",
                stored.subject, stored.seq
            )
        })?;
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
    fn restore(&mut self, restored: Restored<A>, names: &[&'static str], per_chunk: usize) {
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
    fn record(
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

/// Where one accepted command's events went: a run of consecutive stream
/// sequences (one command's events are one atomic batch) and their types.
///
/// The record holds every command of an aggregate's history while the
/// aggregate is cached, so it is kept small. Nearly every command appends
/// one event of a type the aggregate declares (`names`, the event enum's
/// variants): that is stored as an index, with no allocation.
#[derive(Debug)]
struct Recorded {
    first_seq: u64,
    types: Types,
}

#[derive(Debug)]
enum Types {
    /// One event, of type `names[i]`.
    One(u16),
    /// The event types joined by `.`, which no token contains.
    Joined(Box<str>),
}

impl Recorded {
    fn new(seq: u64, event_type: &str, names: &[&'static str]) -> Self {
        let index = names
            .iter()
            .position(|name| *name == event_type)
            .and_then(|i| u16::try_from(i).ok());
        Recorded {
            first_seq: seq,
            types: match index {
                Some(i) => Types::One(i),
                None => Types::Joined(event_type.into()),
            },
        }
    }

    /// A record read back from a snapshot: `joined` is
    /// [`Recorded::joined`]'s form.
    fn restore(first_seq: u64, joined: &str, names: &[&'static str]) -> Self {
        if joined.contains('.') {
            Recorded {
                first_seq,
                types: Types::Joined(joined.into()),
            }
        } else {
            Recorded::new(first_seq, joined, names)
        }
    }

    /// The event types joined by `.`.
    fn joined<'a>(&'a self, names: &[&'static str]) -> &'a str {
        match &self.types {
            // The index came from the same names.
            Types::One(i) => names.get(usize::from(*i)).copied().unwrap_or_default(),
            Types::Joined(joined) => joined,
        }
    }

    fn len(&self) -> u64 {
        match &self.types {
            Types::One(_) => 1,
            Types::Joined(joined) => joined.split('.').count() as u64,
        }
    }

    /// Adds the command's next event. An event of the same command id
    /// that does not follow the run (written by another writer) is left
    /// out: the record says where the command's events first went.
    fn extend(&mut self, seq: u64, event_type: &str, names: &[&'static str]) {
        if seq == self.first_seq + self.len() {
            let joined = format!("{}.{event_type}", self.joined(names));
            self.types = Types::Joined(joined.into_boxed_str());
        }
    }

    /// The events as a reply lists them.
    fn events(&self, stream: &str, names: &[&'static str]) -> Vec<EventRef> {
        self.joined(names)
            .split('.')
            .zip(self.first_seq..)
            .map(|(event_type, seq)| EventRef {
                event_type: event_type.to_string(),
                stream: stream.to_string(),
                seq,
            })
            .collect()
    }
}

/// Handles the commands of aggregate type `A`.
pub struct AggregateHandler<A: Aggregate> {
    store: EventStore,
    config: HandlerConfig,
    stream: String,
    /// The event types `A::Event` can decode, so a cold load reads their
    /// literal subjects (cheap for the server) rather than the wildcard.
    event_types: Option<&'static [&'static str]>,
    cache: SlotCache<Mutex<Slot<A>>>,
    /// `None` when `A` takes no snapshots or they are off.
    snapshots: Option<Arc<Snapshots>>,
}

impl<A: Aggregate> AggregateHandler<A> {
    /// The event types `A::Event` declares, when known.
    fn names(&self) -> &'static [&'static str] {
        self.event_types.unwrap_or(&[])
    }

    /// A handler appending to `store` (in the store's namespace).
    pub fn new(store: EventStore, config: HandlerConfig) -> Self {
        let cache = SlotCache::new(config.cache_capacity, config.cache_idle);
        let snapshots = Snapshots::for_aggregate::<A>(&store, &config.snapshots).map(Arc::new);
        AggregateHandler {
            snapshots,
            stream: store.namespace().stream_name(A::TYPE),
            store,
            config,
            event_types: codec::variant_names::<A::Event>(),
            cache,
        }
    }

    /// Reads aggregate `aggregate_id` into its slot, if it is not in memory
    /// yet, as a command on it would; returns its last stream sequence.
    /// Loading a hot aggregate ahead of its commands spares the first of
    /// them the wait.
    pub async fn warm(&self, aggregate_id: &str) -> Result<u64, WarmError> {
        // An id that makes no subject never gets a slot.
        self.store
            .namespace()
            .aggregate_filter(A::TYPE, aggregate_id)
            .map_err(|e| Error::with_source(WarmErrorKind::BadId, e))?;
        let slot = self
            .cache
            .get_or_insert_with(aggregate_id, || Mutex::new(Slot::default()));
        let mut slot = slot.lock().await;
        if !slot.loaded {
            self.load(&mut slot, aggregate_id)
                .await
                .map_err(|(code, reason)| {
                    let kind = match code {
                        RejectionCode::Unavailable => WarmErrorKind::Unavailable,
                        _ => WarmErrorKind::Undecodable,
                    };
                    Error::new(kind, reason)
                })?;
        }
        Ok(slot.last_seq)
    }

    /// Rebuilds a slot from the store: from a snapshot and the events after
    /// it when the history is long and one can be used, else from all of it.
    /// Each event is folded as it arrives (see [`EventStore::load_each`]).
    async fn load(
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

    /// Writes the aggregate's snapshot once it is enough events past the
    /// last one (in a task of its own).
    fn snapshot_if_due(&self, slot: &mut Slot<A>, aggregate_id: &str) {
        let Some(snapshots) = &self.snapshots else {
            return;
        };
        if slot.since_snapshot < snapshots.every() {
            return;
        }
        slot.since_snapshot = 0;
        let Some((record, new_chunks)) = slot.record(self.names(), snapshots.commands_per_chunk())
        else {
            return;
        };
        let chunks = record.chunks.clone();
        let stored = slot
            .stored_chunks
            .get_or_insert_with(|| Arc::new(AtomicUsize::new(0)))
            .clone();
        if snapshots.write(&self.store, aggregate_id, record, new_chunks, stored) {
            slot.chunks = chunks;
        }
    }

    /// Handles one command and returns the reply.
    pub async fn process(&self, request: &CommandRequest<'_>) -> CommandReply {
        let command_id: &str = &request.command_id;
        let reject =
            |code: RejectionCode, reason: String| CommandReply::rejected(command_id, code, reason);
        let accept = |events: Vec<EventRef>, duplicate: bool| {
            CommandReply::Accepted(Accepted {
                command_id: command_id.to_string(),
                aggregate_type: A::TYPE.to_string(),
                aggregate_id: request.aggregate_id.to_string(),
                events,
                duplicate,
            })
        };
        // Decode before taking the lock: malformed input never waits.
        let mut command = match codec::decode_command::<A::Command>(request.command, request.body) {
            Ok(command) => Some(command),
            Err(e) => return reject(RejectionCode::BadRequest, e.to_string()),
        };
        let slot = self
            .cache
            .get_or_insert_with(request.aggregate_id, || Mutex::new(Slot::default()));
        let mut slot = slot.lock().await;
        crate::metrics::global().state_cache(slot.loaded);
        // A slot not yet loaded holds the empty state. A command whose
        // decision on the empty state yields events (a `create` on a new id)
        // is appended with expected sequence 0 without loading first: the
        // store refuses it if the aggregate has any event, and the conflict
        // path below then loads the history and decides again, where a
        // resent command is recognised by its Command-Id. Any other outcome
        // on the empty state proves nothing, so it loads and decides again.
        let mut optimistic = request.expected_seq.unwrap_or(0) == 0;
        let mut conflicts = 0;
        let mut outages = 0;
        // Whether the last reload after a conflict found newer events.
        let mut moved = true;
        loop {
            if !slot.loaded && !optimistic {
                if let Err((code, reason)) = self.load(&mut slot, request.aggregate_id).await {
                    if code == RejectionCode::Internal {
                        tracing::error!(
                            %reason,
                            aggregate_type = A::TYPE,
                            aggregate_id = request.aggregate_id,
                            command_id,
                            "cannot rebuild aggregate"
                        );
                    }
                    return reject(code, reason);
                }
            }
            if let Some(recorded) = slot.commands.get(command_id) {
                return accept(recorded.events(&self.stream, self.names()), true);
            }
            if let Some(expected) = request.expected_seq {
                if expected != slot.last_seq {
                    return reject(
                        RejectionCode::Conflict,
                        format!(
                            "Expected-Seq is {expected} but the aggregate is at {}",
                            slot.last_seq
                        ),
                    );
                }
            }
            let command = match command.take() {
                Some(command) => command,
                None => match codec::decode_command::<A::Command>(request.command, request.body) {
                    Ok(command) => command,
                    Err(e) => return reject(RejectionCode::BadRequest, e.to_string()),
                },
            };
            let decided = match slot.state.handle(command) {
                Ok(events) if events.is_empty() && !slot.loaded => {
                    optimistic = false;
                    continue;
                }
                Ok(events) => events,
                Err(_) if !slot.loaded => {
                    optimistic = false;
                    continue;
                }
                Err(rejection) => return reject(rejection.code(), rejection.reason().to_string()),
            };
            if decided.is_empty() {
                return accept(Vec::new(), false);
            }
            let mut new_events = Vec::with_capacity(decided.len());
            for event in &decided {
                match codec::encode_event(event) {
                    Ok(EncodedEvent { event_type, body }) => {
                        new_events.push(NewEvent { event_type, body })
                    }
                    Err(e) => {
                        return reject(RejectionCode::Internal, format!("encoding an event: {e}"))
                    }
                }
            }
            let meta = AppendMeta {
                command_id,
                correlation_id: request.correlation_id,
                causation_id: request.causation_id,
                event_version: A::EVENT_VERSION,
            };
            let metrics = crate::metrics::global();
            let started = metrics.recording().then(std::time::Instant::now);
            let appended = self
                .store
                .append(
                    A::TYPE,
                    request.aggregate_id,
                    slot.last_seq,
                    &new_events,
                    &meta,
                )
                .await;
            if let Some(started) = started {
                metrics.append(
                    started.elapsed(),
                    new_events.len(),
                    appended.as_ref().err().map(|e| e.kind()),
                );
            }
            let error = match appended {
                Ok(seqs) => {
                    let refs: Vec<EventRef> = new_events
                        .into_iter()
                        .zip(&seqs)
                        .map(|(event, seq)| EventRef {
                            event_type: event.event_type,
                            stream: self.stream.clone(),
                            seq: *seq,
                        })
                        .collect();
                    // Case 2b: the store confirmed, now the state may move.
                    for event in decided {
                        slot.state.apply(event);
                    }
                    slot.last_seq = seqs.last().copied().unwrap_or(slot.last_seq);
                    // Unloaded, the append's expected sequence 0 proved
                    // these are the aggregate's first events.
                    slot.loaded = true;
                    if let Some((first, rest)) = refs.split_first() {
                        let names = self.names();
                        let mut recorded = Recorded::new(first.seq, &first.event_type, names);
                        for event in rest {
                            recorded.extend(event.seq, &event.event_type, names);
                        }
                        slot.commands.insert(command_id.into(), recorded);
                    }
                    slot.since_snapshot += refs.len() as u64;
                    self.snapshot_if_due(&mut slot, request.aggregate_id);
                    return accept(refs, false);
                }
                Err(error) => error,
            };
            match error.kind() {
                AppendErrorKind::Conflict | AppendErrorKind::Duplicate => {
                    conflicts += 1;
                    if conflicts > self.config.conflict_retries {
                        // Refused, yet the store shows nothing newer: no
                        // other writer is ahead, the store is not settling
                        // (a clustered stream without quorum keeps answering
                        // 10164 for the proposals it cannot commit). The
                        // outcome is unknown, which is `unavailable`.
                        if !moved {
                            return reject(
                                RejectionCode::Unavailable,
                                format!("the event store kept refusing the expected sequence without showing newer events: gave up after {conflicts} attempts ({error})"),
                            );
                        }
                        return reject(
                            RejectionCode::Conflict,
                            format!("the aggregate kept moving: gave up after {conflicts} attempts ({error})"),
                        );
                    }
                    tracing::debug!(%error, attempt = conflicts, "append conflict, reloading");
                    if conflicts > 1 {
                        // Writers that keep colliding (other processes, or a
                        // clustered proposal still in flight: 10164) need
                        // time apart; a jittered, growing pause gives it.
                        tokio::time::sleep(conflict_pause(conflicts)).await;
                    }
                }
                AppendErrorKind::Unavailable => {
                    outages += 1;
                    if outages > self.config.unavailable_retries {
                        return reject(
                            RejectionCode::Unavailable,
                            format!("the event store is unavailable: {error}"),
                        );
                    }
                    tracing::warn!(
                        %error,
                        attempt = outages,
                        aggregate_type = A::TYPE,
                        aggregate_id = request.aggregate_id,
                        command_id,
                        "event store unavailable, retrying"
                    );
                    tokio::time::sleep(self.config.retry_backoff * outages).await;
                }
                AppendErrorKind::Full => {
                    return reject(
                        RejectionCode::Unavailable,
                        format!("the event store refused the write: {error}"),
                    )
                }
                AppendErrorKind::Refused => {
                    return reject(
                        RejectionCode::Internal,
                        format!("the event store refused the write: {error}"),
                    )
                }
            }
            // The aggregate moved on, or our own earlier attempt may have
            // landed: read the tail before deciding again, or the whole
            // aggregate, as a cold load does (from a snapshot when its
            // history is long), when the slot was never loaded.
            if !slot.loaded {
                match self.load(&mut slot, request.aggregate_id).await {
                    Ok(()) => moved = slot.last_seq > 0,
                    Err((RejectionCode::Unavailable, reason)) => {
                        outages += 1;
                        if outages > self.config.unavailable_retries {
                            return reject(RejectionCode::Unavailable, reason);
                        }
                        tokio::time::sleep(self.config.retry_backoff * outages).await;
                    }
                    Err((code, reason)) => return reject(code, reason),
                }
                continue;
            }
            match self
                .store
                .load(A::TYPE, request.aggregate_id, slot.last_seq)
                .await
            {
                Ok(events) => {
                    moved = events.iter().any(|e| e.seq > slot.last_seq);
                    let folded = events
                        .into_iter()
                        .try_for_each(|event| slot.fold(&self.stream, self.names(), event));
                    if let Err(reason) = folded {
                        *slot = Slot::default();
                        return reject(RejectionCode::Internal, reason);
                    }
                }
                Err(e) => {
                    outages += 1;
                    if outages > self.config.unavailable_retries {
                        return reject(
                            RejectionCode::Unavailable,
                            format!("reloading the aggregate: {e}"),
                        );
                    }
                    tokio::time::sleep(self.config.retry_backoff * outages).await;
                }
            }
        }
    }
}

/// A random pause of up to 2^attempt ms, capped at 100 ms.
fn conflict_pause(attempt: u32) -> Duration {
    let ceiling = 1u64 << attempt.min(7);
    let jitter = (uuid::Uuid::new_v4().as_u128() as u64) % ceiling.min(100);
    Duration::from_millis(jitter + 1)
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

    #[test]
    fn a_record_lists_a_commands_events_in_order() {
        let names = ["BlogPostCreated", "BlogPostPublished"];
        let mut recorded = Recorded::new(7, "BlogPostCreated", &names);
        assert!(
            matches!(recorded.types, Types::One(0)),
            "a known type is an index"
        );
        recorded.extend(8, "BlogPostPublished", &names);
        let events = recorded.events("EVT_BLOGPOST", &names);
        let listed: Vec<_> = events
            .iter()
            .map(|e| (e.event_type.as_str(), e.stream.as_str(), e.seq))
            .collect();
        assert_eq!(
            listed,
            [
                ("BlogPostCreated", "EVT_BLOGPOST", 7),
                ("BlogPostPublished", "EVT_BLOGPOST", 8)
            ]
        );
    }

    #[test]
    fn a_one_event_record_lists_its_type_by_index_or_by_name() {
        let names = ["BlogPostCreated", "BlogPostPublished"];
        let listed = |recorded: &Recorded| {
            recorded
                .events("S", &names)
                .into_iter()
                .map(|e| (e.event_type, e.seq))
                .collect::<Vec<_>>()
        };
        let known = Recorded::new(4, "BlogPostPublished", &names);
        assert!(matches!(known.types, Types::One(1)));
        assert_eq!(listed(&known), [("BlogPostPublished".to_string(), 4)]);
        let unknown = Recorded::new(5, "SomethingElse", &names);
        assert!(matches!(unknown.types, Types::Joined(_)));
        assert_eq!(listed(&unknown), [("SomethingElse".to_string(), 5)]);
    }

    #[test]
    fn an_event_off_the_run_is_left_out() {
        let mut recorded = Recorded::new(7, "A", &[]);
        recorded.extend(9, "B", &[]);
        recorded.extend(8, "C", &[]);
        let seqs: Vec<_> = recorded
            .events("S", &[])
            .into_iter()
            .map(|e| (e.event_type, e.seq))
            .collect();
        assert_eq!(seqs, [("A".to_string(), 7), ("C".to_string(), 8)]);
    }
}
