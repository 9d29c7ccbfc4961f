//! From the command path to the wire: the outcome observer and the task
//! publishing rejection notices.
//!
//! The observer runs on the command path, so it never waits: a rejection
//! goes into a bounded queue with `try_send`, and when the queue is full the
//! notice is dropped and counted. Accepted outcomes go straight into the
//! in-memory [`AcceptedCache`] (a non-blocking insert), in a process that
//! answers status queries (has the feedback role). A task drains the
//! queue onto core NATS; nothing about a rejection reaches JetStream.

use crate::cache::{now_rfc3339, AcceptedCache};
use jetsource_handlers::runtime::{CommandOutcome, OutcomeObserver};
use jetsource_schemas::feedback::{AcceptedStatus, AggregateEvents, RejectionNotice};
use jetsource_schemas::{Accepted, CommandReply, EventRef, Namespace};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

/// The status of an accepted command, from its reply: the events of the
/// addressed aggregate, and those the reply marks as another aggregate's
/// (a command over several aggregates) under that aggregate, as the
/// command index lists them.
fn accepted_status(a: &Accepted) -> AcceptedStatus {
    let part = |aggregate_id: &str| AggregateEvents {
        aggregate_type: a.aggregate_type.clone(),
        aggregate_id: aggregate_id.to_string(),
        events: Vec::new(),
    };
    let mut parts = vec![part(&a.aggregate_id)];
    for event in &a.events {
        let owner = event.aggregate_id.as_deref().unwrap_or(&a.aggregate_id);
        let index = match parts.iter().position(|p| p.aggregate_id == owner) {
            Some(index) => index,
            None => {
                parts.push(part(owner));
                parts.len() - 1
            }
        };
        parts[index].events.push(EventRef {
            aggregate_id: None,
            ..event.clone()
        });
    }
    let mut parts = parts.into_iter();
    let mut status = AcceptedStatus::new(
        a.command_id.clone(),
        parts.next().unwrap_or_else(|| part(&a.aggregate_id)),
    );
    for other in parts {
        status.merge(other);
    }
    status
}

/// Builds the observer: accepted outcomes into `accepted` once `queries`
/// is on (the process answers status queries), rejections into `queue`
/// when `notices` is on (not in silence), overflow counted in `dropped`.
pub(crate) fn observer(
    queue: mpsc::Sender<RejectionNotice>,
    dropped: Arc<AtomicU64>,
    accepted: AcceptedCache,
    queries: Arc<AtomicBool>,
    notices: bool,
) -> OutcomeObserver {
    Arc::new(move |outcome: &CommandOutcome<'_>| match outcome.reply {
        CommandReply::Accepted(_) if !queries.load(Ordering::Relaxed) => {}
        CommandReply::Accepted(a) => accepted.insert(accepted_status(a)),
        CommandReply::Rejected(r) if notices => {
            // Without a command id nobody can ask for it, and without a
            // parsed subject there is no aggregate to name in the subject.
            let (Some(aggregate_type), Some(aggregate_id), Some(command)) = (
                outcome.aggregate_type,
                outcome.aggregate_id,
                outcome.command,
            ) else {
                return;
            };
            if r.command_id.is_empty() {
                return;
            }
            let notice = RejectionNotice {
                command_id: r.command_id.clone(),
                aggregate_type: aggregate_type.to_string(),
                aggregate_id: aggregate_id.to_string(),
                command: command.to_string(),
                code: r.code,
                reason: r.reason.clone(),
                details: r.details.clone(),
                at: now_rfc3339(),
            };
            if queue.try_send(notice).is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        CommandReply::Rejected(_) => {}
    })
}

/// Publishes queued notices on `namespace`'s notice subjects until `stop`
/// turns true, then publishes what is still queued and flushes.
pub(crate) async fn publish(
    client: async_nats::Client,
    namespace: Namespace,
    mut queue: mpsc::Receiver<RejectionNotice>,
    mut stop: watch::Receiver<bool>,
) {
    async move {
        loop {
            let notice = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                notice = queue.recv() => match notice {
                    Some(notice) => notice,
                    None => break,
                },
            };
            send(&client, &namespace, &notice).await;
        }
        while let Ok(notice) = queue.try_recv() {
            send(&client, &namespace, &notice).await;
        }
        let _ = client.flush().await;
    }
    .instrument(tracing::info_span!("notices"))
    .await
}

async fn send(client: &async_nats::Client, namespace: &Namespace, notice: &RejectionNotice) {
    let subject = match namespace.notice_subject(&notice.aggregate_type, &notice.aggregate_id) {
        Ok(subject) => subject,
        Err(e) => {
            tracing::warn!(error = %e, "notice for an invalid aggregate not sent");
            return;
        }
    };
    match serde_json::to_vec(notice) {
        Ok(body) => {
            if let Err(e) = client.publish(subject, body.into()).await {
                tracing::warn!(error = %e, command_id = %notice.command_id, "notice not sent");
            }
        }
        Err(e) => tracing::error!(error = %e, "notice not encoded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn accepted(command_id: &str) -> CommandReply {
        CommandReply::Accepted(Accepted {
            command_id: command_id.to_string(),
            aggregate_type: "blogpost".to_string(),
            aggregate_id: "p1".to_string(),
            events: Vec::new(),
            duplicate: false,
        })
    }

    #[test]
    fn accepted_outcomes_are_kept_only_once_the_process_answers_status_queries() {
        let (queue, _pending) = mpsc::channel(8);
        let cache = AcceptedCache::new(Duration::from_secs(60), 1 << 20);
        let queries = Arc::new(AtomicBool::new(false));
        let observe = observer(
            queue,
            Arc::new(AtomicU64::new(0)),
            cache.clone(),
            queries.clone(),
            true,
        );
        let outcome = |reply| CommandOutcome {
            aggregate_type: Some("blogpost"),
            aggregate_id: Some("p1"),
            command: Some("create"),
            reply,
        };
        let reply = accepted("handlers-only");
        observe(&outcome(&reply));
        assert!(cache.get("handlers-only").is_none());
        queries.store(true, Ordering::Relaxed);
        let reply = accepted("with-queries");
        observe(&outcome(&reply));
        assert!(cache.get("with-queries").is_some());
    }

    #[test]
    fn a_reply_over_several_aggregates_is_a_status_listing_each() {
        let event = |event_type: &str, seq, aggregate_id: Option<&str>| EventRef {
            event_type: event_type.into(),
            stream: "EVT_ACCOUNT".into(),
            seq,
            aggregate_id: aggregate_id.map(str::to_string),
        };
        let reply = Accepted {
            command_id: "t1".into(),
            aggregate_type: "account".into(),
            aggregate_id: "b".into(),
            events: vec![
                event("TransferSent", 7, None),
                event("TransferReceived", 8, Some("a")),
            ],
            duplicate: false,
        };
        let status = accepted_status(&reply);
        assert_eq!(
            (status.aggregate_id.as_str(), status.events.len()),
            ("b", 1)
        );
        assert_eq!(status.events[0].aggregate_id, None);
        assert_eq!(status.others.len(), 1);
        assert_eq!(status.others[0].aggregate_id, "a");
        assert_eq!(
            status.others[0].events,
            [event("TransferReceived", 8, None)],
            "each aggregate's events under it alone, unmarked"
        );
    }
}
