//! Operating a manager's parked triggers: `pm.<name>.control.replay-parked`
//! reacts to each again (after a fix), `pm.<name>.control.skip-parked` gives
//! one up for good. Served by one process running the manager (the queue
//! group [`QUEUE_GROUP`]); the answers are those of a projection's
//! (`jetsource_projector::control`).
//!
//! A replayed event is reacted to as it would have been live, by the same
//! code and with the same `Command-Id`s. It is refused for an instance that
//! has reacted to a later event of the same stream since: an instance
//! records one position per stream and would count it applied, and
//! reacting to it now would reorder the instance's history. A parked
//! deadline is not replayed (its body did not read): skip it.

use super::trigger::{react_to_event, stored_event};
use super::Context;
use crate::manager::ProcessManager;
use crate::parked;
use async_nats::Message;
use jetsource_projector::control::{ReplaySummary, SkipOutcome, SkipRequest};
use serde::Serialize;
use tracing::{info, warn};

/// The queue group control requests are answered in.
pub const QUEUE_GROUP: &str = "jetsource-process-managers";

/// Answers one control request.
pub(super) async fn answer<M: ProcessManager>(context: &Context<M>, request: Message) {
    let action = request.subject.as_str().rsplit('.').next().unwrap_or("");
    match action {
        "replay-parked" => {
            let summary = replay(context).await;
            reply(context, &request, &summary).await;
        }
        "skip-parked" => {
            let outcome = match serde_json::from_slice::<SkipRequest>(&request.payload) {
                Ok(asked) => skip(context, &asked).await,
                Err(e) => SkipOutcome::Refused {
                    reason: format!("the request is not {{\"stream\":…,\"seq\":…}}: {e}"),
                },
            };
            reply(context, &request, &outcome).await;
        }
        _ => {}
    }
}

async fn reply<M: ProcessManager>(
    context: &Context<M>,
    request: &Message,
    answer: &impl Serialize,
) {
    let (Some(to), Ok(body)) = (request.reply.clone(), serde_json::to_vec(answer)) else {
        return;
    };
    if let Err(e) = context.js.client().publish(to, body.into()).await {
        warn!(manager = context.names.name(), error = %e, "a control answer was not sent");
    }
}

async fn replay<M: ProcessManager>(context: &Context<M>) -> ReplaySummary {
    let mut summary = ReplaySummary::default();
    let parked = match parked::list_from(&context.kv).await {
        Ok(parked) => parked,
        Err(e) => {
            summary.fail(e.to_string());
            return summary;
        }
    };
    let deadlines = context.names.deadlines_stream();
    for p in parked {
        let what = format!("{} #{}", p.stream, p.seq);
        if p.stream == deadlines {
            summary.fail(format!(
                "{what}: a parked deadline is not replayed; skip it"
            ));
            continue;
        }
        let reacted = match stored_event(context, &p.stream, p.seq).await {
            Ok(event) => react_to_event(context, event, true).await,
            Err(e) => Err(e),
        };
        match reacted {
            Ok(()) => match context.kv.purge(parked::key(&p.stream, p.seq)).await {
                Ok(()) => {
                    info!(manager = context.names.name(), stream = %p.stream, seq = p.seq, "parked trigger replayed");
                    summary.applied += 1;
                }
                Err(e) => summary.fail(format!("{what}: reacted to, but still listed: {e}")),
            },
            Err(e) => summary.fail(format!("{what}: {e}")),
        }
    }
    summary
}

async fn skip<M: ProcessManager>(context: &Context<M>, asked: &SkipRequest) -> SkipOutcome {
    let key = parked::key(&asked.stream, asked.seq);
    match context.kv.get(key.as_str()).await {
        Ok(Some(_)) => {}
        Ok(None) => return SkipOutcome::NotParked,
        Err(e) => {
            return SkipOutcome::Refused {
                reason: format!("the parked triggers cannot be read: {e}"),
            }
        }
    }
    match context.kv.purge(key.as_str()).await {
        Ok(()) => {
            warn!(manager = context.names.name(), stream = %asked.stream, seq = asked.seq, "parked trigger skipped for good");
            SkipOutcome::Skipped
        }
        Err(e) => SkipOutcome::Refused {
            reason: format!("the record was not removed: {e}"),
        },
    }
}
