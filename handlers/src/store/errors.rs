//! What can go wrong in the store, one kind per operation, and the
//! JetStream error codes each kind stands for.
//!
//! Appends are plain requests whose acks are parsed by the store, so single
//! publishes and atomic batches map the server's codes to one
//! [`AppendErrorKind`] here, next to the kinds they become.

use crate::error::Error;
use serde::Deserialize;

/// JetStream error codes the write path acts on.
pub(crate) mod codes {
    /// Wrong last sequence, with the current value.
    pub(crate) const WRONG_LAST_SEQUENCE: u64 = 10071;
    /// Wrong last sequence, without it (clustered in-flight proposals, batches).
    pub(crate) const WRONG_LAST_SEQUENCE_CONSTANT: u64 = 10164;
    /// Expected-last-subject-sequence not ready; retryable.
    pub(crate) const EXPECTED_SEQ_NOT_READY: u64 = 10163;
    /// A duplicate message id is still being processed; retryable.
    pub(crate) const DUPLICATE_IN_PROCESS: u64 = 10158;
    /// An atomic batch holds a message id already in the dedupe window.
    pub(crate) const BATCH_DUPLICATE_MSG_ID: u64 = 10201;
    /// Too many atomic batches in flight; retryable.
    pub(crate) const BATCH_TOO_MANY_INFLIGHT: u64 = 10210;
    /// Maximum bytes or messages reached (discard new).
    pub(crate) const STREAM_STORE_FAILED: u64 = 10077;
}

/// What went wrong with an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendErrorKind {
    /// The aggregate moved on (10071, 10164): reload and decide again.
    Conflict,
    /// The store already holds one of these message ids (a duplicate ack on
    /// a single publish, or 10201 for a batch): reload and look for them.
    /// Only messages that carry `Nats-Msg-Id` meet it; jetsource's events
    /// do not.
    Duplicate,
    /// Retryable trouble: no responders, a temporary JetStream error, a
    /// timeout (the write may or may not have been stored).
    Unavailable,
    /// The stream is full (a configured byte limit with discard new).
    Full,
    /// Anything else the server refused.
    Refused,
}

impl std::fmt::Display for AppendErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AppendErrorKind::Conflict => "conflict",
            AppendErrorKind::Duplicate => "duplicate",
            AppendErrorKind::Unavailable => "unavailable",
            AppendErrorKind::Full => "stream full",
            AppendErrorKind::Refused => "refused",
        })
    }
}

/// An append's failure.
pub type AppendError = Error<AppendErrorKind>;

/// The error part of a JetStream API answer (a publish ack).
#[derive(Deserialize, Debug, thiserror::Error)]
#[error("JetStream error {err_code} ({code}): {description}")]
pub(crate) struct ApiError {
    #[serde(default)]
    pub(crate) code: u64,
    #[serde(default)]
    pub(crate) err_code: u64,
    #[serde(default)]
    pub(crate) description: String,
}

/// The kind of append failure a JetStream error is.
pub(crate) fn classify(err: &ApiError) -> AppendErrorKind {
    use codes::*;
    match err.err_code {
        WRONG_LAST_SEQUENCE | WRONG_LAST_SEQUENCE_CONSTANT => AppendErrorKind::Conflict,
        BATCH_DUPLICATE_MSG_ID => AppendErrorKind::Duplicate,
        EXPECTED_SEQ_NOT_READY | DUPLICATE_IN_PROCESS | BATCH_TOO_MANY_INFLIGHT => {
            AppendErrorKind::Unavailable
        }
        STREAM_STORE_FAILED => AppendErrorKind::Full,
        _ if err.code == 503 || err.code == 429 => AppendErrorKind::Unavailable,
        _ if err.description.contains("maximum bytes exceeded")
            || err.description.contains("maximum messages exceeded") =>
        {
            AppendErrorKind::Full
        }
        _ => AppendErrorKind::Refused,
    }
}

/// A failed publish request as an append failure.
pub(crate) fn request_error(e: async_nats::RequestError) -> AppendError {
    use async_nats::RequestErrorKind;
    let kind = match e.kind() {
        RequestErrorKind::NoResponders | RequestErrorKind::TimedOut | RequestErrorKind::Other => {
            AppendErrorKind::Unavailable
        }
        RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
            AppendErrorKind::Refused
        }
    };
    Error::with_source(kind, e)
}

/// What went wrong with a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadErrorKind {
    /// The server did not answer in time, or is unreachable.
    Unavailable,
    /// The server answered something unexpected.
    Protocol,
}

impl std::fmt::Display for LoadErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoadErrorKind::Unavailable => "unavailable",
            LoadErrorKind::Protocol => "protocol",
        })
    }
}

/// A load's failure.
pub type LoadError = Error<LoadErrorKind>;

/// What went wrong creating or updating a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamErrorKind {
    /// JetStream refused the configuration or could not be reached.
    JetStream,
    /// The stream exists and its metadata names another contract version
    /// than [`jetsource_schemas::CONTRACT_VERSION`]: its events may not
    /// mean what this build expects, so it is left untouched.
    ContractMismatch,
}

impl std::fmt::Display for StreamErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamErrorKind::JetStream => "jetstream",
            StreamErrorKind::ContractMismatch => "contract version mismatch",
        })
    }
}

/// A stream set-up failure.
pub type StreamError = Error<StreamErrorKind>;
