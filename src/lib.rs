//! jetsource: CQRS and event sourcing on NATS JetStream.
//!
//! A client sends a command on `cmd.<type>.<id>.<command>`; a handler
//! decides it against state built from the aggregate's confirmed events,
//! appends the resulting events to the aggregate type's JetStream stream
//! with an expected-sequence check (several events atomically), and replies.
//! `PROTOCOL.md` is the wire contract.
//!
//! # Layout
//! - [`App`] / [`app::run`]: the aggregates an application hosts, and serving them.
//! - [`cli`]: the command line (`run`, `send`, `tail`, `rewind`, `streams`, `schema`, `projector status`, `bench`, …) for any [`App`].
//! - [`client`]: sending commands from Rust.
//! - [`config`]: settings (file, environment, flags).
//! - [`auth`]: credentials and TLS towards NATS; the one place connections are made.
//! - [`embedded`]: the embedded nats-server default.
//! - [`feedback`]: rejection notices, the error cache, command status by id.
//! - [`observability`]: `/metrics`, `/healthz`, `/readyz` over HTTP.
//! - [`console`]: the web console `jetsource run` serves at `[console] addr`.
//! - [`process`]: process managers: workflows that turn events into
//!   commands and wait for durable deadlines ([`App::process_manager`]).
//! - [`rewind`]: an aggregate's state at any point of its history.
//! - [`schema_files`]: the JSON Schemas `jetsource schema` writes, and its check.
//! - [`schema_compat`]: which changes to an event break reading stored ones.
//!
//! To host your own aggregates, implement [`Aggregate`] in your crate and
//! hand an [`App`] to [`cli::main`] (or build a [`Runtime`] yourself).
//! Projectors ([`projector::Projector`]) and process managers
//! ([`process::ProcessManager`]) register on the same [`App`].
//!
//! The crates whose types this API names are re-exported ([`async_nats`],
//! [`clap`], [`schemars`], [`time`]), so a crate can name the versions jetsource was
//! built with, even derive with them:
//!
//! ```
//! use jetsource::schemars::{self, JsonSchema};
//!
//! #[derive(serde::Deserialize, JsonSchema)]
//! #[schemars(crate = "jetsource::schemars")]
//! #[serde(rename_all = "snake_case")]
//! enum LightCommand { Switch { on: bool } }
//!
//! let schema = schemars::schema_for!(LightCommand);
//! assert!(schema.to_value().to_string().contains("switch"));
//! ```

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod console;
pub mod embedded;
pub mod observability;
pub mod projector_ops;
pub mod rewind;
pub mod schema_compat;
pub mod schema_files;
pub mod telemetry;

pub use app::App;

// The README's Rust blocks are doctests: a whole program is compiled
// (`no_run`: it would serve), and fragments of a larger one are marked
// `ignore`, saying where they are compiled whole.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use jetsource_client as client;
pub use jetsource_feedback as feedback;
pub use jetsource_handlers as handlers;
pub use jetsource_handlers::{
    connect, testing, Aggregate, DomainError, Rejection, RejectionKind, Runtime, RuntimeConfig,
};
pub use jetsource_process as process;
pub use jetsource_projector as projector;
pub use jetsource_schemas as schemas;
pub use jetsource_schemas::upcast::{EventBody, Upcasters};

// The crates whose types jetsource's public API names, so that a user's
// crate names the very versions jetsource was built with: `async_nats`
// (`connect` returns its `Client`), `time` (a process manager's deadlines
// are `OffsetDateTime`s) and `schemars` (`App::aggregate` asks for its
// `JsonSchema`; a crate deriving it depends on `schemars = "1"` itself, or
// writes `#[schemars(crate = "jetsource::schemars")]`) and `clap`
// (`cli::main_with` takes a `clap::Subcommand`; `use jetsource::clap;`
// before deriving it).
pub use async_nats;
pub use clap;
pub use schemars;
pub use time;
