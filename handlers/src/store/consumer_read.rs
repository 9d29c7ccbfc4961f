//! Reading the long tail of a history through a short-lived pull consumer.
//!
//! A direct get answers every event with six headers the server writes for
//! it (stream, subject, sequence, time stamp, pending count, last sequence);
//! the client then parses those along with the event's own. A consumer
//! delivers the stored message as it is and puts its position in the reply
//! subject. Reading 10,000 events as jetsource writes them took 108–149 ms
//! by batched direct get and 58–94 ms this way, consumer creation included
//! (`jetsource bench`, `cold_load`). Creating a consumer costs a round
//! trip, and in a cluster a proposal to the meta leader, so the store reads
//! a first batch by direct get and comes here only when many events remain
//! (see [`super::CONSUMER_MIN_PENDING`]).
//!
//! The consumer is ephemeral, in memory, with one replica and no acks. It is
//! deleted as soon as the read ends, however it ends; should that request be
//! lost, the server removes it after [`INACTIVE_THRESHOLD`] without pulls.
//! Anything unexpected (a refused creation, a gap in the consumer's
//! sequence, a status other than the end of a pull) ends the read with the
//! reason; the store reads the rest by direct get instead.
//!
//! Each event is handed on as it arrives, not gathered first: the caller
//! decodes and applies it while the connection parses the next. Folding
//! after the read had added 6.5–7.7 ms to 10,000-event loads of 46–48 ms;
//! folding during it, they took 39–40 ms, as long as the bare read. A load
//! also holds one delivered event at a time instead of all of them. What
//! was handed on before a failure is a gap-free prefix of the consumer's
//! deliveries.

use super::event::StoredEvent;
use crate::error::Error;
use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long an abandoned load consumer outlives its last pull.
pub(crate) const INACTIVE_THRESHOLD: Duration = Duration::from_secs(30);

/// The longest wait for a consumer's creation.
pub(crate) const CREATE_TIMEOUT: Duration = Duration::from_secs(2);

/// When a read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum ConsumerReadErrorKind {
    /// While the consumer was being created: the account may not create
    /// one, or the stream has all the consumers it may have. Loads leave
    /// the stream to direct gets for a while.
    Create,
    /// Later: a gap in the consumer's sequence, an unexpected status, no
    /// answer in time.
    Read,
}

impl std::fmt::Display for ConsumerReadErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConsumerReadErrorKind::Create => "cannot create the load consumer",
            ConsumerReadErrorKind::Read => "the load consumer's read failed",
        })
    }
}

/// Why a read stopped; the store reads the rest by direct get instead.
pub(crate) type ConsumerReadError = Error<ConsumerReadErrorKind>;

/// One read: every event on `filter` from stream sequence `start` on.
pub(crate) struct ConsumerRead<'a> {
    pub client: &'a Client,
    /// Counts the pull requests sent.
    pub pulls: &'a AtomicU64,
    /// The stream's name.
    pub stream: &'a str,
    /// The subject read (an aggregate's wildcard subject).
    pub filter: &'a str,
    pub start: u64,
    /// Events asked for per pull, sized so a pull brings a few MiB.
    pub per_pull: u64,
    /// How long to wait for any one answer.
    pub timeout: Duration,
}

impl ConsumerRead<'_> {
    /// Hands `each` the events in stream order until they are all read or
    /// it breaks; else says why the read stopped.
    pub(crate) async fn run(
        self,
        each: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<(), ConsumerReadError> {
        let name = format!("load_{}", uuid::Uuid::new_v4().simple());
        let (mut replies, inbox, pending, _delete) = self.create(&name).await?;
        self.read(&name, &mut replies, &inbox, pending, each).await
    }

    /// Creates consumer `name`; its deliveries and answers come to the
    /// returned subscription, on the returned inbox. Also returns the
    /// server's count of events to read and the guard that deletes the
    /// consumer.
    async fn create(
        &self,
        name: &str,
    ) -> Result<(Subscriber, String, u64, DeleteOnDrop), ConsumerReadError> {
        use ConsumerReadErrorKind::Create;
        // A subscription of its own: deliveries carry the event's subject,
        // not the inbox, so the store's reply router cannot route them.
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| Error::with_source(Create, e))?;
        let config = serde_json::json!({
            "name": name,
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": self.start,
            "ack_policy": "none",
            "replay_policy": "instant",
            "mem_storage": true,
            "num_replicas": 1,
            "inactive_threshold": INACTIVE_THRESHOLD.as_nanos() as u64,
            "filter_subject": self.filter,
        });
        let request = serde_json::json!({
            "stream_name": self.stream,
            "config": config,
            "action": "create",
        });
        self.client
            .publish_with_reply(
                format!("$JS.API.CONSUMER.CREATE.{}.{name}", self.stream),
                inbox.clone(),
                Bytes::from(request.to_string()),
            )
            .await
            .map_err(|e| Error::with_source(Create, e))?;
        // From here on the consumer may exist: delete it however this ends.
        let delete = DeleteOnDrop {
            client: self.client.clone(),
            subject: format!("$JS.API.CONSUMER.DELETE.{}.{name}", self.stream),
            reply: self.client.new_inbox(),
        };
        // A creation the account may not make is dropped by the server
        // without an answer: wait for it no longer than CREATE_TIMEOUT, so
        // such a load falls back to direct gets soon.
        let created = self
            .next(&mut replies, self.timeout.min(CREATE_TIMEOUT), Create)
            .await?;
        let created: serde_json::Value =
            serde_json::from_slice(&created.payload).map_err(|e| Error::with_source(Create, e))?;
        if let Some(error) = created.get("error") {
            return Err(Error::new(Create, format!("refused: {error}")));
        }
        let pending = created
            .get("num_pending")
            .and_then(|n| n.as_u64())
            .ok_or_else(|| {
                Error::new(Create, format!("answered without num_pending: {created}"))
            })?;
        Ok((replies, inbox, pending, delete))
    }

    /// Pulls every event consumer `name` has (`pending` by the server's
    /// count at creation) and hands each to `each`.
    async fn read(
        &self,
        name: &str,
        replies: &mut Subscriber,
        inbox: &str,
        mut pending: u64,
        each: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<(), ConsumerReadError> {
        use ConsumerReadErrorKind::Read;
        let pull_subject = format!("$JS.API.CONSUMER.MSG.NEXT.{}.{name}", self.stream);
        let mut expected_cseq = 1;
        while pending > 0 {
            let batch = pending.min(self.per_pull.max(1));
            let pull = serde_json::json!({
                "batch": batch,
                "expires": self.timeout.as_nanos() as u64,
            });
            self.client
                .publish_with_reply(
                    pull_subject.clone(),
                    inbox.to_string(),
                    Bytes::from(pull.to_string()),
                )
                .await
                .map_err(|e| Error::with_source(Read, e))?;
            self.pulls.fetch_add(1, Ordering::Relaxed);
            let mut got = 0;
            while got < batch && pending > 0 {
                let message = self.next(replies, self.timeout, Read).await?;
                match message.status.map(|s| s.as_u16()) {
                    None | Some(200) => {}
                    // Idle heartbeats: nothing to do.
                    Some(100) => continue,
                    // The pull ended before its batch: pull again.
                    Some(408) | Some(409)
                        if message.description.as_deref().is_some_and(|d| {
                            d.contains("MaxBytes")
                                || d.contains("Batch Completed")
                                || d.contains("Request Timeout")
                        }) =>
                    {
                        break
                    }
                    Some(code) => {
                        return Err(Error::new(
                            Read,
                            format!(
                                "pull answered {code} {}",
                                message.description.unwrap_or_default()
                            ),
                        ))
                    }
                }
                let reply = message.reply.as_deref().unwrap_or_default();
                let position = Position::parse(reply).ok_or_else(|| {
                    Error::new(
                        Read,
                        format!("message without a consumer position: {reply:?}"),
                    )
                })?;
                if position.consumer_seq != expected_cseq {
                    return Err(Error::new(
                        Read,
                        format!(
                            "consumer sequence {} where {expected_cseq} was due",
                            position.consumer_seq
                        ),
                    ));
                }
                expected_cseq += 1;
                got += 1;
                pending = position.pending;
                let event = StoredEvent {
                    subject: message.subject.to_string(),
                    seq: position.stream_seq,
                    headers: message.headers.unwrap_or_default(),
                    payload: message.payload,
                };
                if each(event).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The next message on `replies`; a failure of `kind` when none comes
    /// within `timeout`.
    async fn next(
        &self,
        replies: &mut Subscriber,
        timeout: Duration,
        kind: ConsumerReadErrorKind,
    ) -> Result<async_nats::Message, ConsumerReadError> {
        match tokio::time::timeout(timeout, replies.next()).await {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(Error::new(kind, "the subscription closed")),
            Err(_) => Err(Error::new(kind, format!("no answer within {timeout:?}"))),
        }
    }
}

/// A delivered message's place, from its reply subject (ADR-15):
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`,
/// or the same after a domain and an account hash (`$JS.ACK.<domain>.<hash>.<stream>...`,
/// possibly with a trailing token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub stream_seq: u64,
    pub consumer_seq: u64,
    /// Messages left for the consumer after this one.
    pub pending: u64,
}

impl Position {
    pub(crate) fn parse(reply: &str) -> Option<Position> {
        // Once per delivered event: the tokens go on the stack.
        let mut tokens = [""; 12];
        let mut count = 0;
        for token in reply.split('.') {
            *tokens.get_mut(count)? = token;
            count += 1;
        }
        let stream_at = match count {
            9 => 2,
            11 | 12 => 4,
            _ => return None,
        };
        if tokens[0] != "$JS" || tokens[1] != "ACK" {
            return None;
        }
        let number = |at: usize| tokens.get(stream_at + at)?.parse::<u64>().ok();
        Some(Position {
            stream_seq: number(3)?,
            consumer_seq: number(4)?,
            pending: number(6)?,
        })
    }
}

/// Asks the server to delete the load's consumer, without waiting.
struct DeleteOnDrop {
    client: Client,
    subject: String,
    reply: String,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let subject = std::mem::take(&mut self.subject);
        let reply = std::mem::take(&mut self.reply);
        runtime.spawn(async move {
            let _ = client
                .publish_with_reply(subject, reply, Bytes::new())
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Position;

    #[test]
    fn reads_positions_in_both_reply_formats() {
        let v1 = "$JS.ACK.EVT_BLOGPOST.load_x.1.4021.7.1764240000000000000.5993";
        assert_eq!(
            Position::parse(v1),
            Some(Position {
                stream_seq: 4021,
                consumer_seq: 7,
                pending: 5993
            })
        );
        let v2 = "$JS.ACK.hub.ACCHASH.EVT_BLOGPOST.load_x.1.4021.7.1764240000000000000.0";
        assert_eq!(
            Position::parse(v2),
            Some(Position {
                stream_seq: 4021,
                consumer_seq: 7,
                pending: 0
            })
        );
        let v2_token = format!("{v2}.Xyz");
        assert_eq!(Position::parse(&v2_token).map(|p| p.pending), Some(0));
    }

    #[test]
    fn refuses_what_is_not_a_position() {
        for reply in [
            "",
            "_INBOX.abc.def",
            "$JS.ACK.S.C.1.x.7.1.0",
            "$JS.NAK.S.C.1.2.7.1.0",
            "$JS.ACK.S.C.1.2.7.1",
            "$JS.ACK.D.H.S.C.1.2.7.1.0.T.extra",
        ] {
            assert_eq!(Position::parse(reply), None, "{reply}");
        }
    }
}
