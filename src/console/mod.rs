//! The web console: one page served by `jetsource run` at `[console] addr`
//! (off by default), its script and style compiled into the binary, and a
//! JSON and server-sent-events API behind it.
//!
//! Every action calls what the CLI calls (`crate::cli`: `streams`,
//! `rewind`, `send`, `status`, `errors`, `projector status | parked |
//! replay-parked`, `skip-parked`, `tail`) on a connection made from the same settings, so
//! the console can do what `jetsource` on this host could, and no more.
//!
//! On a loopback address the console asks for no token, but answers only
//! requests whose `Host` is loopback too (a page elsewhere cannot reach it
//! through DNS rebinding). On any other address `[console] token` is
//! required (the settings refuse to start without it) and every request
//! must carry it, as `Authorization: Bearer` or as the cookie the sign-in
//! sets. Actions (`POST`) take JSON only, which another site's page
//! cannot make a browser send without the console's consent.
//!
//! # Layout
//! - `mod.rs`: the state, the routes, serving.
//! - `access.rs`: the token and host checks.
//! - `api.rs`: the JSON endpoints.
//! - `live.rs`: the live tail and live rejections (server-sent events).
//! - `assets/`: the page, its script and its style.

mod access;
mod api;
mod live;

use crate::app::App;
use crate::auth::Secret;
use axum::http::header;
use axum::routing::{get, post};
use axum::Router;
use jetsource_schemas::Namespace;
use std::sync::Arc;

/// What the console's handlers share.
pub struct Console {
    /// The application: its aggregate types, schemas and fold.
    pub app: App,
    /// A connection made from the settings, as a CLI command makes one.
    pub client: async_nats::Client,
    /// The subject prefix.
    pub namespace: Namespace,
    /// What data keys are wrapped under, to show personal fields.
    pub master_key: Option<jetsource_schemas::key_wrap::MasterKey>,
    /// The token to require, if any.
    pub token: Option<Secret>,
    /// Turns true when `jetsource run` stops: live streams end then.
    pub stopped: tokio::sync::watch::Receiver<bool>,
}

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// The page, its assets and the API, behind the access checks.
pub fn router(console: Arc<Console>) -> Router {
    let page = |body: &'static str, kind: &'static str| {
        get(move || async move { ([(header::CONTENT_TYPE, kind)], body) })
    };
    Router::new()
        .route("/", page(INDEX, "text/html; charset=utf-8"))
        .route(
            "/console.js",
            page(SCRIPT, "text/javascript; charset=utf-8"),
        )
        .route("/console.css", page(STYLE, "text/css; charset=utf-8"))
        .route("/api/signin", post(access::sign_in))
        .route("/api/aggregates", get(api::aggregates))
        .route("/api/streams", get(api::streams))
        .route(
            "/api/events/{aggregate_type}/{aggregate_id}",
            get(api::events),
        )
        .route(
            "/api/rewind/{aggregate_type}/{aggregate_id}",
            get(api::rewind),
        )
        .route(
            "/api/send/{aggregate_type}/{aggregate_id}/{command}",
            post(api::send),
        )
        .route("/api/status/{command_id}", get(api::status))
        .route("/api/errors/{command_id}", get(api::error))
        .route(
            "/api/errors/{aggregate_type}/{aggregate_id}",
            get(api::errors),
        )
        .route("/api/projectors", get(api::projectors))
        .route("/api/process-managers", get(api::process_managers))
        .route("/api/process-parked/{name}", get(api::process_parked))
        .route(
            "/api/process-replay-parked/{name}",
            post(api::process_replay_parked),
        )
        .route(
            "/api/process-skip-parked/{name}",
            post(api::process_skip_parked),
        )
        .route("/api/parked/{name}", get(api::parked))
        .route("/api/replay-parked/{name}", post(api::replay_parked))
        .route("/api/skip-parked/{name}", post(api::skip_parked))
        .route("/api/tail", get(live::tail))
        .route("/api/rejections", get(live::rejections))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            access::check,
        ))
        .with_state(console)
}
