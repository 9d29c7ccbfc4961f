//! Reading a batch's documents: one ADR-31 batched direct get
//! (`multi_last`, nats-server 2.11+) per 1,024 keys, where the bucket allows
//! direct gets; one KV get per key where it does not (or the server cannot).
//!
//! A batched get stops at [`READ_BATCH_BYTES`] so a burst of large
//! documents stays far below the server's slow-consumer limit; the keys it
//! did not bring are asked again until an answer brings none of them: those
//! have no entry. (Whether an answer was cut short is not asked of its
//! end-of-batch counts, which `multi_last` does not document.)

use crate::error::{ProjectionError, ProjectionErrorKind};
use async_nats::jetstream::kv;
use async_nats::Client;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use jetsource_schemas::error::Error;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The most subjects one `multi_last` request may name (more is 413).
const MULTI_LAST_MAX: usize = 1024;

/// The most bytes one batched get brings.
pub(crate) const READ_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How long to wait for each message of an answer.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// Gets one at a time, when a batched get cannot be used.
const GETS_IN_FLIGHT: usize = 256;

/// A key's entry as read: its revision (0: none ever) and its value
/// (`None`: none, deleted or purged).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Read {
    pub(crate) revision: u64,
    pub(crate) value: Option<Bytes>,
}

/// Reads entries of one bucket, batched while the server takes it.
#[derive(Debug, Default)]
pub(crate) struct DocumentReads {
    /// Set once a batched get failed in a way that says it never will
    /// work here (direct gets off, an older server): one get per key.
    unbatched: AtomicBool,
}

impl DocumentReads {
    /// The current entries of `keys` in `kv`.
    pub(crate) async fn read(
        &self,
        client: &Client,
        kv: &kv::Store,
        keys: Vec<String>,
    ) -> Result<HashMap<String, Read>, ProjectionError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        if kv.stream.cached_info().config.allow_direct && !self.unbatched.load(Ordering::Relaxed) {
            let mut read = HashMap::with_capacity(keys.len());
            let mut batched = true;
            for chunk in keys.chunks(MULTI_LAST_MAX) {
                match batched_get(client, kv, chunk).await {
                    Ok(entries) => read.extend(entries),
                    Err(Unbatched::Never(why)) => {
                        tracing::info!(bucket = %kv.name, %why, "reading documents one get each");
                        self.unbatched.store(true, Ordering::Relaxed);
                        batched = false;
                        break;
                    }
                    Err(Unbatched::Failed(e)) => return Err(e),
                }
            }
            if batched {
                return Ok(read);
            }
        }
        one_by_one(kv, keys).await
    }
}

/// Why a batched get gave no answer.
enum Unbatched {
    /// It cannot work with this bucket or server.
    Never(String),
    /// It failed this time.
    Failed(ProjectionError),
}

fn store_error(what: impl Into<String>) -> Unbatched {
    Unbatched::Failed(Error::new(ProjectionErrorKind::Store, what.into()))
}

/// The entries of `keys` (at most [`MULTI_LAST_MAX`]) by `multi_last`.
async fn batched_get(
    client: &Client,
    kv: &kv::Store,
    keys: &[String],
) -> Result<HashMap<String, Read>, Unbatched> {
    let subjects: HashMap<String, &String> = keys
        .iter()
        .map(|key| (format!("{}{key}", kv.prefix), key))
        .collect();
    let api = format!("$JS.API.DIRECT.GET.{}", kv.stream_name);
    let mut read = HashMap::with_capacity(keys.len());
    let mut left: HashSet<&String> = subjects.keys().collect();
    while !left.is_empty() {
        let asked: Vec<&String> = left.iter().copied().collect();
        let request = serde_json::json!({
            "multi_last": asked,
            "batch": asked.len(),
            "max_bytes": READ_BATCH_BYTES,
        });
        let inbox = client.new_inbox();
        let mut answers = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| store_error(format!("no reply subscription: {e}")))?;
        client
            .publish_with_reply(api.clone(), inbox, Bytes::from(request.to_string()))
            .await
            .map_err(|e| store_error(format!("the batched get was not sent: {e}")))?;
        let mut got = 0;
        loop {
            let message = match tokio::time::timeout(ANSWER_WAIT, answers.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => return Err(store_error("the reply subscription ended")),
                Err(_) => return Err(store_error(format!("no answer from {api}"))),
            };
            match message.status.map(|s| s.as_u16()) {
                // Nothing (more) on these subjects; the end of the batch.
                Some(404) | Some(204) => break,
                // No responders: direct gets are off for this stream.
                Some(503) => return Err(Unbatched::Never(format!("no responders for {api}"))),
                Some(408) => return Err(store_error("the batched get timed out")),
                Some(code) if code != 200 => {
                    // An older server refuses the request's fields.
                    return Err(Unbatched::Never(format!(
                        "{api} answered {code} {}",
                        message.description.unwrap_or_default()
                    )));
                }
                _ => {}
            }
            let headers = message.headers.clone().unwrap_or_default();
            let (Some(subject), Some(seq)) = (
                headers.get("Nats-Subject").map(|v| v.as_str().to_string()),
                headers
                    .get("Nats-Sequence")
                    .and_then(|v| v.as_str().parse::<u64>().ok()),
            ) else {
                return Err(store_error(
                    "a direct get message without subject or sequence",
                ));
            };
            let Some(key) = subjects.get(&subject) else {
                continue;
            };
            // A delete or purge marker, or one the server left for a
            // removed or expired entry.
            let removed = headers
                .get("KV-Operation")
                .is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"))
                || headers.get("Nats-Marker-Reason").is_some();
            read.insert(
                (*key).clone(),
                Read {
                    revision: seq,
                    value: (!removed).then(|| message.payload.clone()),
                },
            );
            left.remove(&subject);
            got += 1;
        }
        if got == 0 {
            // Every key left has no entry.
            break;
        }
    }
    for key in keys {
        read.entry(key.clone()).or_insert(Read {
            revision: 0,
            value: None,
        });
    }
    Ok(read)
}

/// The entries of `keys`, one KV get each, concurrently.
async fn one_by_one(
    kv: &kv::Store,
    keys: Vec<String>,
) -> Result<HashMap<String, Read>, ProjectionError> {
    futures::stream::iter(keys)
        .map(|key| async move {
            let entry = kv
                .entry(key.clone())
                .await
                .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
            let read = match entry {
                Some(entry) if entry.operation == kv::Operation::Put => Read {
                    revision: entry.revision,
                    value: Some(entry.value),
                },
                other => Read {
                    revision: other.map_or(0, |e| e.revision),
                    value: None,
                },
            };
            Ok::<_, ProjectionError>((key, read))
        })
        .buffer_unordered(GETS_IN_FLIGHT)
        .try_collect()
        .await
}
