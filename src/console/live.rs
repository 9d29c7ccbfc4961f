//! What the console shows as it happens, as server-sent events: stored
//! events (the ordered consumers `jetsource tail` follows) and rejections
//! (the notices the handlers publish for the error cache). Each stream
//! ends when `jetsource run` stops.

use super::Console;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;

/// `?filter=evt.blogpost.>` (default `evt.>`).
#[derive(Deserialize)]
pub(super) struct TailQuery {
    filter: Option<String>,
}

/// A future that completes when `jetsource run` stops.
fn stopping(console: &Console) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut stopped = console.stopped.clone();
    async move {
        let _ = stopped.wait_for(|s| *s).await;
    }
}

/// `jetsource tail <filter>`, from now on.
pub(super) async fn tail(
    State(console): State<Arc<Console>>,
    Query(query): Query<TailQuery>,
) -> Response {
    let filter = query.filter.unwrap_or_else(|| "evt.>".into());
    let events = crate::cli::inspect::follow(
        &console.app,
        console.client.clone(),
        &console.namespace,
        console.master_key.clone(),
        &filter,
        false,
    )
    .await;
    match events {
        Ok(events) => {
            let events = events
                .filter_map(|event| async move {
                    Event::default().event("event").json_data(&event).ok()
                })
                .map(Ok::<_, Infallible>)
                .take_until(stopping(&console));
            Sse::new(events)
                .keep_alive(KeepAlive::default())
                .into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// `?aggregate_type=blogpost`: only that type's rejections.
#[derive(Deserialize)]
pub(super) struct RejectionsQuery {
    aggregate_type: Option<String>,
}

/// Rejections as the handlers report them, from now on.
pub(super) async fn rejections(
    State(console): State<Arc<Console>>,
    Query(query): Query<RejectionsQuery>,
) -> Response {
    let subject = match query.aggregate_type.as_deref().filter(|t| !t.is_empty()) {
        Some(aggregate_type) => {
            match jetsource_schemas::token::validate("aggregate type", aggregate_type) {
                Ok(()) => console
                    .namespace
                    .subject(format!("notice.rejected.{aggregate_type}.>")),
                Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
            }
        }
        None => console.namespace.subject("notice.rejected.>"),
    };
    let subscription = match console.client.subscribe(subject).await {
        Ok(subscription) => subscription,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let notices = subscription
        .filter_map(|message| async move {
            let notice = serde_json::from_slice::<serde_json::Value>(&message.payload).ok()?;
            Event::default().event("rejection").json_data(&notice).ok()
        })
        .map(Ok::<_, Infallible>)
        .take_until(stopping(&console));
    Sse::new(notices)
        .keep_alive(KeepAlive::default())
        .into_response()
}
