//! Queries over NATS request/reply: `query.<projection>.<path…>`, answered
//! from the read model, after the position in `After-Seq` when there is one.
//!
//! Replies are JSON with a `status`:
//! - `{"status":"ok","projection":…,"positions":{"EVT_…":n},"result":…}` (an
//!   in-memory projection's positions are exactly those the result reflects; a
//!   persisted one's are those stored, the result may be a batch ahead);
//! - `{"status":"not_found"|"bad_request","reason":…}`;
//! - `{"status":"timeout","reason":…,"after_seq":{…},"positions":{…}}` when
//!   the position was not reached within the configured wait;
//! - `{"status":"halted"|"failing","reason":…,"after_seq":{…},"positions":{…}}`
//!   at once, without waiting, when the position is not reached and the
//!   projection is halted or its store keeps failing;
//! - `{"status":"too_large",…}` or `{"status":"unavailable",…}` when the
//!   answer could not be sent (see [`jetsource_schemas::answer`]).

use crate::config::ProjectorConfig;
use crate::position::{self, Positions};
use crate::projector::Query;
use crate::shared::{Model, Shared};
use crate::status::Phase;
use async_nats::{Client, Message};
use jetsource_schemas::headers;
use serde_json::json;
use std::sync::Arc;

/// The first token of query subjects (after the subject prefix, if any).
pub const QUERY_ROOT: &str = "query";

/// Every query subject of projection `name` in `namespace`:
/// `<prefix>.query.<name>.>`.
pub fn query_filter(namespace: &jetsource_schemas::Namespace, name: &str) -> String {
    namespace.subject(format_args!("{QUERY_ROOT}.{name}.>"))
}

/// Answers one query message.
pub(crate) async fn answer(
    client: &Client,
    shared: &Shared,
    model: &Arc<dyn Model>,
    config: &ProjectorConfig,
    message: Message,
) {
    let Some(reply_to) = message.reply.clone() else {
        return;
    };
    let max_payload = client.server_info().max_payload;
    let body = respond(shared, model, config, &message, max_payload).await;
    let bytes = match serde_json::to_vec(&body) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "could not encode a query reply");
            // A result the projector built but JSON cannot hold still
            // gets an answer.
            serde_json::to_vec(&failure(
                "bad_request",
                format!("the answer does not encode: {e}"),
            ))
            .unwrap_or_default()
        }
    };
    let publish = |body| client.publish(reply_to.clone(), body);
    if let Err(e) = jetsource_schemas::answer::send(bytes.into(), max_payload, publish).await {
        tracing::warn!(error = %e, "could not send a query reply");
    }
}

/// Room an answer keeps beside its result, in bytes: the status, the
/// positions and the reply's framing.
const ANSWER_HEADROOM: usize = 4096;

fn failure(status: &str, reason: impl Into<String>) -> serde_json::Value {
    json!({"status": status, "reason": reason.into()})
}

async fn respond(
    shared: &Shared,
    model: &Arc<dyn Model>,
    config: &ProjectorConfig,
    message: &Message,
    max_payload: usize,
) -> serde_json::Value {
    let wait = config.query_wait;
    let prefix = format!("{QUERY_ROOT}.{}.", shared.name);
    let Some(rest) = config
        .namespace
        .strip(message.subject.as_str())
        .and_then(|s| s.strip_prefix(&prefix))
    else {
        return failure("bad_request", "not a query subject of this projection");
    };
    let after = message
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::AFTER_SEQ))
        .map(|v| v.as_str().to_string());
    if let Some(after) = after {
        let wanted = match position::parse_after_seq(&after, &shared.stream_names()) {
            Ok(wanted) => wanted,
            Err(e) => return failure("bad_request", e.to_string()),
        };
        // A projection that cannot move answers at once rather than wait
        // for a position it will not reach.
        let progress = shared.progress();
        if matches!(progress.phase, Phase::Halted | Phase::Failing)
            && !position::reached(&shared.applied.borrow(), &wanted)
        {
            let now: Positions = shared.applied.borrow().clone();
            let status = if progress.phase == Phase::Halted {
                "halted"
            } else {
                "failing"
            };
            return json!({
                "status": status,
                "reason": progress.error.unwrap_or_else(|| format!("projection {} is {status}", shared.name)),
                "after_seq": wanted,
                "positions": now,
            });
        }
        let mut applied = shared.applied.subscribe();
        let reached =
            tokio::time::timeout(wait, applied.wait_for(|p| position::reached(p, &wanted))).await;
        if !matches!(reached, Ok(Ok(_))) {
            let now: Positions = shared.applied.borrow().clone();
            return json!({
                "status": "timeout",
                "reason": format!("projection {} did not reach After-Seq {after} within {wait:?}", shared.name),
                "after_seq": wanted,
                "positions": now,
            });
        }
    }
    let query = Query {
        projection: shared.name.to_string(),
        path: rest.split('.').map(str::to_string).collect(),
        body: message.payload.clone(),
        budget: max_payload.saturating_sub(ANSWER_HEADROOM),
    };
    let (positions, answer) = model.query(query, &shared.applied).await;
    match answer {
        Ok(result) => json!({
            "status": "ok",
            "projection": shared.name,
            "positions": positions,
            "result": result,
        }),
        Err(e) => failure(e.code.as_str(), e.reason),
    }
}
