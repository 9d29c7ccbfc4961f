//! Publishing one command's messages: a single publish, or an ADR-50
//! atomic batch, with the acks parsed here.

use super::errors::{classify, request_error, ApiError, AppendError, AppendErrorKind};
use super::reply_mux::ReplyMux;
use crate::error::Error;
use async_nats::header::HeaderMap;
use async_nats::{Client, Request};
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

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

/// Parses an ack; `Ok(None)` is the zero-byte ack of a message inside a batch.
fn parse_ack(payload: &[u8]) -> Result<Option<PubAck>, AppendError> {
    if payload.is_empty() {
        return Ok(None);
    }
    let mut ack: PubAck = serde_json::from_slice(payload)
        .map_err(|e| Error::with_source(AppendErrorKind::Refused, e))?;
    match ack.error.take() {
        Some(err) => Err(Error::with_source(classify(&err), err)),
        None => Ok(Some(ack)),
    }
}

/// Publishes appends over one connection, each command on its own.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    pub(crate) client: Client,
    pub(crate) mux: Arc<ReplyMux>,
    /// How long to wait for an ack.
    pub(crate) timeout: Duration,
}

impl Publisher {
    /// One command on its own: a single publish, or its own atomic batch.
    pub(crate) async fn direct(
        &self,
        mut messages: Vec<Outgoing>,
    ) -> Result<Vec<u64>, AppendError> {
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
            _ => Box::pin(self.batch(messages.iter(), true)).await,
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
    /// sequences, which are consecutive. With `flush`, the messages are
    /// handed to the socket before the ack is awaited: a command's own
    /// batch otherwise waits on the connection's write buffering (a
    /// two-event batch took 17 ms a command on a flushing server, 5 ms
    /// flushed, one client sending one command after another). Group
    /// commit's shared batches keep the way their figures were measured.
    pub(crate) async fn batch<'a>(
        &self,
        messages: impl ExactSizeIterator<Item = &'a Outgoing>,
        flush: bool,
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
        if flush {
            // Bounded like the ack: a connection that is down does not
            // flush until it is back. A failed flush leaves the ack to
            // tell what happened.
            let _ = tokio::time::timeout_at(deadline, self.client.flush()).await;
        }
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
}
