//! One aggregate type's command handling.
//!
//! Handler state follows "case 2b": the state used to validate a command is
//! built only from events the store has confirmed, and a decision's events
//! are applied to it only after JetStream acknowledged the append. Each
//! aggregate instance has a slot in a bounded cache (`cache.rs`) holding
//! its state, its last stream sequence and the command ids it has accepted;
//! a per-slot lock lets one command at a time decide on an aggregate inside
//! this process, while commands on different aggregates run in parallel.
//! Across processes the expected-sequence check decides: a conflict reloads
//! the tail, decides again and retries, as the retry policy (`retry.rs`)
//! allows.

use super::cache::SlotCache;
use super::decide::{self, Decision};
use super::failure::CommandFailure;
use super::reply::{self, AcceptedEvents};
use super::request::CommandRequest;
use super::retry::{Attempts, Next, RetryPolicy};
use super::slot::Slot;
use crate::aggregate::Aggregate;
use crate::codec;
use crate::error::Error;
use crate::snapshot::{SnapshotConfig, Snapshots};
use crate::store::EventStore;
use jetsource_schemas::settings;
use jetsource_schemas::CommandReply;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Settings of command handling.
///
/// Deserializes from its own keys (`cache_capacity`, `cache_idle`,
/// `conflict_retries`, `unavailable_retries`, `retry_backoff`); `snapshots`
/// reads its own. Every value is valid.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandlerConfig {
    /// Aggregates whose state is kept in memory (default 100,000).
    pub cache_capacity: u64,
    /// An aggregate unused this long leaves the cache (default 10 minutes).
    #[serde(with = "settings::duration")]
    pub cache_idle: Duration,
    /// Decide-append attempts after concurrency conflicts (default 16).
    pub conflict_retries: u32,
    /// Append attempts after store trouble (default 5).
    pub unavailable_retries: u32,
    /// The first back-off after store trouble; it grows linearly (default 50 ms).
    #[serde(with = "settings::duration")]
    pub retry_backoff: Duration,
    /// Snapshots of long-lived aggregates (see [`crate::snapshot`]).
    #[serde(skip)]
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
///
/// The runtime makes one per registered type and hands it every command of
/// that type. Made by hand, it serves an application that takes commands
/// some other way ([`AggregateHandler::process`]), or loads aggregates
/// ahead of their commands ([`AggregateHandler::warm`]).
pub struct AggregateHandler<A: Aggregate> {
    pub(super) store: EventStore,
    pub(super) stream: String,
    /// The event types `A::Event` can decode, so a cold load reads their
    /// literal subjects (cheap for the server) rather than the wildcard.
    event_types: Option<&'static [&'static str]>,
    pub(super) cache: SlotCache<Mutex<Slot<A>>>,
    pub(super) retry: RetryPolicy,
    /// `None` when `A` takes no snapshots or they are off.
    pub(super) snapshots: Option<Arc<Snapshots>>,
}

impl<A: Aggregate> AggregateHandler<A> {
    /// Drops what this process holds of aggregate `id` (after its data
    /// key was forgotten): its next command loads it again, and reads its
    /// personal fields as their redaction value.
    pub async fn forget_cached(&self, id: &str) {
        if let Some(slot) = self.cache.get(id) {
            *slot.lock().await = Slot::default();
        }
    }

    /// The event types `A::Event` declares, when known.
    pub(super) fn names(&self) -> &'static [&'static str] {
        self.event_types.unwrap_or(&[])
    }

    /// A handler appending to `store` (in the store's namespace).
    pub fn new(store: EventStore, config: HandlerConfig) -> Self {
        let cache = SlotCache::new(config.cache_capacity, config.cache_idle);
        let retry = RetryPolicy::new(&config);
        let snapshots = Snapshots::for_aggregate::<A>(&store, &config.snapshots).map(Arc::new);
        AggregateHandler {
            snapshots,
            stream: store.namespace().stream_name(A::TYPE),
            store,
            event_types: codec::variant_names::<A::Event>(),
            cache,
            retry,
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
                .map_err(|failure| match failure {
                    CommandFailure::CorruptHistory(corrupt) => {
                        Error::with_source(WarmErrorKind::Undecodable, corrupt)
                    }
                    failure => Error::with_source(WarmErrorKind::Unavailable, failure),
                })?;
        }
        Ok(slot.last_seq)
    }

    /// Handles one command and returns the reply, as the runtime does for
    /// a command message.
    pub async fn process(&self, request: &CommandRequest<'_>) -> CommandReply {
        let outcome = self.execute(request).await;
        reply::reply(A::TYPE, request, outcome)
    }

    /// One command: load the aggregate (unless a create may go first),
    /// answer a resend from the idempotency record, decide, append and
    /// apply; after a failed append, what the retry policy says.
    async fn execute(
        &self,
        request: &CommandRequest<'_>,
    ) -> Result<AcceptedEvents, CommandFailure> {
        // Decode before taking the lock: malformed input never waits.
        let decoded = decide::decode::<A>(request)?;
        let involved = A::involves(&decoded);
        if !involved.is_empty() {
            // Boxed: inline, its future would size every command's.
            return Box::pin(self.execute_involving(request, decoded, involved)).await;
        }
        let mut command = Some(decoded);
        let slot = self
            .cache
            .get_or_insert_with(request.aggregate_id, || Mutex::new(Slot::default()));
        let mut slot = slot.lock().await;
        crate::metrics::global().state_cache(slot.loaded);
        // A slot not yet loaded holds the empty state. A command whose
        // decision on the empty state yields events (a `create` on a new id)
        // is appended with expected sequence 0 without loading first: the
        // store refuses it if the aggregate has any event, and the retry
        // then loads the history and decides again, where a resent command
        // is recognised by its Command-Id. Any other outcome on the empty
        // state proves nothing, so it loads and decides again.
        let mut optimistic = request.expected_seq.unwrap_or(0) == 0;
        // Whether the slot was read from the store during this command. A
        // slot kept from earlier commands may be behind: another process
        // (of the same queue group) may have appended since. An append is
        // checked by the store; an answer that appends nothing (a refusal,
        // nothing to do, a wrong `Expected-Seq`) is not, so before giving
        // one the slot is read up to the store's tail, and the command
        // decided again when it had moved.
        let mut current = false;
        let mut attempts = Attempts::new();
        loop {
            if !slot.loaded && !optimistic {
                self.load(&mut slot, request.aggregate_id).await?;
                current = true;
            }
            if let Some(recorded) = slot.commands.get(&*request.command_id) {
                return Ok(AcceptedEvents {
                    events: recorded.events(&self.stream, self.names()),
                    duplicate: true,
                });
            }
            let command = match command.take() {
                Some(command) => command,
                None => decide::decode::<A>(request)?,
            };
            let decided = decide::check_expected_seq(request.expected_seq, slot.last_seq)
                .and_then(|()| decide::decide(&slot, command));
            let events = match decided {
                Ok(Decision::Events(events)) => events,
                Ok(Decision::Unproven) => {
                    optimistic = false;
                    continue;
                }
                // Appends nothing: given only on the store's latest.
                answer @ (Ok(Decision::Nothing)
                | Err(CommandFailure::Denied(_) | CommandFailure::Conflict(_))) => {
                    if !current && self.moved_on(&mut slot, request).await {
                        current = true;
                        continue;
                    }
                    return match answer {
                        Ok(_) => Ok(AcceptedEvents {
                            events: Vec::new(),
                            duplicate: false,
                        }),
                        Err(failure) => Err(failure),
                    };
                }
                Err(failure) => return Err(failure),
            };
            match self.append(&mut slot, request, events).await {
                Ok(accepted) => return Ok(accepted),
                Err(failure) => {
                    let mut slots = [(request.aggregate_id, &mut *slot)];
                    self.recover(&mut slots, request, &mut attempts, failure)
                        .await?;
                    current = true;
                }
            }
        }
    }

    /// Reads the slot up to the store's tail before an answer that appends
    /// nothing; true when it had moved on (the command must be decided
    /// again). When the store cannot be read, the answer stands on what
    /// the slot holds, as it would without the check.
    async fn moved_on(&self, slot: &mut Slot<A>, request: &CommandRequest<'_>) -> bool {
        match self.reload(slot, request.aggregate_id).await {
            Ok(moved) => moved,
            Err(failure) => {
                tracing::warn!(
                    error = %failure,
                    aggregate_type = A::TYPE,
                    aggregate_id = request.aggregate_id,
                    "could not confirm the state before answering; answering from memory"
                );
                false
            }
        }
    }

    /// Acts on a failed append as the retry policy says: gives up (the
    /// failure is the command's outcome), or pauses and reads the
    /// aggregates of `slots` (by id) again (one moved on, or our own
    /// earlier attempt may have landed) so that the command is decided
    /// again.
    pub(super) async fn recover(
        &self,
        slots: &mut [(&str, &mut Slot<A>)],
        request: &CommandRequest<'_>,
        attempts: &mut Attempts,
        failure: CommandFailure,
    ) -> Result<(), CommandFailure> {
        let mut next = self.retry.next(attempts, failure);
        loop {
            match next {
                Next::GiveUp(failure) => return Err(failure),
                Next::Retry(pause) => {
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    return Ok(());
                }
                Next::Reload { pause, after } => {
                    self.log_retry(request, attempts, &after);
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    match self.reload_all(slots).await {
                        Ok(moved) => {
                            attempts.reloaded(moved);
                            return Ok(());
                        }
                        Err(failure) => next = self.retry.next(attempts, failure),
                    }
                }
            }
        }
    }

    /// Reads each of `slots` again after a failed append; true when any
    /// found newer events.
    pub(super) async fn reload_all(
        &self,
        slots: &mut [(&str, &mut Slot<A>)],
    ) -> Result<bool, CommandFailure> {
        let mut moved = false;
        for (aggregate_id, slot) in slots.iter_mut() {
            moved |= self.reload(slot, aggregate_id).await?;
        }
        Ok(moved)
    }

    /// Logs a retry: a conflict at debug level (writers meet, that is
    /// normal), store trouble as a warning naming the command.
    fn log_retry(&self, request: &CommandRequest<'_>, attempts: &Attempts, after: &CommandFailure) {
        match after {
            CommandFailure::Conflict(_) => {
                tracing::debug!(error = %after, attempt = attempts.conflicts(), "append conflict, reloading");
            }
            _ => tracing::warn!(
                error = %after,
                attempt = attempts.outages(),
                aggregate_type = A::TYPE,
                aggregate_id = request.aggregate_id,
                command_id = &*request.command_id,
                "event store unavailable, retrying"
            ),
        }
    }
}
