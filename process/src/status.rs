//! A process manager's status, read from JetStream itself: where each of
//! its consumers is, how many instances wait, how many deadlines are held
//! and how many triggers are parked.
//!
//! Read from the server, not asked of a running process, so it is the
//! same whichever process (or none) runs the manager, and a stall shows:
//! a trigger retried again and again holds its consumer (`in_hand` stays
//! 1, `applied_seq` stays) while `pending` grows behind it; `redelivered`
//! counts triggers a process took and died with.

use crate::error::{ProcessError, ProcessErrorKind};
use crate::names::Names;
use crate::parked::PARKED_PREFIX;
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, stream};
use futures::{StreamExt, TryStreamExt};
use jetsource_schemas::error::Error;
use jetsource_schemas::Namespace;
use serde::{Deserialize, Serialize};

/// One process manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    /// Its name.
    pub name: String,
    /// `waiting` (never run: no consumer yet), `live` (every consumer has
    /// nothing left), or `behind` (triggers to react to).
    pub phase: ProcessPhase,
    /// Each event stream followed, then its fired deadlines.
    pub consumers: Vec<ConsumerStatus>,
    /// Instances with state (started, not ended).
    pub instances: u64,
    /// Deadlines set and not come yet.
    pub pending_deadlines: u64,
    /// Triggers parked (see `jetsource process parked`).
    pub parked: u64,
}

/// See [`ProcessStatus::phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessPhase {
    /// It never ran: its consumers do not exist yet.
    Waiting,
    /// Nothing left to react to.
    Live,
    /// Triggers wait to be reacted to.
    Behind,
}

/// One of its consumers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerStatus {
    /// The stream (`EVT_BLOGPOST`, or `pm_<name>_deadlines`).
    pub stream: String,
    /// The stream's last sequence.
    pub stream_last_seq: u64,
    /// Every trigger up to this stream sequence is done.
    pub applied_seq: u64,
    /// Triggers it follows not delivered yet.
    pub pending: u64,
    /// Triggers delivered and not done (at most one).
    pub in_hand: u64,
    /// Of those, delivered more than once.
    pub redelivered: u64,
}

fn jetstream_error(e: impl Into<async_nats::Error>) -> ProcessError {
    Error::with_source(ProcessErrorKind::JetStream, e.into())
}

/// The status of manager `name` of `namespace`, following the events of
/// `aggregate_types`.
pub async fn status(
    client: &async_nats::Client,
    namespace: &Namespace,
    name: &str,
    aggregate_types: &[&str],
) -> Result<ProcessStatus, ProcessError> {
    let names = Names::new(namespace.clone(), name)
        .map_err(|m| Error::new(ProcessErrorKind::InvalidName, m))?;
    let js = jetstream::new(client.clone());
    let mut streams: Vec<String> = aggregate_types
        .iter()
        .map(|t| namespace.stream_name(t))
        .collect();
    streams.push(names.deadlines_stream());
    let mut consumers = Vec::with_capacity(streams.len());
    for stream_name in streams {
        match consumer_status(&js, &stream_name, &names.durable()).await? {
            Some(status) => consumers.push(status),
            None => {
                return Ok(ProcessStatus {
                    name: name.to_string(),
                    phase: ProcessPhase::Waiting,
                    consumers,
                    instances: 0,
                    pending_deadlines: 0,
                    parked: 0,
                })
            }
        }
    }
    let (instances, parked) = count_entries(&js, &names).await?;
    let pending_deadlines = count_subjects(&js, &names).await?;
    let phase = if consumers.iter().any(|c| c.pending + c.in_hand > 0) {
        ProcessPhase::Behind
    } else {
        ProcessPhase::Live
    };
    Ok(ProcessStatus {
        name: name.to_string(),
        phase,
        consumers,
        instances,
        pending_deadlines,
        parked,
    })
}

/// Consumer `durable` of `stream_name`, `None` when either does not exist.
async fn consumer_status(
    js: &jetstream::Context,
    stream_name: &str,
    durable: &str,
) -> Result<Option<ConsumerStatus>, ProcessError> {
    let Some(mut stream) = existing_stream(js, stream_name).await? else {
        return Ok(None);
    };
    let last = stream
        .info()
        .await
        .map_err(jetstream_error)?
        .state
        .last_sequence;
    let info = match stream.consumer_info(durable).await {
        Ok(info) => info,
        Err(e) => match e.kind() {
            ConsumerInfoErrorKind::NotFound => return Ok(None),
            ConsumerInfoErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND =>
            {
                return Ok(None)
            }
            _ => return Err(jetstream_error(e)),
        },
    };
    Ok(Some(ConsumerStatus {
        stream: stream_name.to_string(),
        stream_last_seq: last,
        applied_seq: info.ack_floor.stream_sequence,
        pending: info.num_pending,
        in_hand: info.num_ack_pending as u64,
        redelivered: info.num_redelivered as u64,
    }))
}

/// Stream `name`, `None` when it does not exist.
async fn existing_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Stream>, ProcessError> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Ok(None)
            }
            _ => Err(jetstream_error(e)),
        },
    }
}

/// Instances and parked triggers in the manager's bucket.
async fn count_entries(js: &jetstream::Context, names: &Names) -> Result<(u64, u64), ProcessError> {
    let kv = match js.get_key_value(names.bucket()).await {
        Ok(kv) => kv,
        Err(e) if e.kind() == jetstream::context::KeyValueErrorKind::GetBucket => {
            return Ok((0, 0))
        }
        Err(e) => return Err(jetstream_error(e)),
    };
    let mut keys = kv.keys().await.map_err(jetstream_error)?;
    let (mut instances, mut parked) = (0, 0);
    while let Some(key) = keys.try_next().await.map_err(jetstream_error)? {
        if key.starts_with(PARKED_PREFIX) {
            parked += 1;
        } else {
            instances += 1;
        }
    }
    Ok((instances, parked))
}

/// Deadlines held: messages on the manager's held-deadline subjects.
async fn count_subjects(js: &jetstream::Context, names: &Names) -> Result<u64, ProcessError> {
    let Some(stream) = existing_stream(js, &names.deadlines_stream()).await? else {
        return Ok(0);
    };
    let mut subjects = stream
        .info_with_subjects(names.scheduled_filter())
        .await
        .map_err(jetstream_error)?;
    let mut held = 0u64;
    while let Some(subject) = subjects.next().await {
        held += subject.map_err(jetstream_error)?.1 as u64;
    }
    Ok(held)
}
