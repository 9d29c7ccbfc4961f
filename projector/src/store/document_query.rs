//! The built-in queries of a document projection (see
//! [`crate::document`]'s `answer` for the wire), served from its bucket.
//! Every document present throughout the paging is listed exactly once.
//!
//! A list page takes the keys after the cursor from the generation's key
//! index (see `key_index`: O(log N + page), the keys of the generation
//! held in memory once it was listed) and reads those documents, a
//! batched get per 1,024 keys, stopping once what it read fills the
//! answer's budget.

use super::documents::{DocumentStore, Entry};
use crate::document::{self, Asked, DocumentProjector};
use crate::projector::{Query, QueryError};
use async_nats::jetstream::kv;
use serde_json::json;

/// Items a list page holds when the request names no limit (unless the
/// projection says otherwise, [`DocumentProjector::LIST_DEFAULT`]).
pub const DEFAULT_LIMIT: usize = 100;
/// The most items a list page holds (unless the projection says
/// otherwise, [`DocumentProjector::LIST_MAX`]).
pub const MAX_LIMIT: usize = 50_000;

pub(super) async fn answer<P: DocumentProjector>(
    store: &DocumentStore<P>,
    generation: u64,
    query: Query,
) -> Result<serde_json::Value, QueryError> {
    match Asked::parse(&store.projector, &query)? {
        Asked::Get(key) => {
            let Some(kv) = store.bucket(generation).await else {
                return Err(document::answer_not_found(&key));
            };
            match read(&kv, &key).await? {
                Some(doc) => Ok(doc),
                None => Err(document::answer_not_found(&key)),
            }
        }
        Asked::List { after, limit } => {
            let Some(kv) = store.bucket(generation).await else {
                return Ok(json!({"items": [], "next": null}));
            };
            list(
                store,
                generation,
                &kv,
                after.as_deref(),
                limit,
                query.budget,
            )
            .await
        }
    }
}

/// The document at `key` as JSON; `None` when missing or deleted.
async fn read(kv: &kv::Store, key: &str) -> Result<Option<serde_json::Value>, QueryError> {
    let entry = kv
        .entry(key)
        .await
        .map_err(|e| QueryError::unavailable(format!("the documents cannot be read: {e}")))?;
    let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
        return Ok(None);
    };
    decode(key, &entry.value)
}

fn decode(key: &str, value: &[u8]) -> Result<Option<serde_json::Value>, QueryError> {
    let stored: Entry<serde_json::Value> = serde_json::from_slice(value)
        .map_err(|e| QueryError::unavailable(format!("document {key} does not decode: {e}")))?;
    Ok(stored.doc)
}

/// Keys a list page reads at a time before it checks whether what it has
/// already fills the answer.
const READ_CHUNK: usize = 1024;

async fn list<P: DocumentProjector>(
    store: &DocumentStore<P>,
    generation: u64,
    kv: &kv::Store,
    after: Option<&str>,
    limit: usize,
    budget: usize,
) -> Result<serde_json::Value, QueryError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        QueryError::unavailable(format!("the documents cannot be listed: {e}"))
    };
    let info = kv.stream.get_info().await.map_err(|e| unavailable(&e))?;
    let index = store
        .key_index(generation, kv, info.created)
        .await
        .map_err(|e| unavailable(&e))?;
    index
        .caught_up(info.state.last_sequence, store.config.query_wait)
        .await
        .map_err(|e| unavailable(&e))?;
    // One more than the page says whether another page follows.
    let mut candidates = index.after(after, limit.saturating_add(1));
    let mut more = candidates.len() > limit;
    candidates.truncate(limit);
    // Read in chunks and stop once the documents read would overflow the
    // answer: a page of 50,000 small documents is cut by the budget long
    // before its limit, and reading the rest would only delay the answer.
    let mut docs: Vec<(String, Option<serde_json::Value>)> = Vec::new();
    let mut used = 0usize;
    let mut chunks = candidates.chunks(READ_CHUNK).peekable();
    while let Some(chunk) = chunks.next() {
        // One batched get per chunk (see `document_reads`).
        let mut read = store
            .reads
            .read(&store.js.client(), kv, chunk.to_vec())
            .await
            .map_err(|e| unavailable(&e))?;
        for key in chunk {
            let (doc, size) = match read.remove(key).and_then(|r| r.value) {
                Some(value) => (decode(key, &value)?, value.len() + key.len()),
                None => (None, 0),
            };
            used = used.saturating_add(size);
            docs.push((key.clone(), doc));
        }
        if used > budget && chunks.peek().is_some() {
            more = true;
            break;
        }
    }
    Ok(document::page(&store.projector, docs, more, limit, budget))
}
