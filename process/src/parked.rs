//! Parked triggers: a trigger that can never be reacted to (an event that
//! does not decode into what the manager follows, a fired deadline that
//! does not read) is kept with its error in the manager's bucket under
//! `parked.<stream>.<seq>`, and the consumer goes on with the next one.
//! Instance keys are tokens without dots, so the two never meet.

use crate::error::{ProcessError, ProcessErrorKind};
use crate::names::Names;
use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use jetsource_schemas::error::Error;
use serde::{Deserialize, Serialize};

/// Where parked triggers' keys start.
pub const PARKED_PREFIX: &str = "parked.";

use jetsource_projector::parked::kept_body;
/// How much of a parked trigger's body its record keeps, as for a
/// projector's parked event: the record must fit in one KV value whatever
/// the message's size (the message stays whole in its stream).
pub use jetsource_projector::parked::PARKED_BODY_BYTES;

/// One parked trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedTrigger {
    /// The manager that could not react to it.
    pub manager: String,
    /// Its stream (an event stream, or the manager's deadlines stream).
    pub stream: String,
    /// Its stream sequence.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// Why it cannot be reacted to.
    pub error: String,
    /// When it was parked, RFC 3339 UTC.
    pub parked_at: String,
    /// Its body, the first [`PARKED_BODY_BYTES`] of it.
    pub body: String,
}

pub(crate) fn key(stream: &str, seq: u64) -> String {
    format!("{PARKED_PREFIX}{stream}.{seq}")
}

/// Parks `message` (again, when it was: the key is its position).
pub(crate) async fn park(
    kv: &kv::Store,
    names: &Names,
    message: &jetstream::Message,
    error: &ProcessError,
) -> Result<(), ProcessError> {
    let (stream, seq) = match message.info() {
        Ok(info) => (info.stream.to_string(), info.stream_sequence),
        Err(e) => {
            return Err(Error::with_message_and_source(
                ProcessErrorKind::Corrupt,
                format!("{} carries no position", message.subject),
                e,
            ))
        }
    };
    let parked = ParkedTrigger {
        manager: names.name().to_string(),
        stream: stream.clone(),
        seq,
        subject: message.subject.to_string(),
        error: jetsource_schemas::reply::bounded_reason(error.to_string()),
        parked_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        body: kept_body(&message.payload),
    };
    let value = serde_json::to_vec(&parked)
        .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))?;
    kv.put(key(&stream, seq), value.into())
        .await
        .map(|_| ())
        .map_err(|e| Error::with_source(ProcessErrorKind::JetStream, e))
}

/// Every trigger parked in `kv`, by stream and sequence.
pub(crate) async fn list_from(kv: &kv::Store) -> Result<Vec<ParkedTrigger>, ProcessError> {
    let jetstream = |e: async_nats::Error| Error::with_source(ProcessErrorKind::JetStream, e);
    let keys: Vec<String> = kv
        .keys()
        .await
        .map_err(|e| jetstream(e.into()))?
        .try_filter(|k| std::future::ready(k.starts_with(PARKED_PREFIX)))
        .try_collect()
        .await
        .map_err(|e| jetstream(e.into()))?;
    let mut parked = Vec::with_capacity(keys.len());
    for k in keys {
        if let Some(value) = kv.get(k.as_str()).await.map_err(|e| jetstream(e.into()))? {
            let record: ParkedTrigger = serde_json::from_slice(&value).map_err(|e| {
                Error::with_message_and_source(
                    ProcessErrorKind::Corrupt,
                    format!("{k} does not read"),
                    e,
                )
            })?;
            parked.push(record);
        }
    }
    parked.sort_by(|a, b| (&a.stream, a.seq).cmp(&(&b.stream, b.seq)));
    Ok(parked)
}

/// The triggers parked for manager `name` of `namespace` (none when it
/// never ran).
pub async fn list(
    client: &async_nats::Client,
    namespace: &jetsource_schemas::Namespace,
    name: &str,
) -> Result<Vec<ParkedTrigger>, ProcessError> {
    let names = Names::new(namespace.clone(), name)
        .map_err(|m| Error::new(ProcessErrorKind::InvalidName, m))?;
    let js = jetstream::new(client.clone());
    match js.get_key_value(names.bucket()).await {
        Ok(kv) => list_from(&kv).await,
        Err(e) if e.kind() == jetstream::context::KeyValueErrorKind::GetBucket => Ok(Vec::new()),
        Err(e) => Err(Error::with_source(ProcessErrorKind::JetStream, e)),
    }
}

/// Asks a process running manager `name` of `namespace` to react to its
/// parked triggers again (see [`crate::runtime::control`]).
pub async fn replay_in(
    client: &async_nats::Client,
    namespace: &jetsource_schemas::Namespace,
    name: &str,
    timeout: std::time::Duration,
) -> Result<jetsource_projector::control::ReplaySummary, ProcessError> {
    ask(
        client,
        namespace,
        name,
        "replay-parked",
        Vec::new(),
        timeout,
    )
    .await
}

/// Asks a process running manager `name` of `namespace` to give up its
/// parked trigger `parked` for good.
pub async fn skip_in(
    client: &async_nats::Client,
    namespace: &jetsource_schemas::Namespace,
    name: &str,
    parked: &jetsource_projector::control::SkipRequest,
    timeout: std::time::Duration,
) -> Result<jetsource_projector::control::SkipOutcome, ProcessError> {
    let body =
        serde_json::to_vec(parked).map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))?;
    ask(client, namespace, name, "skip-parked", body, timeout).await
}

async fn ask<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    namespace: &jetsource_schemas::Namespace,
    name: &str,
    action: &str,
    body: Vec<u8>,
    timeout: std::time::Duration,
) -> Result<T, ProcessError> {
    let names = Names::new(namespace.clone(), name)
        .map_err(|m| Error::new(ProcessErrorKind::InvalidName, m))?;
    let request = async_nats::Request::new()
        .payload(body.into())
        .timeout(Some(timeout));
    let answer = client
        .send_request(names.control(action), request)
        .await
        .map_err(|e| {
            Error::with_message_and_source(
                ProcessErrorKind::JetStream,
                format!("no process running manager {name} answered"),
                e,
            )
        })?;
    serde_json::from_slice(&answer.payload)
        .map_err(|e| Error::with_source(ProcessErrorKind::Corrupt, e))
}
