//! The write path: one command's events as a single publish or an ADR-50
//! atomic batch, and group commit, where concurrent commands on different
//! aggregates of one stream share an atomic batch.
//!
//! Group commit exists for servers that sync every write (`sync_interval:
//! always`): JetStream stores and syncs an atomic batch as one unit, so one
//! fsync serves many commands. Each command keeps its own expected-sequence
//! check (on its first message) and gets its own sequences back. A batch is
//! atomic, so one command's conflict (or a duplicate message id, 10201,
//! which jetsource's own events, written without ids, never meet) fails
//! them all: then each command is appended again on its own, and only the
//! culprit fails. A lane sends at once whatever is queued when a batch permit
//! is free (one per batch in flight), so a lone command never waits for
//! company.

use crate::error::Error;
use crate::store::{AppendError, AppendErrorKind, ReplyMux};
use async_nats::header::HeaderMap;
use async_nats::{Client, Request};
use bytes::Bytes;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// JetStream error codes the write path acts on.
pub mod codes {
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
    /// Maximum bytes or messages reached (discard new).
    pub const STREAM_STORE_FAILED: u64 = 10077;
}

/// How concurrent appends share atomic batches.
#[derive(Debug, Clone)]
pub struct GroupCommitConfig {
    /// Share batches at all (default true). Off: every command is its own
    /// publish (or its own batch when it has several events).
    pub enabled: bool,
    /// Messages in one batch at most (default 256; JetStream allows 1,000).
    pub max_messages: usize,
    /// How long a batch may wait for more commands while another batch of
    /// the same stream is in flight (default 0: send what is queued).
    pub max_wait: Duration,
    /// Batches in flight per stream at once (default 4; JetStream allows 50).
    pub max_in_flight: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        GroupCommitConfig {
            enabled: true,
            max_messages: 256,
            max_wait: Duration::ZERO,
            max_in_flight: 4,
        }
    }
}

/// One message to publish.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) subject: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

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
    use codes::*;
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

/// Parses an ack; `Ok(None)` is the zero-byte ack of a message inside a batch.
fn parse_ack(payload: &[u8]) -> Result<Option<PubAck>, AppendError> {
    if payload.is_empty() {
        return Ok(None);
    }
    let ack: PubAck = serde_json::from_slice(payload)
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
    Ok(Some(ack))
}

fn copy_error(e: &AppendError) -> AppendError {
    Error::new(e.kind(), e.to_string())
}

/// Publishes appends over one connection.
#[derive(Clone)]
pub(crate) struct Appender {
    client: Client,
    mux: Arc<ReplyMux>,
    timeout: Duration,
    group: Option<Arc<Group>>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("timeout", &self.timeout)
            .field("group_commit", &self.group.as_ref().map(|g| &g.config))
            .finish()
    }
}

impl Appender {
    pub(crate) fn new(client: Client, mux: Arc<ReplyMux>, timeout: Duration) -> Self {
        Appender {
            client,
            mux,
            timeout,
            group: None,
        }
    }

    pub(crate) fn with_group_commit(mut self, config: GroupCommitConfig) -> Self {
        self.group = config.enabled.then(|| {
            Arc::new(Group {
                config,
                lanes: Mutex::new(HashMap::new()),
                stats: Arc::default(),
            })
        });
        self
    }

    /// Group commit's counters, when it is on.
    pub(crate) fn stats(&self) -> Option<Arc<GroupCommitStats>> {
        self.group.as_ref().map(|g| g.stats.clone())
    }

    /// Appends one command's messages to the stream of `aggregate_type`;
    /// returns their sequences.
    pub(crate) async fn append(
        &self,
        aggregate_type: &str,
        messages: Vec<Outgoing>,
    ) -> Result<Vec<u64>, AppendError> {
        match &self.group {
            Some(group) if !messages.is_empty() => {
                let lane = group.lane(aggregate_type, || self.alone());
                let (done, result) = oneshot::channel();
                if lane.send(PendingAppend { messages, done }).is_err() {
                    return Err(Error::new(
                        AppendErrorKind::Unavailable,
                        "the commit lane stopped",
                    ));
                }
                result.await.unwrap_or_else(|_| {
                    Err(Error::new(
                        AppendErrorKind::Unavailable,
                        "the commit lane stopped",
                    ))
                })
            }
            _ => self.direct(messages).await,
        }
    }

    /// This appender without group commit (what lanes publish with, so a
    /// lane holds no reference back to the lanes).
    fn alone(&self) -> Appender {
        Appender {
            client: self.client.clone(),
            mux: self.mux.clone(),
            timeout: self.timeout,
            group: None,
        }
    }

    /// One command on its own: a single publish, or its own atomic batch.
    async fn direct(&self, mut messages: Vec<Outgoing>) -> Result<Vec<u64>, AppendError> {
        match messages.len() {
            0 => Ok(Vec::new()),
            1 => {
                let Some(one) = messages.pop() else {
                    return Ok(Vec::new());
                };
                let ack = self.request(one).await?;
                if ack.duplicate {
                    return Err(Error::new(
                        AppendErrorKind::Duplicate,
                        format!("already stored at {}", ack.seq),
                    ));
                }
                Ok(vec![ack.seq])
            }
            // Boxed: a batch's future is large, and inline it would size
            // the future of every command, single-event ones included (the
            // runtime allocates that future once per command).
            _ => Box::pin(self.batch(messages.iter())).await,
        }
    }

    async fn request(&self, message: Outgoing) -> Result<PubAck, AppendError> {
        let request = Request::new()
            .headers(message.headers)
            .payload(message.body)
            .timeout(Some(self.timeout));
        let reply = self
            .client
            .send_request(message.subject, request)
            .await
            .map_err(request_error)?;
        parse_ack(&reply.payload)?.ok_or_else(|| {
            Error::new(
                AppendErrorKind::Refused,
                "an empty ack for a single publish",
            )
        })
    }

    /// Publishes `messages` as one ADR-50 atomic batch and returns their
    /// sequences, which are consecutive.
    async fn batch<'a>(
        &self,
        messages: impl ExactSizeIterator<Item = &'a Outgoing>,
    ) -> Result<Vec<u64>, AppendError> {
        let n = messages.len();
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        let (inbox, mut replies) = self.mux.register();
        for (i, message) in messages.enumerate() {
            let position = i + 1;
            let mut h = message.headers.clone();
            h.insert("Nats-Batch-Id", batch_id.as_str());
            h.insert("Nats-Batch-Sequence", position.to_string().as_str());
            if position == n {
                h.insert("Nats-Batch-Commit", "1");
            }
            // The first message and the commit are answered; the server's
            // answer to the first says whether it took the batch at all.
            let sent = if position == 1 || position == n {
                self.client
                    .publish_with_reply_and_headers(
                        message.subject.clone(),
                        inbox.clone(),
                        h,
                        message.body.clone(),
                    )
                    .await
            } else {
                self.client
                    .publish_with_headers(message.subject.clone(), h, message.body.clone())
                    .await
            };
            sent.map_err(|e| Error::with_source(AppendErrorKind::Unavailable, e))?;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let reply = match tokio::time::timeout_at(deadline, replies.rx.recv()).await {
                Ok(Some(reply)) => reply,
                Ok(None) => {
                    return Err(Error::new(
                        AppendErrorKind::Unavailable,
                        "the ack inbox closed",
                    ))
                }
                Err(_) => {
                    return Err(Error::new(
                        AppendErrorKind::Unavailable,
                        format!("no commit ack within {:?}", self.timeout),
                    ))
                }
            };
            if reply.status.map(|s| s.as_u16()) == Some(503) {
                return Err(Error::new(
                    AppendErrorKind::Unavailable,
                    "no responders for the batch",
                ));
            }
            let Some(ack) = parse_ack(&reply.payload)? else {
                continue;
            };
            let count = ack.count.unwrap_or(0);
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
    }

    /// Commits several commands' messages in one batch; on a conflict or a
    /// duplicate, each command again on its own.
    async fn commit(&self, appends: Vec<PendingAppend>, stats: &GroupCommitStats) {
        if let [_] = appends.as_slice() {
            if let Some(append) = appends.into_iter().next() {
                let result = self.direct(append.messages).await;
                let _ = append.done.send(result);
            }
            return;
        }
        let result = self
            .batch(
                appends
                    .iter()
                    .flat_map(|append| append.messages.iter())
                    .collect::<Vec<_>>()
                    .into_iter(),
            )
            .await;
        match result {
            Ok(seqs) => {
                let mut seqs = seqs.into_iter();
                for append in appends {
                    let mine: Vec<u64> = seqs.by_ref().take(append.messages.len()).collect();
                    let _ = append.done.send(Ok(mine));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    AppendErrorKind::Conflict | AppendErrorKind::Duplicate
                ) =>
            {
                tracing::debug!(error = %e, commands = appends.len(), "shared batch failed; appending each command alone");
                stats
                    .split_batches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::metrics::global().batch_split();
                let alone = appends.into_iter().map(|append| async move {
                    let result = self.direct(append.messages).await;
                    let _ = append.done.send(result);
                });
                futures::future::join_all(alone).await;
            }
            Err(e) => {
                for append in appends {
                    let _ = append.done.send(Err(copy_error(&e)));
                }
            }
        }
    }
}

fn request_error(e: async_nats::RequestError) -> AppendError {
    use async_nats::RequestErrorKind;
    let kind = match e.kind() {
        RequestErrorKind::NoResponders | RequestErrorKind::TimedOut | RequestErrorKind::Other => {
            AppendErrorKind::Unavailable
        }
        RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
            AppendErrorKind::Refused
        }
    };
    Error::with_source(kind, e)
}

struct PendingAppend {
    messages: Vec<Outgoing>,
    done: oneshot::Sender<Result<Vec<u64>, AppendError>>,
}

/// The commit lanes, one per stream (keyed by aggregate type, which names
/// exactly one stream).
struct Group {
    config: GroupCommitConfig,
    lanes: Mutex<HashMap<String, mpsc::UnboundedSender<PendingAppend>>>,
    stats: Arc<GroupCommitStats>,
}

/// What group commit has done so far.
#[derive(Debug, Default)]
pub struct GroupCommitStats {
    /// Batches shared by two or more commands.
    pub shared_batches: std::sync::atomic::AtomicU64,
    /// Commands that went out in a shared batch.
    pub shared_commands: std::sync::atomic::AtomicU64,
    /// Shared batches that failed on a conflict or a duplicate and were
    /// appended command by command instead.
    pub split_batches: std::sync::atomic::AtomicU64,
}

impl Group {
    fn lane(
        &self,
        aggregate_type: &str,
        appender: impl FnOnce() -> Appender,
    ) -> mpsc::UnboundedSender<PendingAppend> {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lane) = lanes.get(aggregate_type).filter(|l| !l.is_closed()) {
            return lane.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_lane(
            appender(),
            self.config.clone(),
            self.stats.clone(),
            rx,
        ));
        lanes.insert(aggregate_type.to_string(), tx.clone());
        tx
    }
}

/// Takes queued appends into batches while a batch permit is free. Ends when
/// every sender (the store) is gone.
async fn run_lane(
    appender: Appender,
    config: GroupCommitConfig,
    stats: Arc<GroupCommitStats>,
    mut queue: mpsc::UnboundedReceiver<PendingAppend>,
) {
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let max_messages = config.max_messages.clamp(1, 1000);
    let mut carried: Option<PendingAppend> = None;
    loop {
        let first = match carried.take() {
            Some(append) => append,
            None => match queue.recv().await {
                Some(append) => append,
                None => return,
            },
        };
        // Wait for a batch permit first: commands arriving meanwhile queue
        // up and go out together.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let busy = permits.available_permits() + 1 < config.max_in_flight.max(1);
        let mut size = first.messages.len();
        let mut appends = vec![first];
        let deadline = tokio::time::Instant::now() + config.max_wait;
        while size < max_messages {
            let next = match queue.try_recv() {
                Ok(append) => Some(append),
                Err(_) if busy && !config.max_wait.is_zero() => {
                    tokio::time::timeout_at(deadline, queue.recv())
                        .await
                        .unwrap_or_default()
                }
                Err(_) => None,
            };
            let Some(append) = next else { break };
            if size + append.messages.len() > max_messages {
                carried = Some(append);
                break;
            }
            size += append.messages.len();
            appends.push(append);
        }
        crate::metrics::global().batch(appends.len());
        if appends.len() > 1 {
            use std::sync::atomic::Ordering::Relaxed;
            stats.shared_batches.fetch_add(1, Relaxed);
            stats
                .shared_commands
                .fetch_add(appends.len() as u64, Relaxed);
        }
        let appender = appender.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            appender.commit(appends, &stats).await;
            drop(permit);
        });
    }
}
