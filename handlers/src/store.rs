//! The event store: one JetStream stream per aggregate type, one subject per
//! aggregate instance.
//!
//! - [`EventStore::ensure_stream`] creates or updates a stream idempotently.
//! - [`EventStore::load`] reads an aggregate's events with ADR-31 batched
//!   direct gets (`next_by_subj` + `batch`), one round trip per 1,000 events
//!   and no consumer, so a cache miss costs the server almost nothing.
//! - [`EventStore::append`] appends with `Nats-Expected-Last-Subject-Sequence`
//!   over `evt.<type>.<id>.*`; several events go as one ADR-50 atomic batch.
//!
//! Appends are plain requests whose acks are parsed here, so single and batch
//! appends map the server's error codes to one [`AppendErrorKind`].

use crate::error::Error;
use async_nats::header::HeaderMap;
use async_nats::{Client, Request, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use jetsource_schemas::{headers, subject};
use jetstream_codes::*;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// JetStream error codes jetsource acts on.
pub mod jetstream_codes {
    /// Wrong last sequence, with the current value.
    pub const WRONG_LAST_SEQUENCE: u64 = 10071;
    /// Wrong last sequence, without it (clustered in-flight proposals, batches).
    pub const WRONG_LAST_SEQUENCE_CONSTANT: u64 = 10164;
    /// Expected-last-subject-sequence not ready; retryable.
    pub const EXPECTED_SEQ_NOT_READY: u64 = 10163;
    /// A duplicate message id is still being processed; retryable.
    pub const DUPLICATE_IN_PROCESS: u64 = 10158;
    /// An atomic batch holds a message id already in the dedupe window.
    pub const BATCH_DUPLICATE_MSG_ID: u64 = 10201;
    /// Too many atomic batches in flight; retryable.
    pub const BATCH_TOO_MANY_INFLIGHT: u64 = 10210;
    /// Stream not found.
    pub const STREAM_NOT_FOUND: u64 = 10059;
    /// Maximum bytes or messages reached (discard new).
    pub const STREAM_STORE_FAILED: u64 = 10077;
}

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
    /// JetStream's dedupe window for `Nats-Msg-Id`.
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
    /// Its subject, `evt.<type>.<id>.<EventType>`.
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
        self.headers.get(headers::COMMAND_ID).map(|v| v.as_str())
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
    /// The events' schema version.
    pub event_version: u32,
}

/// What went wrong with an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendErrorKind {
    /// The aggregate moved on (10071, 10164): reload and decide again.
    Conflict,
    /// The store already holds one of these message ids (a duplicate ack on
    /// a single publish, or 10201 for a batch): reload and look for them.
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
}

impl std::fmt::Display for StreamErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("jetstream")
    }
}

/// A stream set-up failure.
pub type StreamError = Error<StreamErrorKind>;

#[derive(Deserialize)]
struct PubAck {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Deserialize, Debug)]
struct ApiError {
    #[serde(default)]
    code: u64,
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

fn classify(err: &ApiError) -> AppendErrorKind {
    match err.err_code {
        WRONG_LAST_SEQUENCE | WRONG_LAST_SEQUENCE_CONSTANT => AppendErrorKind::Conflict,
        BATCH_DUPLICATE_MSG_ID => AppendErrorKind::Duplicate,
        EXPECTED_SEQ_NOT_READY | DUPLICATE_IN_PROCESS | BATCH_TOO_MANY_INFLIGHT => {
            AppendErrorKind::Unavailable
        }
        STREAM_STORE_FAILED => AppendErrorKind::Full,
        _ if err.code == 503 || err.code == 429 => AppendErrorKind::Unavailable,
        _ if err.description.contains("maximum bytes exceeded")
            || err.description.contains("maximum messages exceeded") =>
        {
            AppendErrorKind::Full
        }
        _ => AppendErrorKind::Refused,
    }
}

/// Routes the many replies of batched direct gets to their callers over one
/// wildcard subscription, so a load costs no SUB/UNSUB round trip.
#[derive(Debug)]
struct ReplyMux {
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

    fn register(self: &Arc<Self>) -> (String, Registration) {
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

struct Registration {
    mux: Arc<ReplyMux>,
    id: u64,
    rx: mpsc::UnboundedReceiver<async_nats::Message>,
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
    timeout: Duration,
}

/// Events read per direct-get batch.
const LOAD_BATCH: usize = 1000;

impl EventStore {
    /// An event store over `client`; requests time out after `timeout`.
    pub async fn new(client: Client, timeout: Duration) -> Result<Self, LoadError> {
        let mux = ReplyMux::start(&client)
            .await
            .map_err(|e| Error::with_source(LoadErrorKind::Unavailable, e))?;
        let jetstream = async_nats::jetstream::new(client.clone());
        Ok(EventStore {
            client,
            jetstream,
            mux,
            timeout,
        })
    }

    /// The NATS connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the stream of `aggregate_type`, or brings an existing one to
    /// `settings`. Safe to call from every process at every start.
    pub async fn ensure_stream(
        &self,
        aggregate_type: &str,
        settings: &StreamSettings,
    ) -> Result<(), StreamError> {
        use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
        let name = subject::stream_name(aggregate_type);
        let subjects = vec![subject::type_filter(aggregate_type)
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
            ..Default::default()
        };
        match self.jetstream.get_stream(&name).await {
            Ok(mut stream) => {
                let info = stream
                    .info()
                    .await
                    .map_err(|e| Error::with_source(StreamErrorKind::JetStream, e))?;
                let current = &info.config;
                let mut next = current.clone();
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
        let filter = subject::aggregate_filter(aggregate_type, aggregate_id)
            .map_err(|e| Error::with_source(LoadErrorKind::Protocol, e))?;
        let api = format!(
            "$JS.API.DIRECT.GET.{}",
            subject::stream_name(aggregate_type)
        );
        let mut events = Vec::new();
        let mut from = after_seq + 1;
        loop {
            let (reply, mut registration) = self.mux.register();
            let request =
                serde_json::json!({"seq": from, "next_by_subj": filter, "batch": LOAD_BATCH});
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
        let filter = subject::aggregate_filter(aggregate_type, aggregate_id)
            .map_err(|e| Error::with_source(AppendErrorKind::Refused, e))?;
        let time = now_rfc3339();
        let mut messages = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            let subject =
                subject::EventSubject::build(aggregate_type, aggregate_id, &event.event_type)
                    .map_err(|e| Error::with_source(AppendErrorKind::Refused, e))?;
            let mut h = HeaderMap::new();
            h.insert(
                "Nats-Msg-Id",
                jetsource_schemas::event::message_id(aggregate_id, meta.command_id, index).as_str(),
            );
            h.insert(headers::COMMAND_ID, meta.command_id);
            h.insert(
                headers::EVENT_VERSION,
                meta.event_version.to_string().as_str(),
            );
            h.insert(headers::EVENT_TIME, time.as_str());
            if let Some(id) = meta.correlation_id {
                h.insert(headers::CORRELATION_ID, id);
            }
            if let Some(id) = meta.causation_id {
                h.insert(headers::CAUSATION_ID, id);
            }
            if index == 0 {
                h.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    expected.to_string().as_str(),
                );
                h.insert(
                    "Nats-Expected-Last-Subject-Sequence-Subject",
                    filter.as_str(),
                );
            }
            messages.push((subject, h, event.body.clone()));
        }
        match messages.len() {
            0 => Ok(Vec::new()),
            1 => {
                let Some((subject, h, body)) = messages.pop() else {
                    return Ok(Vec::new());
                };
                let ack = self.request(subject, h, body).await?;
                if ack.duplicate {
                    return Err(Error::new(
                        AppendErrorKind::Duplicate,
                        format!("already stored at {}", ack.seq),
                    ));
                }
                Ok(vec![ack.seq])
            }
            n => self.append_batch(messages, n).await,
        }
    }

    async fn append_batch(
        &self,
        messages: Vec<(String, HeaderMap, Bytes)>,
        n: usize,
    ) -> Result<Vec<u64>, AppendError> {
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        for (i, (subject, mut h, body)) in messages.into_iter().enumerate() {
            let position = i + 1;
            h.insert("Nats-Batch-Id", batch_id.as_str());
            h.insert("Nats-Batch-Sequence", position.to_string().as_str());
            if position == n {
                h.insert("Nats-Batch-Commit", "1");
                let ack = self.request(subject, h, body).await?;
                let count = ack.count.unwrap_or(n as u64);
                if count != n as u64 || ack.seq < count {
                    return Err(Error::new(
                        AppendErrorKind::Refused,
                        format!(
                            "batch commit acknowledged {count} messages at {}, expected {n}",
                            ack.seq
                        ),
                    ));
                }
                return Ok((ack.seq + 1 - count..=ack.seq).collect());
            }
            if position == 1 {
                // The first message must be a request: its answer says whether
                // the server accepted the batch at all.
                self.request(subject, h, body).await?;
            } else {
                self.client
                    .publish_with_headers(subject, h, body)
                    .await
                    .map_err(|e| Error::with_source(AppendErrorKind::Unavailable, e))?;
            }
        }
        Err(Error::new(AppendErrorKind::Refused, "empty batch"))
    }

    async fn request(
        &self,
        subject: String,
        h: HeaderMap,
        body: Bytes,
    ) -> Result<PubAck, AppendError> {
        let request = Request::new()
            .headers(h)
            .payload(body)
            .timeout(Some(self.timeout));
        let reply = self
            .client
            .send_request(subject, request)
            .await
            .map_err(|e| {
                use async_nats::RequestErrorKind;
                let kind = match e.kind() {
                    RequestErrorKind::NoResponders
                    | RequestErrorKind::TimedOut
                    | RequestErrorKind::Other => AppendErrorKind::Unavailable,
                    RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
                        AppendErrorKind::Refused
                    }
                };
                Error::with_source(kind, e)
            })?;
        if reply.payload.is_empty() {
            // A zero-byte ack: an accepted message inside an atomic batch.
            return Ok(PubAck {
                seq: 0,
                duplicate: false,
                count: None,
                error: None,
            });
        }
        let ack: PubAck = serde_json::from_slice(&reply.payload)
            .map_err(|e| Error::with_source(AppendErrorKind::Refused, e))?;
        if let Some(err) = &ack.error {
            return Err(Error::new(
                classify(err),
                format!(
                    "JetStream error {} ({}): {}",
                    err.err_code, err.code, err.description
                ),
            ));
        }
        Ok(ack)
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
