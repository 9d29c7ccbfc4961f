//! The reply to a command.
//!
//! ```json
//! {"status":"accepted","command_id":"…","aggregate_type":"blogpost","aggregate_id":"p1",
//!  "events":[{"type":"BlogPostCreated","stream":"EVT_BLOGPOST","seq":12}],"duplicate":false}
//! {"status":"rejected","command_id":"…","code":"validation","reason":"title is empty"}
//! ```

use crate::event::EventRef;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a command was rejected. Each code says what a client should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    /// The command breaks a business rule. Do not resend it unchanged.
    Validation,
    /// The command targets an aggregate that does not exist.
    NotFound,
    /// The aggregate moved on (the `Expected-Seq` the client sent is stale,
    /// or retries against concurrent writers ran out). Reload and decide again.
    Conflict,
    /// The subject, headers or body are malformed, or the aggregate type or
    /// command is unknown. Fix the request.
    BadRequest,
    /// The event store could not be reached, did not confirm the write in
    /// time, or refused it for now. Resend with the same `Command-Id`: a
    /// write that did land is then answered as a duplicate.
    Unavailable,
    /// A bug or an unexpected answer. Nothing was written.
    Internal,
}

impl RejectionCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionCode::Validation => "validation",
            RejectionCode::NotFound => "not_found",
            RejectionCode::Conflict => "conflict",
            RejectionCode::BadRequest => "bad_request",
            RejectionCode::Unavailable => "unavailable",
            RejectionCode::Internal => "internal",
        }
    }
}

impl fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An accepted command: where its events were stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Accepted {
    /// The command's id (the client's, or one generated for it).
    pub command_id: String,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate instance id.
    pub aggregate_id: String,
    /// The events the command appended, in order; empty when it decided none.
    pub events: Vec<EventRef>,
    /// True when the command id had already been accepted on this aggregate:
    /// nothing new was appended and `events` are the original ones.
    pub duplicate: bool,
}

/// A rejected command. Nothing was written to any stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rejected {
    /// The command's id (the client's, or one generated for it; empty when
    /// the `Command-Id` header itself was invalid).
    pub command_id: String,
    /// Why, as a code to branch on.
    pub code: RejectionCode,
    /// Why, for people.
    pub reason: String,
}

/// The reply to a command request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CommandReply {
    /// See [`Accepted`].
    Accepted(Accepted),
    /// See [`Rejected`].
    Rejected(Rejected),
}

impl CommandReply {
    /// A rejection.
    pub fn rejected(
        command_id: impl Into<String>,
        code: RejectionCode,
        reason: impl Into<String>,
    ) -> Self {
        CommandReply::Rejected(Rejected {
            command_id: command_id.into(),
            code,
            reason: reason.into(),
        })
    }

    /// True for `accepted`.
    pub fn is_accepted(&self) -> bool {
        matches!(self, CommandReply::Accepted(_))
    }

    /// The rejection code, if rejected.
    pub fn code(&self) -> Option<RejectionCode> {
        match self {
            CommandReply::Rejected(r) => Some(r.code),
            CommandReply::Accepted(_) => None,
        }
    }

    /// The command id.
    pub fn command_id(&self) -> &str {
        match self {
            CommandReply::Accepted(a) => &a.command_id,
            CommandReply::Rejected(r) => &r.command_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_of_accepted() {
        let reply = CommandReply::Accepted(Accepted {
            command_id: "c1".into(),
            aggregate_type: "blogpost".into(),
            aggregate_id: "p1".into(),
            events: vec![EventRef {
                event_type: "BlogPostCreated".into(),
                stream: "EVT_BLOGPOST".into(),
                seq: 12,
            }],
            duplicate: false,
        });
        let json = serde_json::to_value(&reply).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({"status":"accepted","command_id":"c1","aggregate_type":"blogpost",
                "aggregate_id":"p1","events":[{"type":"BlogPostCreated","stream":"EVT_BLOGPOST","seq":12}],
                "duplicate":false})
        );
    }

    #[test]
    fn wire_shape_of_rejected() {
        let reply = CommandReply::rejected("c1", RejectionCode::NotFound, "no such post");
        let json = serde_json::to_string(&reply).expect("serialize");
        assert_eq!(
            json,
            r#"{"status":"rejected","command_id":"c1","code":"not_found","reason":"no such post"}"#
        );
        let back: CommandReply = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back.code(), Some(RejectionCode::NotFound));
    }
}
