//! The jetsource wire contract, as Rust types.
//!
//! Everything a client, a projector or another language needs to talk to a
//! jetsource deployment lives here, and nothing here depends on NATS: the
//! subjects (builders and parsers that validate every token), the header
//! names, the command reply and its rejection codes, and the metadata stored
//! with each event. `PROTOCOL.md` at the repository root is the prose version
//! of the same contract; the JSON Schemas in `schemas/json/` are generated
//! from these types.
//!
//! # Layout
//! - [`token`]: the one character set every subject token and id must match.
//! - [`subject`]: command and event subjects, stream names.
//! - [`headers`]: header names clients send and events carry.
//! - [`reply`]: the command reply (`accepted` / `rejected`) and rejection codes.
//! - [`event`]: references to stored events and their metadata.
//! - [`json`]: the JSON Schemas generated from these types.
//! - [`feedback`]: rejection notices, the error cache's queries, command status.
//! - [`namespace`]: the optional subject prefix, and every name under it.
//! - [`page`]: pages of list answers (`limit`, `after`, `next`).
//! - [`answer`]: sending an answer that always arrives (`too_large`,
//!   `unavailable`).
//! - [`aggregate`]: what an aggregate is (pure `handle`, infallible `apply`).
//! - [`codec`]: commands and events to and from `(name, JSON body)`, the
//!   encoding both the command side and every reader use.
//! - [`upcast`]: reading events stored by older versions (upcasters), the
//!   one way every reader decodes a stored event.
//! - [`personal`]: personal fields sealed under a key per data subject
//!   (crypto-shredding), and the sealed value's format.
//! - [`key_wrap`]: data keys as stored, plain or wrapped under a master key.
//! - [`forgotten`]: the notice that a data subject was forgotten, and its stream.
//! - [`trace`]: W3C `traceparent` on commands and events, and the spans
//!   that continue it.
//! - [`error`]: the error type with a `kind()` every jetsource crate uses.
//! - [`server_version`]: the nats-server versions the contract needs.
//! - [`settings`]: what every settings type shares: durations and sizes
//!   as a settings file writes them, the error naming an invalid setting.

pub mod aggregate;
pub mod answer;
pub mod codec;
pub mod error;
pub mod event;
pub mod feedback;
pub mod forgotten;
pub mod headers;
pub mod json;
pub mod key_wrap;
pub mod namespace;
pub mod page;
pub mod personal;
pub mod reply;
mod scratch;
pub mod server_version;
pub mod settings;
pub mod subject;
pub mod token;
pub mod trace;
pub mod upcast;

pub use event::EventRef;
pub use namespace::{Namespace, NamespaceError};
pub use reply::{Accepted, CommandReply, Rejected, RejectionCode};
pub use subject::{CommandSubject, EventSubject};
pub use token::{Token, TokenError};

/// The version of the wire contract described by this crate and `PROTOCOL.md`.
///
/// It is carried where a client can check it once, never per message: in
/// each event stream's metadata under [`CONTRACT_METADATA_KEY`] and in every
/// JSON Schema under [`json::CONTRACT_KEYWORD`].
///
/// Version 2 stopped writing `Nats-Msg-Id` and `Event-Time` on events (an
/// event's time is when JetStream stored it); version 1 streams are read
/// and adopted as they are (see [`READABLE_CONTRACT_VERSIONS`]).
pub const CONTRACT_VERSION: &str = "2";

/// The contract versions whose event streams this release reads, and which
/// the command side adopts (re-stamping them with [`CONTRACT_VERSION`]).
///
/// A version 1 event carries two headers version 2 no longer writes
/// (`Nats-Msg-Id`, `Event-Time`) and nothing version 2 readers lack, so its
/// events read as version 2 events.
pub const READABLE_CONTRACT_VERSIONS: &[&str] = &["1", CONTRACT_VERSION];

/// The JetStream stream metadata key holding the contract version of the
/// events in an event stream (`EVT_<TYPE>`), set when jetsource creates or
/// adopts the stream.
pub const CONTRACT_METADATA_KEY: &str = "jetsource.contract";
