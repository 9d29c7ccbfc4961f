//! The event store: one JetStream stream per aggregate type, one subject per
//! aggregate instance.
//!
//! - [`EventStore::ensure_stream`] creates or updates a stream idempotently,
//!   stamping it with the contract version and refusing a stream stamped
//!   with another.
//! - [`EventStore::load`] reads an aggregate's events with ADR-31 batched
//!   direct gets (`next_by_subj` + `batch`): one round trip and no consumer
//!   for up to [`FIRST_BATCH`] events, so a cache miss costs the server
//!   almost nothing; a longer history's rest comes through a short-lived
//!   consumer, which delivers it about twice as fast.
//!   [`EventStore::load_each`] hands each event on as it arrives, so the
//!   caller folds while the rest is read.
//! - [`EventStore::append`] appends with `Nats-Expected-Last-Subject-Sequence`
//!   over `evt.<type>.<id>.*`; several events go as one ADR-50 atomic batch.
//!
//! Subjects and stream names are those of the store's [`Namespace`]
//! (default: no prefix), built with one `format!` each, as without one.
//!
//! Appends are plain requests whose acks are parsed here, so single and batch
//! appends map the server's error codes to one [`AppendErrorKind`].

use crate::append::{Appender, Outgoing};
use crate::consumer_read::{ConsumerRead, Stopped};
use crate::error::Error;
use async_nats::header::{HeaderMap, HeaderValue};
use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use jetsource_schemas::{
    Namespace, CONTRACT_METADATA_KEY, CONTRACT_VERSION, READABLE_CONTRACT_VERSIONS,
};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use crate::append::codes as jetstream_codes;
pub use crate::append::{GroupCommitConfig, GroupCommitStats};

/// How to configure an aggregate type's stream.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Replicas (1 on a single server, 3 in a cluster).
    pub replicas: usize,
    /// Refuse message deletes. One-way: JetStream cannot switch it back off.
    pub deny_delete: bool,
    /// Refuse purges. One-way as well.
    pub deny_purge: bool,
    /// An optional cap on the stream's size; appends beyond it are refused
    /// (discard new), history is never deleted.
    pub max_bytes: Option<i64>,
    /// JetStream's dedupe window for `Nats-Msg-Id`. jetsource writes no
    /// message ids (the expected-sequence check and the Command-Id make a
    /// resend harmless), so this only bounds what other writers' ids cost.
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            replicas: 1,
            deny_delete: true,
            deny_purge: true,
            max_bytes: None,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// One stored event as read back.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its subject, `evt.<type>.<id>.<EventType>` (under the store's
    /// subject prefix, if any).
    pub subject: String,
    /// Its stream sequence.
    pub seq: u64,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its JSON body.
    pub payload: Bytes,
}

impl StoredEvent {
    /// The event type: the subject's last token.
    pub fn event_type(&self) -> &str {
        self.subject.rsplit('.').next().unwrap_or_default()
    }

    /// The `Command-Id` header.
    pub fn command_id(&self) -> Option<&str> {
        self.headers
            .get(crate::header_names::COMMAND_ID.clone())
            .map(|v| v.as_str())
    }
}

/// One event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event type (a validated token).
    pub event_type: String,
    /// The JSON body.
    pub body: Bytes,
}

/// The metadata an append writes on every event.
#[derive(Debug, Clone)]
pub struct AppendMeta<'a> {
    /// The command's id (validated).
    pub command_id: &'a str,
    /// The correlation id (validated), if any.
    pub correlation_id: Option<&'a str>,
    /// The causation id (validated), if any.
    pub causation_id: Option<&'a str>,
    /// The events' schema version (written as `Event-Version` unless it is 1).
    pub event_version: u32,
}

/// What went wrong with an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendErrorKind {
    /// The aggregate moved on (10071, 10164): reload and decide again.
    Conflict,
    /// The store already holds one of these message ids (a duplicate ack on
    /// a single publish, or 10201 for a batch): reload and look for them.
    /// Only messages that carry `Nats-Msg-Id` meet it; jetsource's events
    /// do not.
    Duplicate,
    /// Retryable trouble: no responders, a temporary JetStream error, a
    /// timeout (the write may or may not have been stored).
    Unavailable,
    /// The stream is full (a configured byte limit with discard new).
    Full,
    /// Anything else the server refused.
    Refused,
}

impl std::fmt::Display for AppendErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppendErrorKind::Conflict => "conflict",
            AppendErrorKind::Duplicate => "duplicate",
            AppendErrorKind::Unavailable => "unavailable",
            AppendErrorKind::Full => "stream full",
            AppendErrorKind::Refused => "refused",
        })
    }
}

/// An append's failure.
pub type AppendError = Error<AppendErrorKind>;

/// What went wrong with a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// The server did not answer in time, or is unreachable.
    Unavailable,
    /// The server answered something unexpected.
    Protocol,
}

impl std::fmt::Display for LoadErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoadErrorKind::Unavailable => "unavailable",
            LoadErrorKind::Protocol => "protocol",
        })
    }
}

/// A load's failure.
pub type LoadError = Error<LoadErrorKind>;

/// What went wrong creating or updating a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamErrorKind {
    /// JetStream refused the configuration or could not be reached.
    JetStream,
    /// The stream exists and its metadata names another contract version
    /// than [`jetsource_schemas::CONTRACT_VERSION`]: its events may not
    /// mean what this build expects, so it is left untouched.
    ContractMismatch,
}

impl std::fmt::Display for StreamErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamErrorKind::JetStream => "jetstream",
            StreamErrorKind::ContractMismatch => "contract version mismatch",
        })
    }
}

/// A stream set-up failure.
pub type StreamError = Error<StreamErrorKind>;

/// Routes the many replies of batched direct gets to their callers over one
/// wildcard subscription, so a load costs no SUB/UNSUB round trip.
#[derive(Debug)]
pub(crate) struct ReplyMux {
    prefix: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, mpsc::UnboundedSender<async_nats::Message>>>,
}

impl ReplyMux {
    async fn start(client: &Client) -> Result<Arc<Self>, async_nats::SubscribeError> {
        let prefix = format!("{}.load", client.new_inbox());
        let subscriber = client.subscribe(format!("{prefix}.*")).await?;
        let mux = Arc::new(ReplyMux {
            prefix,
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
        });
        tokio::spawn(Self::route(Arc::downgrade(&mux), subscriber));
        Ok(mux)
    }

    async fn route(mux: std::sync::Weak<Self>, mut subscriber: Subscriber) {
        while let Some(message) = subscriber.next().await {
            let Some(mux) = mux.upgrade() else { return };
            let Some(id) = message
                .subject
                .rsplit('.')
                .next()
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            let sender = mux.waiting.lock().ok().and_then(|w| w.get(&id).cloned());
            if let Some(sender) = sender {
                let _ = sender.send(message);
            }
        }
    }

    pub(crate) fn register(self: &Arc<Self>) -> (String, ReplyWaiter) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(id, tx);
        }
        (
            format!("{}.{id}", self.prefix),
            ReplyWaiter {
                mux: self.clone(),
                id,
                rx,
            },
        )
    }
}

pub(crate) struct ReplyWaiter {
    mux: Arc<ReplyMux>,
    id: u64,
    pub(crate) rx: mpsc::UnboundedReceiver<async_nats::Message>,
}

impl Drop for ReplyWaiter {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.mux.waiting.lock() {
            waiting.remove(&self.id);
        }
    }
}

/// The event store over one NATS connection.
#[derive(Debug, Clone)]
pub struct EventStore {
    client: Client,
    jetstream: async_nats::jetstream::Context,
    mux: Arc<ReplyMux>,
    appender: Appender,
    timeout: Duration,
    namespace: Namespace,
    load_stats: Arc<LoadStats>,
    /// Streams on which a load consumer could not be created, and until
    /// when loads leave them to direct gets.
    consumers_paused: Arc<Mutex<HashMap<String, Instant>>>,
}

/// No snapshot: the probe of plain loads.
async fn no_snapshot() -> Option<u64> {
    None
}

/// How the store's loads were read, counted since it was made.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Batched direct-get requests.
    pub direct_requests: AtomicU64,
    /// Loads whose long tail came through a consumer.
    pub consumer_reads: AtomicU64,
    /// Pull requests those consumers answered.
    pub consumer_pulls: AtomicU64,
    /// Consumer reads that failed and were finished by direct get instead.
    pub consumer_fallbacks: AtomicU64,
    /// Long loads read by direct get alone, within
    /// [`CONSUMER_RETRY_AFTER`] of a consumer that could not be created.
    pub consumer_skips: AtomicU64,
}

/// What one batched direct get brought.
struct DirectBatch {
    events: Vec<StoredEvent>,
    /// Messages on the filter after this batch.
    pending: u64,
    /// The stream sequence to ask for next.
    next: u64,
}

/// Events asked for by a load's first direct get, per subject read: nearly
/// every aggregate whole, in one round trip and with no consumer. No more,
/// since a long history reads these at direct-get cost, about twice a
/// consumer's per event.
pub const FIRST_BATCH: usize = 128;
/// Events left after the first batch from which the rest is read through a
/// consumer: below it, creating one costs more than it saves.
pub const CONSUMER_MIN_PENDING: u64 = 512;
/// Events asked for per direct-get batch after the first, and at most per
/// pull. Each request is a round trip during which neither side works, and
/// a pending count the server works out over the subject: reading 10,000
/// events by direct get took about 100 ms in batches of 1,000 and 70 ms in one.
pub const LOAD_BATCH: usize = 10_000;
/// The most bytes one batch brings: the server stops there and says how
/// many events remain, so a burst stays far below its slow-consumer limit
/// (`max_pending`, 64 MiB by default) however large the events are.
pub const LOAD_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// How long loads read a stream by direct get alone after a load consumer
/// could not be created on it. An account that may not create consumers
/// gets no answer at all, so each try waits for the creation's timeout
/// (2 s): one long load a minute pays that, not every one.
pub const CONSUMER_RETRY_AFTER: Duration = Duration::from_secs(60);

impl EventStore {
    /// An event store over `client`; requests time out after `timeout`.
    pub async fn new(client: Client, timeout: Duration) -> Result<Self, LoadError> {
        let mux = ReplyMux::start(&client)
            .await
            .map_err(|e| Error::with_source(LoadErrorKind::Unavailable, e))?;
        let jetstream = async_nats::jetstream::new(client.clone());
        let appender = Appender::new(client.clone(), mux.clone(), timeout);
        Ok(EventStore {
            client,
            jetstream,
            mux,
            appender,
            timeout,
            namespace: Namespace::default(),
            load_stats: Arc::default(),
            consumers_paused: Arc::default(),
        })
    }

    /// Puts every subject and stream name under `namespace`'s prefix
    /// (default: none).
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// The namespace its subjects and streams are in.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Lets concurrent appends to one stream share atomic batches (see
    /// [`GroupCommitConfig`]).
    pub fn with_group_commit(mut self, config: GroupCommitConfig) -> Self {
        self.appender = self.appender.with_group_commit(config);
        self
    }

    /// Group commit's counters, when it is on.
    pub fn group_commit_stats(&self) -> Option<Arc<GroupCommitStats>> {
        self.appender.stats()
    }

    /// How its loads have been read so far.
    pub fn load_stats(&self) -> Arc<LoadStats> {
        self.load_stats.clone()
    }

    /// The NATS connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the stream of `aggregate_type`, or brings an existing one to
    /// `settings`. Safe to call from every process at every start.
    ///
    /// The stream's metadata carries the contract version under
    /// [`CONTRACT_METADATA_KEY`]. An existing stream that names a version
    /// this build cannot read is refused ([`StreamErrorKind::ContractMismatch`])
    /// and left as it is; one without the key (made before the key existed,
    /// or by hand) or of an older readable version
    /// ([`jetsource_schemas::READABLE_CONTRACT_VERSIONS`]) is adopted and
    /// stamped with this build's version by the same update that applies
    /// `settings`, so readers of the older version stop at their next start
    /// rather than meet events they do not expect.
    pub async fn ensure_stream(
        &self,
        aggregate_type: &str,
        settings: &StreamSettings,
    ) -> Result<(), StreamError> {
        use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
        let name = self.namespace.stream_name(aggregate_type);
        let subjects = vec![self
            .namespace
            .type_filter(aggregate_type)
            .map_err(|e| Error::with_source(StreamErrorKind::JetStream, e))?];
        let wanted = Config {
            name: name.clone(),
            subjects,
            storage: StorageType::File,
            num_replicas: settings.replicas,
            deny_delete: settings.deny_delete,
            deny_purge: settings.deny_purge,
            allow_direct: true,
            allow_atomic_publish: true,
            duplicate_window: settings.duplicate_window,
            max_bytes: settings.max_bytes.unwrap_or(-1),
            max_messages: -1,
            max_messages_per_subject: -1,
            discard: DiscardPolicy::New,
            description: Some(format!(
                "jetsource events of aggregate type {aggregate_type}"
            )),
            metadata: HashMap::from([(
                CONTRACT_METADATA_KEY.to_string(),
                CONTRACT_VERSION.to_string(),
            )]),
            ..Default::default()
        };
        match self.jetstream.get_stream(&name).await {
            Ok(mut stream) => {
                let info = stream
                    .info()
                    .await
                    .map_err(|e| Error::with_source(StreamErrorKind::JetStream, e))?;
                let current = &info.config;
                if let Some(found) = current.metadata.get(CONTRACT_METADATA_KEY) {
                    if !READABLE_CONTRACT_VERSIONS.contains(&found.as_str()) {
                        return Err(Error::new(
                            StreamErrorKind::ContractMismatch,
                            format!(
                                "stream {name} holds contract version {found:?} \
                                 ({CONTRACT_METADATA_KEY}), this build speaks {CONTRACT_VERSION:?}"
                            ),
                        ));
                    }
                }
                let mut next = current.clone();
                next.metadata.insert(
                    CONTRACT_METADATA_KEY.to_string(),
                    CONTRACT_VERSION.to_string(),
                );
                next.subjects = wanted.subjects.clone();
                // One-way switches: never try to turn them back off.
                next.deny_delete = current.deny_delete || wanted.deny_delete;
                next.deny_purge = current.deny_purge || wanted.deny_purge;
                next.allow_direct = true;
                next.allow_atomic_publish = true;
                next.duplicate_window = wanted.duplicate_window;
                next.max_bytes = wanted.max_bytes;
                next.discard = DiscardPolicy::New;
                next.num_replicas = wanted.num_replicas;
                if next != *current {
                    self.jetstream
                        .update_stream(next)
                        .await
                        .map_err(|e| Error::with_source(StreamErrorKind::JetStream, e))?;
                }
                Ok(())
            }
            Err(e)
                if matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                self.jetstream
                    .create_stream(wanted)
                    .await
                    .map_err(|e| Error::with_source(StreamErrorKind::JetStream, e))?;
                Ok(())
            }
            Err(e) => Err(Error::with_source(StreamErrorKind::JetStream, e)),
        }
    }

    /// Reads the events of `evt.<type>.<id>.*` with a stream sequence above
    /// `after_seq`, in order.
    pub async fn load(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, LoadError> {
        let filter = self
            .namespace
            .aggregate_filter(aggregate_type, aggregate_id)
            .map_err(|e| Error::with_source(LoadErrorKind::Protocol, e))?;
        self.read(aggregate_type, aggregate_id, &[filter], after_seq)
            .await
    }

    /// Like [`EventStore::load`], reading each event type's literal subject
    /// (`evt.<type>.<id>.<EventType>`) instead of the wildcard, all at once,
    /// and merging them in stream order.
    ///
    /// On a stream with many aggregates this is much cheaper for the server:
    /// a literal subject is found through JetStream's per-subject index,
    /// while a wildcard filter can make it scan whole blocks. It sees only
    /// the `event_types` given: an event of another type on the aggregate's
    /// subject is not read (the expected-sequence check, which spans the
    /// wildcard, still refuses appends until a full [`EventStore::load`]).
    pub async fn load_types(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_seq: u64,
        event_types: &[&str],
    ) -> Result<Vec<StoredEvent>, LoadError> {
        let filters = self.type_subjects(aggregate_type, aggregate_id, event_types)?;
        self.read(aggregate_type, aggregate_id, &filters, after_seq)
            .await
    }

    /// The literal subjects of an aggregate's `event_types`.
    fn type_subjects(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_types: &[&str],
    ) -> Result<Vec<String>, LoadError> {
        event_types
            .iter()
            .map(|event_type| {
                self.namespace
                    .event_subject(aggregate_type, aggregate_id, event_type)
                    .map_err(|e| Error::with_source(LoadErrorKind::Protocol, e))
            })
            .collect()
    }

    /// Hands `each` the aggregate's events from the start of its history,
    /// in stream order, as they arrive, until it breaks: those of
    /// `event_types` as [`EventStore::load_types`] reads them, or all of
    /// them as [`EventStore::load`] does when `event_types` is empty. A
    /// long history (past the first direct-get batch, with at least
    /// [`CONSUMER_MIN_PENDING`] events left) first asks `snapshot` for the
    /// stream sequence of a usable snapshot. When it names one, only the
    /// events after it are read besides the first batch: the caller folds
    /// the snapshot, then the events above its sequence.
    ///
    /// Should the read fail part way, `each` has had a prefix of the events.
    pub async fn load_each<F, Fut>(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_types: &[&str],
        snapshot: F,
        each: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<(), LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<u64>>,
    {
        let mut filters = self.type_subjects(aggregate_type, aggregate_id, event_types)?;
        if filters.is_empty() {
            filters.push(
                self.namespace
                    .aggregate_filter(aggregate_type, aggregate_id)
                    .map_err(|e| Error::with_source(LoadErrorKind::Protocol, e))?,
            );
        }
        self.read_each(aggregate_type, aggregate_id, &filters, 0, snapshot, each)
            .await
    }

    /// The subject of the message at stream sequence `seq` of
    /// `aggregate_type`'s stream, `None` when there is none.
    pub async fn subject_at(
        &self,
        aggregate_type: &str,
        seq: u64,
    ) -> Result<Option<String>, LoadError> {
        let api = format!(
            "$JS.API.DIRECT.GET.{}",
            self.namespace.stream_name(aggregate_type)
        );
        let mut waiter = self
            .direct_get(&api, serde_json::json!({ "seq": seq }))
            .await?;
        let message = self.answer(&api, &mut waiter).await?;
        match message.status.map(|s| s.as_u16()) {
            None | Some(200) => Ok(message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Subject"))
                .map(|v| v.as_str().to_string())),
            Some(404) => Ok(None),
            Some(code) => Err(Error::new(
                LoadErrorKind::Unavailable,
                format!(
                    "direct get answered {code} {}",
                    message.description.unwrap_or_default()
                ),
            )),
        }
    }

    /// Every message on `filters` after `after_seq`, collected.
    async fn read(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        filters: &[String],
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, LoadError> {
        let mut events = Vec::new();
        self.read_each(
            aggregate_type,
            aggregate_id,
            filters,
            after_seq,
            no_snapshot,
            &mut |event| {
                events.push(event);
                ControlFlow::Continue(())
            },
        )
        .await?;
        Ok(events)
    }

    /// Hands `each` every message on `filters` after `after_seq`, in stream
    /// order, until it breaks.
    ///
    /// A first direct-get batch per filter (all at once) reads most
    /// aggregates whole. When many events remain, the rest comes through a
    /// short-lived consumer ([`crate::consumer_read`]), which delivers them
    /// at about twice the rate, each handed on as it arrives; otherwise, or
    /// should that read fail, by further direct-get batches. `filters` are
    /// the aggregate's wildcard subject or some of its literal ones.
    async fn read_each<F, Fut>(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        filters: &[String],
        after_seq: u64,
        snapshot: F,
        each: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<(), LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Option<u64>>,
    {
        let stream = self.namespace.stream_name(aggregate_type);
        // JetStream's API subjects are never under the prefix.
        let api = format!("$JS.API.DIRECT.GET.{stream}");
        let firsts = filters
            .iter()
            .map(|filter| self.direct_batch(&api, filter, after_seq + 1, FIRST_BATCH));
        let mut events = Vec::new();
        // Filters with events left: (filter, next sequence to read).
        let mut unfinished = Vec::new();
        let mut pending = 0;
        for (filter, batch) in filters.iter().zip(futures::future::join_all(firsts).await) {
            let batch = batch?;
            events.extend(batch.events);
            if batch.pending > 0 {
                pending += batch.pending;
                unfinished.push((filter, batch.next));
            }
        }
        if filters.len() > 1 {
            events.sort_unstable_by_key(|e| e.seq);
        }
        // The highest stream sequence handed to `each`.
        let mut handed = 0;
        if pending >= CONSUMER_MIN_PENDING && self.consumers_paused(&stream) {
            self.load_stats
                .consumer_skips
                .fetch_add(1, Ordering::Relaxed);
        } else if pending >= CONSUMER_MIN_PENDING {
            // Every event below the lowest unfinished position is in hand:
            // the consumer reads the rest of every filter from there.
            let mut start = unfinished.iter().map(|(_, next)| *next).min().unwrap_or(0);
            // A snapshot at `seq` stands for every event up to it.
            if let Some(seq) = snapshot().await {
                start = start.max(seq.saturating_add(1));
                for (_, next) in &mut unfinished {
                    *next = (*next).max(start);
                }
            }
            let bytes: usize = events.iter().map(|e| e.payload.len() + 128).sum();
            let per_event = (bytes / events.len().max(1)).max(1);
            // Those in hand below `start` go first; the rest stay for a
            // read by direct get, should the consumer's fail.
            let rest = events.split_off(events.partition_point(|e| e.seq < start));
            for event in events {
                handed = event.seq;
                if each(event).is_break() {
                    return Ok(());
                }
            }
            events = rest;
            // The consumer reads the aggregate's wildcard subject, even for
            // literal ones: a consumer filtered on several subjects had
            // nats-server scan the stream (1.3 s of its CPU for 10,000
            // events on a stream of a few hundred thousand), one wildcard
            // filter did not. Events of types not asked for are dropped here.
            let wildcard = self
                .namespace
                .aggregate_filter(aggregate_type, aggregate_id)
                .map_err(|e| Error::with_source(LoadErrorKind::Protocol, e))?;
            let every_type = filters.len() == 1 && filters[0] == wildcard;
            let read = ConsumerRead {
                client: &self.client,
                stats: &self.load_stats,
                stream: &stream,
                filter: &wildcard,
                start,
                per_pull: (LOAD_BATCH_BYTES / per_event).clamp(1, LOAD_BATCH) as u64,
                timeout: self.timeout,
            };
            let read = read
                .run(&mut |event| {
                    if !every_type && !filters.contains(&event.subject) {
                        return ControlFlow::Continue(());
                    }
                    handed = event.seq;
                    each(event)
                })
                .await;
            match read {
                Ok(()) => {
                    self.load_stats
                        .consumer_reads
                        .fetch_add(1, Ordering::Relaxed);
                    crate::metrics::global().load(true);
                    return Ok(());
                }
                Err(stopped) => {
                    self.load_stats
                        .consumer_fallbacks
                        .fetch_add(1, Ordering::Relaxed);
                    crate::metrics::global().load_fallback();
                    let reason = match stopped {
                        Stopped::Creating(reason) => {
                            self.pause_consumers(&stream);
                            reason
                        }
                        Stopped::Reading(reason) => reason,
                    };
                    tracing::debug!(%reason, %stream, handed, "reading the rest by direct get");
                    // What the consumer handed on is a gap-free prefix of
                    // the aggregate's events: go on after it.
                    events.retain(|e| e.seq > handed);
                    for (_, next) in &mut unfinished {
                        *next = (*next).max(handed.saturating_add(1));
                    }
                }
            }
        }
        for (filter, mut from) in unfinished {
            loop {
                let batch = self.direct_batch(&api, filter, from, LOAD_BATCH).await?;
                events.extend(batch.events);
                if batch.pending == 0 {
                    break;
                }
                from = batch.next;
            }
        }
        if filters.len() > 1 {
            events.sort_unstable_by_key(|e| e.seq);
        }
        crate::metrics::global().load(false);
        for event in events {
            if each(event).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// True while loads leave `stream` to direct gets (see
    /// [`CONSUMER_RETRY_AFTER`]).
    fn consumers_paused(&self, stream: &str) -> bool {
        let Ok(mut paused) = self.consumers_paused.lock() else {
            return false;
        };
        match paused.get(stream) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                paused.remove(stream);
                false
            }
            None => false,
        }
    }

    fn pause_consumers(&self, stream: &str) {
        if let Ok(mut paused) = self.consumers_paused.lock() {
            paused.insert(stream.to_string(), Instant::now() + CONSUMER_RETRY_AFTER);
        }
    }

    /// Sends a direct-get request to `api`; the answers come to the
    /// waiter.
    async fn direct_get(
        &self,
        api: &str,
        request: serde_json::Value,
    ) -> Result<ReplyWaiter, LoadError> {
        let (reply, waiter) = self.mux.register();
        self.client
            .publish_with_reply(api.to_string(), reply, Bytes::from(request.to_string()))
            .await
            .map_err(|e| Error::with_source(LoadErrorKind::Unavailable, e))?;
        Ok(waiter)
    }

    /// The next answer to a direct get, or `unavailable` after the store's
    /// timeout.
    async fn answer(
        &self,
        api: &str,
        waiter: &mut ReplyWaiter,
    ) -> Result<async_nats::Message, LoadError> {
        match tokio::time::timeout(self.timeout, waiter.rx.recv()).await {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(Error::new(
                LoadErrorKind::Unavailable,
                "the reply router stopped",
            )),
            Err(_) => Err(Error::new(
                LoadErrorKind::Unavailable,
                format!("no answer from {api} within {:?}", self.timeout),
            )),
        }
    }

    /// One ADR-31 batched direct get: up to `batch` messages on `filter`
    /// from stream sequence `from` on.
    async fn direct_batch(
        &self,
        api: &str,
        filter: &str,
        from: u64,
        batch: usize,
    ) -> Result<DirectBatch, LoadError> {
        self.load_stats
            .direct_requests
            .fetch_add(1, Ordering::Relaxed);
        let request = serde_json::json!({"seq": from, "next_by_subj": filter, "batch": batch, "max_bytes": LOAD_BATCH_BYTES});
        let mut waiter = self.direct_get(api, request).await?;
        let mut read = DirectBatch {
            events: Vec::new(),
            pending: 0,
            next: from,
        };
        loop {
            let message = self.answer(api, &mut waiter).await?;
            match message.status.map(|s| s.as_u16()) {
                // 404: nothing (more) on this subject.
                Some(404) => return Ok(read),
                // 204: end of batch; Nats-Num-Pending says whether more remain.
                Some(204) => {
                    read.pending = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Num-Pending"))
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                        .unwrap_or(0);
                    return Ok(read);
                }
                Some(503) => {
                    return Err(Error::new(
                        LoadErrorKind::Unavailable,
                        format!("no responders for {api}"),
                    ))
                }
                Some(408) => {
                    return Err(Error::new(
                        LoadErrorKind::Unavailable,
                        "direct get timed out",
                    ))
                }
                Some(code) if code != 200 => {
                    return Err(Error::new(
                        LoadErrorKind::Protocol,
                        format!(
                            "direct get answered {code} {}",
                            message.description.unwrap_or_default()
                        ),
                    ))
                }
                _ => {}
            }
            let headers = message.headers.unwrap_or_default();
            let seq = headers
                .get("Nats-Sequence")
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .ok_or_else(|| {
                    Error::new(
                        LoadErrorKind::Protocol,
                        "direct get message without Nats-Sequence",
                    )
                })?;
            let subject = headers
                .get("Nats-Subject")
                .map(|v| v.as_str().to_string())
                .ok_or_else(|| {
                    Error::new(
                        LoadErrorKind::Protocol,
                        "direct get message without Nats-Subject",
                    )
                })?;
            read.next = seq + 1;
            read.events.push(StoredEvent {
                subject,
                seq,
                headers,
                payload: message.payload,
            });
        }
    }

    /// Appends `events` to `evt.<type>.<id>.*`, provided the aggregate's last
    /// stream sequence is still `expected` (0: no events yet). Returns the
    /// new events' stream sequences. Several events are one atomic batch.
    pub async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        expected: u64,
        events: &[NewEvent],
        meta: &AppendMeta<'_>,
    ) -> Result<Vec<u64>, AppendError> {
        // The expected-sequence check rides on the first message only.
        let mut filter = Some(
            self.namespace
                .aggregate_filter(aggregate_type, aggregate_id)
                .map_err(|e| Error::with_source(AppendErrorKind::Refused, e))?,
        );
        let mut messages = Vec::with_capacity(events.len());
        for event in events {
            let subject = self
                .namespace
                .event_subject(aggregate_type, aggregate_id, &event.event_type)
                .map_err(|e| Error::with_source(AppendErrorKind::Refused, e))?;
            // Names are constants and owned values are moved in: one
            // allocation per value, none per name. No `Nats-Msg-Id`: the
            // expected-sequence check already refuses a second write of a
            // command (it can only land where the aggregate has moved on),
            // and the command's id in the history tells a resend apart, also
            // after any dedupe window; the server's dedupe map would only
            // cost memory and time per event. No `Event-Time` either: the
            // event is stored as it is decided, and JetStream stamps it.
            // `Event-Version` only when it is not 1, which its absence means:
            // most events never leave version 1, and a fourth header costs
            // every append a regrown map and the store 18 bytes per event.
            let mut h = HeaderMap::new();
            h.insert(crate::header_names::COMMAND_ID.clone(), meta.command_id);
            if meta.event_version != 1 {
                h.insert(
                    crate::header_names::EVENT_VERSION.clone(),
                    HeaderValue::from(meta.event_version.to_string()),
                );
            }
            if let Some(id) = meta.correlation_id {
                h.insert(crate::header_names::CORRELATION_ID.clone(), id);
            }
            if let Some(id) = meta.causation_id {
                h.insert(crate::header_names::CAUSATION_ID.clone(), id);
            }
            if let Some(filter) = filter.take() {
                h.insert(
                    crate::header_names::EXPECTED_LAST_SUBJECT_SEQUENCE.clone(),
                    HeaderValue::from(expected.to_string()),
                );
                h.insert(
                    crate::header_names::EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT.clone(),
                    HeaderValue::from(filter),
                );
            }
            messages.push(Outgoing {
                subject,
                headers: h,
                body: event.body.clone(),
            });
        }
        self.appender.append(aggregate_type, messages).await
    }
}
