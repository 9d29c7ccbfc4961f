//! The event store: one JetStream stream per aggregate type, one subject per
//! aggregate instance.
//!
//! - [`EventStore::ensure_stream`] creates or updates a stream idempotently,
//!   stamping it with the contract version and refusing a stream stamped
//!   with another.
//! - [`EventStore::load`] reads an aggregate's events with ADR-31 batched
//!   direct gets (`next_by_subj` + `batch`), one round trip per 1,000 events
//!   and no consumer, so a cache miss costs the server almost nothing.
//! - [`EventStore::append`] appends with `Nats-Expected-Last-Subject-Sequence`
//!   over `evt.<type>.<id>.*`; several events go as one ADR-50 atomic batch.
//!
//! Subjects and stream names are those of the store's [`Namespace`]
//! (default: no prefix), built with one `format!` each, as without one.
//!
//! Appends are plain requests whose acks are parsed here, so single and batch
//! appends map the server's error codes to one [`AppendErrorKind`].

use crate::append::{Appender, Outgoing};
use crate::error::Error;
use async_nats::header::{HeaderMap, HeaderValue};
use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use jetsource_schemas::{
    Namespace, CONTRACT_METADATA_KEY, CONTRACT_VERSION, READABLE_CONTRACT_VERSIONS,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
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

    pub(crate) fn register(self: &Arc<Self>) -> (String, Registration) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(id, tx);
        }
        (
            format!("{}.{id}", self.prefix),
            Registration {
                mux: self.clone(),
                id,
                rx,
            },
        )
    }
}

pub(crate) struct Registration {
    mux: Arc<ReplyMux>,
    id: u64,
    pub(crate) rx: mpsc::UnboundedReceiver<async_nats::Message>,
}

impl Drop for Registration {
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
}

/// Events asked for per direct-get batch: most aggregates in one request.
/// Each request is a round trip during which neither side works, and a
/// pending count the server works out over the subject: reading 10,000
/// events took about 100 ms in batches of 1,000 and 70 ms in one.
pub const LOAD_BATCH: usize = 10_000;
/// The most bytes one batch brings: the server stops there and says how
/// many events remain, so a burst stays far below its slow-consumer limit
/// (`max_pending`, 64 MiB by default) however large the events are.
pub const LOAD_BATCH_BYTES: usize = 4 * 1024 * 1024;

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
        self.read(aggregate_type, &filter, after_seq).await
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
        let mut filters = Vec::with_capacity(event_types.len());
        for event_type in event_types {
            filters.push(
                self.namespace
                    .event_subject(aggregate_type, aggregate_id, event_type)
                    .map_err(|e| Error::with_source(LoadErrorKind::Protocol, e))?,
            );
        }
        let reads = filters
            .iter()
            .map(|filter| self.read(aggregate_type, filter, after_seq));
        let mut events = Vec::new();
        for read in futures::future::join_all(reads).await {
            events.extend(read?);
        }
        events.sort_unstable_by_key(|e| e.seq);
        Ok(events)
    }

    /// Every message on `filter` after `after_seq`, in order.
    async fn read(
        &self,
        aggregate_type: &str,
        filter: &str,
        after_seq: u64,
    ) -> Result<Vec<StoredEvent>, LoadError> {
        // JetStream's API subjects are never under the prefix.
        let api = format!(
            "$JS.API.DIRECT.GET.{}",
            self.namespace.stream_name(aggregate_type)
        );
        let mut events = Vec::new();
        let mut from = after_seq + 1;
        loop {
            let (reply, mut registration) = self.mux.register();
            let request = serde_json::json!({"seq": from, "next_by_subj": filter, "batch": LOAD_BATCH, "max_bytes": LOAD_BATCH_BYTES});
            self.client
                .publish_with_reply(api.clone(), reply, Bytes::from(request.to_string()))
                .await
                .map_err(|e| Error::with_source(LoadErrorKind::Unavailable, e))?;
            let mut more = false;
            loop {
                let message = match tokio::time::timeout(self.timeout, registration.rx.recv()).await
                {
                    Ok(Some(message)) => message,
                    Ok(None) => {
                        return Err(Error::new(
                            LoadErrorKind::Unavailable,
                            "the reply router stopped",
                        ))
                    }
                    Err(_) => {
                        return Err(Error::new(
                            LoadErrorKind::Unavailable,
                            format!("no answer from {api} within {:?}", self.timeout),
                        ))
                    }
                };
                match message.status.map(|s| s.as_u16()) {
                    // 404: nothing (more) on this subject.
                    Some(404) => break,
                    // 204: end of batch; Nats-Num-Pending says whether more remain.
                    Some(204) => {
                        let pending = message
                            .headers
                            .as_ref()
                            .and_then(|h| h.get("Nats-Num-Pending"))
                            .and_then(|v| v.as_str().parse::<u64>().ok())
                            .unwrap_or(0);
                        more = pending > 0;
                        break;
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
                from = seq + 1;
                events.push(StoredEvent {
                    subject,
                    seq,
                    headers,
                    payload: message.payload,
                });
            }
            if !more {
                return Ok(events);
            }
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
