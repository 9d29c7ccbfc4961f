//! A client for jetsource's command contract: build the subject and headers
//! from validated parts, send, read the reply.
//!
//! # Layout
//! - this module: [`CommandClient`], sending commands by name with a JSON
//!   body, and its [`SendError`].
//! - `typed`: [`CommandClient::send_command`], an aggregate's commands
//!   sent typed, the accepted events read back as its events.
//! - `query`: [`QueryClient`], a projection's answers decoded into the
//!   caller's type, after a command's events ([`After`]).

mod query;
mod typed;

pub use query::{After, QueryClient, QueryError, QueryErrorKind};
pub use typed::{TypedAccepted, TypedReply, TypedSendError, TypedSendErrorKind};

use bytes::Bytes;
use jetsource_schemas::error::Error;
use jetsource_schemas::trace::{self, TraceParent};
use jetsource_schemas::{headers, token, CommandReply, Namespace};
use std::time::Duration;

/// Optional headers of a command.
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// `Command-Id`; the server generates one when absent.
    pub command_id: Option<String>,
    /// `Expected-Seq`.
    pub expected_seq: Option<u64>,
    /// `Correlation-Id`.
    pub correlation_id: Option<String>,
    /// `Causation-Id`.
    pub causation_id: Option<String>,
    /// `traceparent`: the trace the command continues. When absent, the
    /// current `tracing` span's, if an OpenTelemetry layer records it (see
    /// [`jetsource_schemas::trace`]).
    pub traceparent: Option<TraceParent>,
}

/// What went wrong sending a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// A part of the subject or a header is not a valid token.
    InvalidInput,
    /// No handler answered (none running, or too slow).
    NoAnswer,
    /// The answer was not a command reply.
    BadReply,
}

impl std::fmt::Display for SendErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendErrorKind::InvalidInput => "invalid input",
            SendErrorKind::NoAnswer => "no answer",
            SendErrorKind::BadReply => "bad reply",
        })
    }
}

/// A send failure.
pub type SendError = Error<SendErrorKind>;

/// Sends commands over one NATS connection.
#[derive(Debug, Clone)]
pub struct CommandClient {
    pub(crate) client: async_nats::Client,
    timeout: Duration,
    namespace: Namespace,
}

impl CommandClient {
    /// A client waiting up to 10 s for replies, sending on unprefixed
    /// subjects.
    pub fn new(client: async_nats::Client) -> Self {
        CommandClient {
            client,
            timeout: Duration::from_secs(10),
            namespace: Namespace::default(),
        }
    }

    /// Sends on `namespace`'s command subjects (the application's subject
    /// prefix).
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// Changes the reply timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn prepare(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        command: &str,
        options: &SendOptions,
    ) -> Result<(String, async_nats::HeaderMap), SendError> {
        let invalid = |e: token::TokenError| Error::with_source(SendErrorKind::InvalidInput, e);
        let subject = self
            .namespace
            .command_subject(aggregate_type, aggregate_id, command)
            .map_err(invalid)?;
        let mut h = async_nats::HeaderMap::new();
        for (name, value) in [
            (headers::COMMAND_ID, &options.command_id),
            (headers::CORRELATION_ID, &options.correlation_id),
            (headers::CAUSATION_ID, &options.causation_id),
        ] {
            if let Some(value) = value {
                token::validate(name, value).map_err(invalid)?;
                h.insert(name, value.as_str());
            }
        }
        if let Some(seq) = options.expected_seq {
            h.insert(headers::EXPECTED_SEQ, seq.to_string().as_str());
        }
        let trace = options
            .traceparent
            .or_else(|| trace::outgoing(&tracing::Span::current(), None));
        if let Some(parent) = trace {
            h.insert(headers::TRACEPARENT, parent.to_header().as_str());
        }
        Ok((subject, h))
    }

    /// Sends a command and waits for its reply.
    pub async fn send(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        command: &str,
        body: impl Into<Bytes>,
        options: &SendOptions,
    ) -> Result<CommandReply, SendError> {
        let (subject, h) = self.prepare(aggregate_type, aggregate_id, command, options)?;
        let request = async_nats::Request::new()
            .headers(h)
            .payload(body.into())
            .timeout(Some(self.timeout));
        let reply = self
            .client
            .send_request(subject, request)
            .await
            .map_err(|e| Error::with_source(SendErrorKind::NoAnswer, e))?;
        serde_json::from_slice(&reply.payload)
            .map_err(|e| Error::with_source(SendErrorKind::BadReply, e))
    }

    /// Publishes a command without waiting for a reply (fire-and-forget);
    /// give it a `command_id` to look its outcome up later.
    pub async fn publish(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        command: &str,
        body: impl Into<Bytes>,
        options: &SendOptions,
    ) -> Result<(), SendError> {
        let (subject, h) = self.prepare(aggregate_type, aggregate_id, command, options)?;
        self.client
            .publish_with_headers(subject, h, body.into())
            .await
            .map_err(|e| Error::with_source(SendErrorKind::NoAnswer, e))?;
        self.client
            .flush()
            .await
            .map_err(|e| Error::with_source(SendErrorKind::NoAnswer, e))
    }
}
