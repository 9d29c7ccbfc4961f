//! Shared set-up for the integration tests, compiled into each test binary
//! that says `mod common;`: a real nats-server per test, jetsource in this
//! process and as a child process, clients, and the one way to wait.
//!
//! # Layout
//! - `server`: nats-servers (the harness crate) and connections to them.
//! - `runtime`: the command runtime (also with the feedback role),
//!   projectors, and `app::run`, in this process.
//! - `process`: the `jetsource` binary as a child process.
//! - `postgres`: a fresh PostgreSQL database per test.
//! - `browser`: headless Chromium over WebDriver.
//! - `client`: sending commands and reading their replies.
//! - `http`: the HTTP endpoints, read by hand.
//! - `metrics`: `/metrics` parsed into series.
//! - `query`: projection and feedback queries.
//! - `store`: the event store and streams by hand.
//! - `wait`: polling a condition until a deadline.
#![allow(dead_code, unreachable_pub)]

mod browser;
mod client;
mod http;
mod metrics;
mod postgres;
mod process;
mod query;
mod runtime;
mod server;
mod store;
mod wait;

// A binary uses what it needs of these.
#[allow(unused_imports)]
pub use {
    browser::*, client::*, http::*, metrics::*, postgres::*, process::*, query::*, runtime::*,
    server::*, store::*, wait::*,
};
