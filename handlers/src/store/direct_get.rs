//! ADR-31 direct gets: a batch of an aggregate's messages, or the one at a
//! stream sequence, answered over the store's reply mux.

use super::errors::{LoadError, LoadErrorKind};
use super::event::StoredEvent;
use super::reply_mux::{ReplyMux, ReplyWaiter};
use crate::error::Error;
use async_nats::Client;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The most bytes one batch brings: the server stops there and says how
/// many events remain, so a burst stays far below its slow-consumer limit
/// (`max_pending`, 64 MiB by default) however large the events are.
pub const LOAD_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// What one batched direct get brought.
pub(crate) struct DirectBatch {
    pub(crate) events: Vec<StoredEvent>,
    /// Messages on the filter after this batch.
    pub(crate) pending: u64,
    /// The stream sequence to ask for next.
    pub(crate) next: u64,
}

/// Direct gets on one connection, counted in `requests` (batches only).
#[derive(Clone, Copy)]
pub(crate) struct DirectGet<'a> {
    pub(crate) client: &'a Client,
    pub(crate) mux: &'a Arc<ReplyMux>,
    /// How long to wait for any one answer.
    pub(crate) timeout: Duration,
    pub(crate) requests: &'a AtomicU64,
}

impl DirectGet<'_> {
    /// Sends a direct-get request to `api`; the answers come to the
    /// waiter.
    async fn send(&self, api: &str, request: serde_json::Value) -> Result<ReplyWaiter, LoadError> {
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
    pub(crate) async fn batch(
        &self,
        api: &str,
        filter: &str,
        from: u64,
        batch: usize,
    ) -> Result<DirectBatch, LoadError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let request = serde_json::json!({"seq": from, "next_by_subj": filter, "batch": batch, "max_bytes": LOAD_BATCH_BYTES});
        let mut waiter = self.send(api, request).await?;
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

    /// The subject of the message at stream sequence `seq`, `None` when
    /// there is none.
    pub(crate) async fn subject_at(
        &self,
        api: &str,
        seq: u64,
    ) -> Result<Option<String>, LoadError> {
        let mut waiter = self.send(api, serde_json::json!({ "seq": seq })).await?;
        let message = self.answer(api, &mut waiter).await?;
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
}
