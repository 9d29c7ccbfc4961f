//! The console's JSON endpoints: each one the CLI command of the same name,
//! answering JSON instead of printing it. Failures answer
//! `{"error": "...", "kind": "..."}` with a status by kind: 400 for what
//! the request got wrong, 503 for what could not be reached, 502 for an
//! answer that could not be read.

use super::Console;
use crate::cli::op::{OpError, OpErrorKind};
use crate::cli::{inspect, send};
use crate::rewind::RewindErrorKind;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jetsource_handlers::store::EventStore;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long one look-up may wait for NATS, as the CLI's default.
const TIMEOUT: Duration = Duration::from_secs(10);

fn failed(
    status: StatusCode,
    kind: impl std::fmt::Display,
    error: impl std::fmt::Display,
) -> Response {
    (
        status,
        Json(json!({ "error": error.to_string(), "kind": kind.to_string() })),
    )
        .into_response()
}

fn op_failed(e: OpError) -> Response {
    let status = match e.kind() {
        OpErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        OpErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        OpErrorKind::Corrupt => StatusCode::BAD_GATEWAY,
    };
    failed(status, e.kind(), e)
}

fn rewind_failed(e: crate::rewind::RewindError) -> Response {
    let status = match e.kind() {
        RewindErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        RewindErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        RewindErrorKind::Corrupt => StatusCode::UNPROCESSABLE_ENTITY,
        RewindErrorKind::MasterKey => StatusCode::INTERNAL_SERVER_ERROR,
    };
    failed(status, e.kind(), e)
}

/// The hosted aggregate types with their command schemas (the form's source).
pub(super) async fn aggregates(State(console): State<Arc<Console>>) -> Response {
    let aggregates: Vec<_> = console
        .app
        .aggregate_schemas()
        .iter()
        .map(|s| {
            json!({
                "aggregate_type": s.aggregate_type,
                "commands": s.commands,
                "event_version": s.event_version,
            })
        })
        .collect();
    Json(json!({ "aggregates": aggregates })).into_response()
}

/// `jetsource streams`.
pub(super) async fn streams(State(console): State<Arc<Console>>) -> Response {
    match inspect::stream_summaries(console.client.clone(), &console.namespace).await {
        Ok(streams) => Json(json!({ "streams": streams })).into_response(),
        Err(e) => op_failed(e),
    }
}

async fn store(console: &Console) -> Result<EventStore, Response> {
    EventStore::new(console.client.clone(), TIMEOUT)
        .await
        .map(|store| {
            store
                .with_namespace(console.namespace.clone())
                .with_master_key(console.master_key.clone())
        })
        .map_err(|e| failed(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e))
}

/// An aggregate's events in order, with their headers: what `rewind`
/// folds, read the way it reads them.
pub(super) async fn events(
    State(console): State<Arc<Console>>,
    Path((aggregate_type, aggregate_id)): Path<(String, String)>,
) -> Response {
    let store = match store(&console).await {
        Ok(store) => store,
        Err(response) => return response,
    };
    // The same checks as `rewind` (a hosted type, a token id), first.
    let state =
        match inspect::rewound(&console.app, &store, &aggregate_type, &aggregate_id, None).await {
            Ok(state) => state,
            Err(e) => return rewind_failed(e),
        };
    let stored = match store.load(&aggregate_type, &aggregate_id, 0).await {
        Ok(stored) => stored,
        Err(e) => return failed(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
    };
    let events: Vec<_> = stored
        .iter()
        .map(|event| {
            let headers: BTreeMap<String, String> = event
                .headers
                .iter()
                .filter_map(|(name, values)| {
                    values
                        .first()
                        .map(|v| (name.to_string(), v.as_str().to_string()))
                })
                .collect();
            let body = serde_json::from_slice::<serde_json::Value>(&event.payload)
                .unwrap_or_else(|_| String::from_utf8_lossy(&event.payload).into_owned().into());
            json!({
                "seq": event.seq,
                "subject": event.subject,
                "event_type": event.event_type(),
                "command_id": event.command_id(),
                "headers": headers,
                "body": body,
            })
        })
        .collect();
    Json(json!({ "events": events, "state": state })).into_response()
}

/// `?to_seq=N`.
#[derive(Deserialize)]
pub(super) struct ToSeq {
    to_seq: Option<u64>,
}

/// `jetsource rewind <type> <id> [--to-seq N]`.
pub(super) async fn rewind(
    State(console): State<Arc<Console>>,
    Path((aggregate_type, aggregate_id)): Path<(String, String)>,
    Query(ToSeq { to_seq }): Query<ToSeq>,
) -> Response {
    let store = match store(&console).await {
        Ok(store) => store,
        Err(response) => return response,
    };
    match inspect::rewound(&console.app, &store, &aggregate_type, &aggregate_id, to_seq).await {
        Ok(state) => Json(state).into_response(),
        Err(e) => rewind_failed(e),
    }
}

/// The form's submission: the command's body and `send`'s options.
#[derive(Deserialize)]
pub(super) struct Outgoing {
    body: serde_json::Value,
    #[serde(default)]
    command_id: Option<String>,
    #[serde(default)]
    expected_seq: Option<u64>,
}

/// `jetsource send <type> <id> <command> <json>`: the reply, accepted or
/// rejected, is the answer (200 either way).
pub(super) async fn send(
    State(console): State<Arc<Console>>,
    Path((aggregate_type, aggregate_id, command)): Path<(String, String, String)>,
    Json(outgoing): Json<Outgoing>,
) -> Response {
    let outgoing = send::Outgoing {
        aggregate_type: &aggregate_type,
        aggregate_id: &aggregate_id,
        command: &command,
        body: outgoing.body.to_string(),
        command_id: outgoing.command_id.filter(|id| !id.is_empty()),
        expected_seq: outgoing.expected_seq,
        timeout: TIMEOUT,
    };
    match send::send_one(console.client.clone(), console.namespace.clone(), outgoing).await {
        Ok(reply) => Json(reply).into_response(),
        Err(e) if e.kind() == jetsource_client::SendErrorKind::InvalidInput => {
            failed(StatusCode::BAD_REQUEST, e.kind(), e)
        }
        Err(e) => failed(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e),
    }
}

async fn ask(
    console: &Console,
    subject: Result<String, jetsource_schemas::TokenError>,
) -> Response {
    let subject = match subject {
        Ok(subject) => subject,
        Err(e) => return failed(StatusCode::BAD_REQUEST, OpErrorKind::InvalidInput, e),
    };
    match crate::cli::client::ask(&console.client, subject, TIMEOUT).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => op_failed(e),
    }
}

/// `jetsource status <command-id>`.
pub(super) async fn status(
    State(console): State<Arc<Console>>,
    Path(command_id): Path<String>,
) -> Response {
    ask(&console, console.namespace.status_subject(&command_id)).await
}

/// `jetsource errors get <command-id>`.
pub(super) async fn error(
    State(console): State<Arc<Console>>,
    Path(command_id): Path<String>,
) -> Response {
    ask(&console, console.namespace.errors_get_subject(&command_id)).await
}

/// `jetsource errors list <type> <id>`.
pub(super) async fn errors(
    State(console): State<Arc<Console>>,
    Path((aggregate_type, aggregate_id)): Path<(String, String)>,
) -> Response {
    let subject = console
        .namespace
        .errors_list_subject(&aggregate_type, &aggregate_id);
    ask(&console, subject).await
}

/// `jetsource projector status`.
pub(super) async fn projectors(State(console): State<Arc<Console>>) -> Response {
    match crate::cli::client::fetch_projector_status(&console.client, &console.namespace, TIMEOUT)
        .await
    {
        Ok(report) => Json(report).into_response(),
        Err(e) => op_failed(e),
    }
}

/// `jetsource process status`.
pub(super) async fn process_managers(State(console): State<Arc<Console>>) -> Response {
    match crate::cli::process::statuses(&console.app, &console.client, &console.namespace).await {
        Ok(report) => Json(json!({ "process_managers": report })).into_response(),
        Err(e) => failed(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e),
    }
}

/// `jetsource process parked <name>`.
pub(super) async fn process_parked(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
) -> Response {
    if !hosts_manager(&console, &name) {
        return no_such_manager();
    }
    match jetsource_process::parked::list(&console.client, &console.namespace, &name).await {
        Ok(parked) => Json(json!({ "process_manager": name, "parked": parked })).into_response(),
        Err(e) => failed(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e),
    }
}

/// `jetsource projector parked <name>`.
pub(super) async fn parked(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
) -> Response {
    match jetsource_projector::parked::list_in(&console.client, &console.namespace, &name).await {
        Ok(parked) => Json(json!({ "projection": name, "parked": parked })).into_response(),
        Err(e) if e.kind() == jetsource_projector::ProjectionErrorKind::BadProjector => {
            failed(StatusCode::BAD_REQUEST, e.kind(), e)
        }
        Err(e) => failed(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e),
    }
}

/// `jetsource projector replay-parked <name>`.
pub(super) async fn replay_parked(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
) -> Response {
    let replayed = jetsource_projector::control::replay_parked_in(
        &console.client,
        &console.namespace,
        &name,
        Duration::from_secs(30),
    )
    .await;
    match replayed {
        Ok(summary) => Json(summary).into_response(),
        Err(e) if e.kind() == jetsource_projector::control::ControlErrorKind::BadName => {
            failed(StatusCode::BAD_REQUEST, e.kind(), e)
        }
        Err(e) => failed(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e),
    }
}

/// `jetsource projector skip-parked <name> <stream> <seq>`, the event named
/// by the body `{"stream":…,"seq":…}`.
pub(super) async fn skip_parked(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
    Json(parked): Json<jetsource_projector::control::SkipRequest>,
) -> Response {
    let skipped = jetsource_projector::control::skip_parked_in(
        &console.client,
        &console.namespace,
        &name,
        &parked,
        Duration::from_secs(30),
    )
    .await;
    match skipped {
        Ok(outcome) => Json(outcome).into_response(),
        Err(e) if e.kind() == jetsource_projector::control::ControlErrorKind::BadName => {
            failed(StatusCode::BAD_REQUEST, e.kind(), e)
        }
        Err(e) => failed(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e),
    }
}

/// Whether `name` is a process manager the application hosts.
fn hosts_manager(console: &Console, name: &str) -> bool {
    console
        .app
        .process_managers()
        .iter()
        .any(|m| m.name == name)
}

fn no_such_manager() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "no such process manager" })),
    )
        .into_response()
}

/// `jetsource process replay-parked <name>`.
pub(super) async fn process_replay_parked(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
) -> Response {
    if !hosts_manager(&console, &name) {
        return no_such_manager();
    }
    match jetsource_process::parked::replay_in(
        &console.client,
        &console.namespace,
        &name,
        Duration::from_secs(30),
    )
    .await
    {
        Ok(summary) => Json(summary).into_response(),
        Err(e) => failed(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e),
    }
}

/// `jetsource process skip-parked <name> <stream> <seq>`, the trigger named
/// by the body `{"stream":…,"seq":…}`.
pub(super) async fn process_skip_parked(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
    Json(parked): Json<jetsource_projector::control::SkipRequest>,
) -> Response {
    if !hosts_manager(&console, &name) {
        return no_such_manager();
    }
    match jetsource_process::parked::skip_in(
        &console.client,
        &console.namespace,
        &name,
        &parked,
        Duration::from_secs(30),
    )
    .await
    {
        Ok(outcome) => Json(outcome).into_response(),
        Err(e) => failed(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e),
    }
}
