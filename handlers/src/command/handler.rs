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
use super::idempotency::Recorded;
use super::request::CommandRequest;
use super::slot::Slot;
use crate::aggregate::Aggregate;
use crate::codec::{self, EncodedEvent};
use crate::error::Error;
use crate::snapshot::{SnapshotConfig, Snapshots};
use crate::store::{AppendErrorKind, AppendMeta, EventStore, NewEvent};
use jetsource_schemas::{Accepted, CommandReply, EventRef, RejectionCode};
use std::sync::atomic::AtomicUsize;
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

/// Handles the commands of aggregate type `A`.
pub struct AggregateHandler<A: Aggregate> {
    pub(super) store: EventStore,
    config: HandlerConfig,
    pub(super) stream: String,
    /// The event types `A::Event` can decode, so a cold load reads their
    /// literal subjects (cheap for the server) rather than the wildcard.
    event_types: Option<&'static [&'static str]>,
    cache: SlotCache<Mutex<Slot<A>>>,
    /// `None` when `A` takes no snapshots or they are off.
    pub(super) snapshots: Option<Arc<Snapshots>>,
}

impl<A: Aggregate> AggregateHandler<A> {
    /// The event types `A::Event` declares, when known.
    pub(super) fn names(&self) -> &'static [&'static str] {
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
