//! The command index: accepted commands by id, durable.
//!
//! A durable pull consumer on each event stream reads every event's
//! `Command-Id` header and merges the event into the KV bucket
//! `jetsource_command_index` (key: the command id; the bucket is renamed
//! under a subject prefix, see `Namespace::bucket`). Events already
//! delivered are taken together (up to 256), written one entry per command,
//! and acknowledged by one cumulative ack only after every write; a
//! redelivered event that is already recorded changes nothing, so the index
//! converges after any crash. The command path pays nothing for it: the
//! index trails the streams.
//!
//! Several jetsource processes share each consumer (one durable name), so
//! two events of one command may be indexed by two processes at once; merges
//! use the KV's compare-and-set on the entry's revision.

use crate::{FeedbackError, FeedbackErrorKind};
use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use futures::{FutureExt, StreamExt};
use jetsource_handlers::error::Error;
use jetsource_schemas::feedback::{AggregateEvents, CommandIndexEntry, COMMAND_INDEX_CONSUMER};
use jetsource_schemas::{headers, token, EventRef, Namespace};
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

/// How many times a merge is retried when another writer got there first.
const MERGE_ATTEMPTS: u32 = 16;

/// Index writes in flight at once per stream.
const INDEX_CONCURRENCY: usize = 128;

/// Delivered events indexed together and acknowledged by one cumulative
/// ack (well below a consumer's default 1,000 unacknowledged messages).
const INDEX_BATCH: usize = 256;

/// Tries of one index write before its chunk is left for redelivery.
const RECORD_ATTEMPTS: u32 = 4;

/// The index bucket, and the event streams it follows.
#[derive(Clone)]
pub struct CommandIndex {
    kv: kv::Store,
    js: jetstream::Context,
    /// The streams indexed (set by [`CommandIndex::follows`]).
    streams: Vec<String>,
}

/// Where each indexed stream ended when a question was asked: everything
/// stored up to there, the index must have seen before "not indexed" means
/// "not accepted".
#[derive(Debug, Clone)]
pub struct Marks(Vec<(String, u64)>);

impl CommandIndex {
    /// Opens `namespace`'s bucket, creating it when absent.
    pub async fn open(
        js: &jetstream::Context,
        namespace: &Namespace,
        replicas: usize,
    ) -> Result<Self, FeedbackError> {
        let bucket = namespace.command_index_bucket();
        if let Ok(kv) = js.get_key_value(&bucket).await {
            return Ok(CommandIndex::over(kv, js));
        }
        let created = js
            .create_key_value(kv::Config {
                bucket: bucket.clone(),
                description: "jetsource: accepted commands by id".into(),
                history: 1,
                num_replicas: replicas,
                ..Default::default()
            })
            .await;
        match created {
            Ok(kv) => Ok(CommandIndex::over(kv, js)),
            // Another process created it meanwhile.
            Err(e) => js
                .get_key_value(&bucket)
                .await
                .map(|kv| CommandIndex::over(kv, js))
                .map_err(|_| Error::with_source(FeedbackErrorKind::Index, e)),
        }
    }

    fn over(kv: kv::Store, js: &jetstream::Context) -> Self {
        CommandIndex {
            kv,
            js: js.clone(),
            streams: Vec::new(),
        }
    }

    /// The same index, following `streams` (for [`CommandIndex::marks`]).
    pub fn follows(mut self, streams: Vec<String>) -> Self {
        self.streams = streams;
        self
    }

    /// The last sequence of every indexed stream now.
    pub async fn marks(&self) -> Result<Marks, FeedbackError> {
        let mut marks = Vec::with_capacity(self.streams.len());
        for name in &self.streams {
            let stream = self
                .js
                .get_stream(name)
                .await
                .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e))?;
            marks.push((name.clone(), stream.cached_info().state.last_sequence));
        }
        Ok(Marks(marks))
    }

    /// Whether every event stored up to `marks` has been indexed: the index
    /// consumer of each stream acknowledged up to its mark, or has nothing
    /// left to deliver or see acknowledged.
    pub async fn reached(&self, marks: &Marks) -> Result<bool, FeedbackError> {
        for (name, mark) in &marks.0 {
            let stream = self
                .js
                .get_stream_no_info(name)
                .await
                .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e))?;
            let info = stream
                .consumer_info(COMMAND_INDEX_CONSUMER)
                .await
                .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e))?;
            let idle = info.num_pending == 0 && info.num_ack_pending == 0;
            if !idle && info.ack_floor.stream_sequence < *mark {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The accepted command `command_id` (a validated token), if indexed.
    pub async fn get(&self, command_id: &str) -> Result<Option<CommandIndexEntry>, FeedbackError> {
        let value = self
            .kv
            .get(command_id)
            .await
            .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e))?;
        match value {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e)),
            None => Ok(None),
        }
    }

    /// Merges `events` (in stream order) of aggregate `aggregate_type`
    /// `aggregate_id` into the entry of `command_id`, beside (never into)
    /// other aggregates' events under the same id; a no-op when they are
    /// already there.
    pub async fn record(
        &self,
        command_id: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        events: &[EventRef],
    ) -> Result<(), FeedbackError> {
        let index_error = |e| Error::with_source(FeedbackErrorKind::Index, e);
        let part = || AggregateEvents {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            events: events.to_vec(),
        };
        // Nearly every command id is new: try creating its entry first, one
        // round trip; only an id already indexed is read and merged.
        let first = serde_json::to_vec(&CommandIndexEntry::new(part())).map_err(index_error)?;
        match self.kv.create(command_id, first.into()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::with_source(FeedbackErrorKind::Index, e)),
        }
        for _ in 0..MERGE_ATTEMPTS {
            let current = self
                .kv
                .entry(command_id)
                .await
                .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e))?
                .filter(|e| e.operation == kv::Operation::Put);
            let part = part();
            // Each aggregate's events stay apart: the same id on another
            // aggregate is another command (see `AcceptedStatus`).
            let (entry, revision) = match current {
                Some(found) => {
                    let mut entry = serde_json::from_slice::<CommandIndexEntry>(&found.value)
                        .map_err(index_error)?;
                    if !entry.merge(part) {
                        return Ok(());
                    }
                    (entry, Some(found.revision))
                }
                None => (CommandIndexEntry::new(part), None),
            };
            let body = serde_json::to_vec(&entry).map_err(index_error)?;
            let written = match revision {
                Some(revision) => match self.kv.update(command_id, body.into(), revision).await {
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                    other => other
                        .map(|_| ())
                        .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e)),
                },
                None => match self.kv.create(command_id, body.into()).await {
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => continue,
                    other => other
                        .map(|_| ())
                        .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e)),
                },
            };
            return written;
        }
        Err(Error::new(
            FeedbackErrorKind::Index,
            format!("command {command_id}: too many concurrent index writers"),
        ))
    }
}

/// Creates (or finds) the index consumer on `aggregate_type`'s stream in
/// `namespace`. Its durable name needs no prefix: it is scoped by the
/// stream, which is the namespace's.
async fn consumer(
    js: &jetstream::Context,
    namespace: &Namespace,
    aggregate_type: &str,
) -> Result<jetstream::consumer::Consumer<pull::Config>, FeedbackError> {
    let filter = namespace
        .type_filter(aggregate_type)
        .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e))?;
    let stream = js
        .get_stream(namespace.stream_name(aggregate_type))
        .await
        .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e))?;
    stream
        .get_or_create_consumer(
            COMMAND_INDEX_CONSUMER,
            pull::Config {
                durable_name: Some(COMMAND_INDEX_CONSUMER.into()),
                description: Some("jetsource: accepted commands by id".into()),
                filter_subject: filter,
                // Cumulative: a chunk is indexed, then acknowledged by
                // its last event (see `follow`).
                ack_policy: AckPolicy::All,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e))
}

/// Checks the index consumer of `aggregate_type` can be created (a start-up
/// failure is reported rather than retried forever in the background), and
/// has events taken but not acknowledged before (a process stopped or died
/// holding them) delivered again at once rather than after the ack wait:
/// until they are indexed, their commands would read as not indexed.
/// Indexing is idempotent, so a peer's events delivered again cost nothing
/// but the work.
pub(crate) async fn prepare(
    js: &jetstream::Context,
    namespace: &Namespace,
    aggregate_type: &str,
) -> Result<(), FeedbackError> {
    let mut consumer = consumer(js, namespace, aggregate_type).await?;
    let info = consumer
        .info()
        .await
        .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e))?;
    if info.num_ack_pending > 0 {
        let stream = js
            .get_stream_no_info(namespace.stream_name(aggregate_type))
            .await
            .map_err(|e| Error::with_source(FeedbackErrorKind::Index, e))?;
        if let Err(e) = stream.reset_consumer(COMMAND_INDEX_CONSUMER, None).await {
            tracing::warn!(error = %e, aggregate_type, "command index: cannot rewind to the ack floor; unacknowledged events come back after the ack wait");
        }
    }
    Ok(())
}

/// Indexes `aggregate_type`'s events until `stop` turns true; reconnects
/// after errors.
pub(crate) async fn follow(
    js: jetstream::Context,
    namespace: Namespace,
    index: CommandIndex,
    aggregate_type: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    let stream = namespace.stream_name(aggregate_type);
    async move {
        loop {
            let followed = match consumer(&js, &namespace, aggregate_type).await {
                Ok(mut consumer) => {
                    // A consumer created before acks were cumulative keeps
                    // its policy (JetStream cannot change it): ack each.
                    let each = consumer
                        .info()
                        .await
                        .map(|info| info.config.ack_policy != AckPolicy::All)
                        .unwrap_or(true);
                    consumer
                        .messages()
                        .await
                        .map(|messages| (messages, each))
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match followed {
                Ok((messages, ack_each)) => {
                    let mut messages = messages.peekable();
                    loop {
                        let first = tokio::select! {
                            _ = stop.wait_for(|s| *s) => return,
                            first = messages.next() => first,
                        };
                        let mut chunk = match first {
                            Some(Ok(message)) => vec![message],
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "command index: consumer error");
                                break;
                            }
                            None => break,
                        };
                        // Whatever else is already delivered goes with it.
                        while chunk.len() < INDEX_BATCH {
                            match messages.next().now_or_never() {
                                Some(Some(Ok(message))) => chunk.push(message),
                                _ => break,
                            }
                        }
                        let indexed = tokio::select! {
                            _ = stop.wait_for(|s| *s) => return,
                            indexed = index_chunk(&index, &namespace, &stream, &chunk) => indexed,
                        };
                        if !indexed {
                            // Not stored: nothing is acknowledged, the chunk
                            // comes back after the ack wait.
                            break;
                        }
                        ack(&chunk, ack_each).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "command index: cannot consume"),
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
    .instrument(tracing::info_span!("command_index", aggregate_type))
    .await
}

/// Acknowledges an indexed chunk: its last message alone when the consumer
/// acks cumulatively (one ack instead of one per event).
async fn ack(chunk: &[jetstream::Message], each: bool) {
    let acked = if each {
        chunk
    } else {
        &chunk[chunk.len().saturating_sub(1)..]
    };
    for message in acked {
        if let Err(e) = message.ack().await {
            tracing::warn!(error = %e, "command index: ack failed, will be redelivered");
        }
    }
}

/// One command's events in a chunk, on one aggregate.
struct Part {
    command_id: String,
    aggregate_type: String,
    aggregate_id: String,
    events: Vec<EventRef>,
}

/// What of `message` the index records: its command id, aggregate and
/// event; `None` for an event without a valid command id or subject.
fn indexed<'a>(
    namespace: &Namespace,
    stream: &str,
    message: &'a jetstream::Message,
) -> Option<(String, &'a str, &'a str, EventRef)> {
    let seq = message.info().ok()?.stream_sequence;
    let command_id = message.headers.as_ref()?.get(headers::COMMAND_ID)?.as_str();
    let parsed = namespace.parse_event(message.subject.as_str())?;
    if token::validate("command id", command_id).is_err()
        || token::validate("aggregate id", parsed.aggregate_id).is_err()
        || token::validate("event type", parsed.event_type).is_err()
    {
        return None;
    }
    let event = EventRef {
        event_type: parsed.event_type.to_string(),
        stream: stream.to_string(),
        seq,
        aggregate_id: None,
    };
    Some((
        command_id.to_string(),
        parsed.aggregate_type,
        parsed.aggregate_id,
        event,
    ))
}

/// Records a chunk of delivered events: one write per command and
/// aggregate (a command's events usually arrive together), up to
/// [`INDEX_CONCURRENCY`] at once, each retried a few times. False when one
/// could not be stored.
async fn index_chunk(
    index: &CommandIndex,
    namespace: &Namespace,
    stream: &str,
    chunk: &[jetstream::Message],
) -> bool {
    let mut parts: Vec<Part> = Vec::new();
    let mut at: std::collections::HashMap<(String, &str, &str), usize> = Default::default();
    for message in chunk {
        let Some((command_id, aggregate_type, aggregate_id, event)) =
            indexed(namespace, stream, message)
        else {
            continue;
        };
        match at.entry((command_id, aggregate_type, aggregate_id)) {
            std::collections::hash_map::Entry::Occupied(found) => {
                parts[*found.get()].events.push(event)
            }
            std::collections::hash_map::Entry::Vacant(vacant) => {
                let command_id = vacant.key().0.clone();
                vacant.insert(parts.len());
                parts.push(Part {
                    command_id,
                    aggregate_type: aggregate_type.to_string(),
                    aggregate_id: aggregate_id.to_string(),
                    events: vec![event],
                });
            }
        }
    }
    let mut writes = futures::stream::iter(parts.into_iter().map(|part| record_part(index, part)))
        .buffer_unordered(INDEX_CONCURRENCY);
    let mut stored = true;
    while let Some(recorded) = writes.next().await {
        stored &= recorded;
    }
    stored
}

/// Records one part, retrying with a growing delay; false when it could not.
async fn record_part(index: &CommandIndex, part: Part) -> bool {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=RECORD_ATTEMPTS {
        match index
            .record(
                &part.command_id,
                &part.aggregate_type,
                &part.aggregate_id,
                &part.events,
            )
            .await
        {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, attempt, command_id = %part.command_id, "command index: not recorded, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    false
}
