//! Feedback outside the command reply: rejection notices, the error cache's
//! queries and command status by id.
//!
//! - notices (core NATS, never JetStream): `notice.rejected.<aggregate_type>.<aggregate_id>`,
//!   body [`RejectionNotice`];
//! - queries (request/reply, queue group [`QUEUE_GROUP`]):
//!   `errors.get.<command_id>` and `status.<command_id>` answer a [`FeedbackAnswer`],
//!   `errors.list.<aggregate_type>.<aggregate_id>` answers a [`RejectionList`];
//! - between feedback instances: `feedback.peer.get.<command_id>` and
//!   `feedback.peer.list.<aggregate_type>.<aggregate_id>`, so that an
//!   instance started after a rejection can still answer for it.
//!
//! ```json
//! {"status":"rejected","command_id":"c1","aggregate_type":"blogpost","aggregate_id":"p1",
//!  "command":"create","code":"validation","reason":"title is empty","at":"2025-01-01T00:00:00Z"}
//! {"status":"accepted","command_id":"c2","aggregate_type":"blogpost","aggregate_id":"p1",
//!  "events":[{"type":"BlogPostCreated","stream":"EVT_BLOGPOST","seq":12}]}
//! {"status":"unknown","command_id":"c3"}
//! ```
//!
//! Every token taken from a subject is validated before it is used. Under a
//! subject prefix each subject starts with `<prefix>.` and the command index
//! bucket is renamed as [`Namespace::bucket`] says; the functions here are
//! the unprefixed forms.

use crate::event::EventRef;
use crate::namespace::Namespace;
use crate::reply::RejectionCode;
use crate::token::{validate, TokenError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The prefix of rejection notices: `notice.rejected`.
pub const NOTICE_ROOT: &str = "notice.rejected";
/// The prefix of `errors.get.<command_id>`.
pub const ERRORS_GET_ROOT: &str = "errors.get";
/// The prefix of `errors.list.<aggregate_type>.<aggregate_id>`.
pub const ERRORS_LIST_ROOT: &str = "errors.list";
/// The prefix of `status.<command_id>`.
pub const STATUS_ROOT: &str = "status";
/// The prefix of `feedback.peer.get.<command_id>`.
pub const PEER_GET_ROOT: &str = "feedback.peer.get";
/// The prefix of `feedback.peer.list.<aggregate_type>.<aggregate_id>`.
pub const PEER_LIST_ROOT: &str = "feedback.peer.list";
/// The queue group answering queries.
pub const QUEUE_GROUP: &str = "jetsource-feedback";
/// Header naming the feedback instance that asks its peers, so that it
/// does not answer itself.
pub const INSTANCE_HEADER: &str = "Jetsource-Instance";
/// The KV bucket indexing accepted commands by id.
pub const COMMAND_INDEX_BUCKET: &str = "jetsource_command_index";
/// The durable consumer, on each event stream, that fills the command index.
pub const COMMAND_INDEX_CONSUMER: &str = "jetsource-command-index";

/// A rejected command, as published on `notice.rejected.<type>.<id>`, kept
/// by the error cache and answered by `errors.get` and `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RejectionNotice {
    /// The command's id.
    pub command_id: String,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate instance id.
    pub aggregate_id: String,
    /// The command name.
    pub command: String,
    /// Why, as a code.
    pub code: RejectionCode,
    /// Why, for people.
    pub reason: String,
    /// When it was rejected, RFC 3339 UTC.
    pub at: String,
}

impl RejectionNotice {
    /// Checks every id in the notice against the token rules, as a notice
    /// arrives from the network.
    pub fn validate(&self) -> Result<(), TokenError> {
        validate("command id", &self.command_id)?;
        validate("aggregate type", &self.aggregate_type)?;
        validate("aggregate id", &self.aggregate_id)?;
        validate("command", &self.command)
    }
}

/// An accepted command found by id: where its events were stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AcceptedStatus {
    /// The command's id.
    pub command_id: String,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate instance id.
    pub aggregate_id: String,
    /// Its events, in stream order.
    pub events: Vec<EventRef>,
}

/// Nothing is known of the command: never seen, or its rejection expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Unknown {
    /// The id asked for.
    pub command_id: String,
}

/// The query itself was malformed (a subject token outside the allowed set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BadQuery {
    /// Empty: an invalid id is never echoed.
    pub command_id: String,
    /// What is wrong.
    pub reason: String,
}

/// The answer to `errors.get.<id>` and `status.<id>` (`errors.get` never
/// answers `accepted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FeedbackAnswer {
    /// See [`AcceptedStatus`].
    Accepted(AcceptedStatus),
    /// See [`RejectionNotice`].
    Rejected(RejectionNotice),
    /// See [`Unknown`].
    Unknown(Unknown),
    /// See [`BadQuery`].
    BadRequest(BadQuery),
}

impl FeedbackAnswer {
    /// The `unknown` answer for `command_id`.
    pub fn unknown(command_id: impl Into<String>) -> Self {
        FeedbackAnswer::Unknown(Unknown {
            command_id: command_id.into(),
        })
    }

    /// The command id the answer is about.
    pub fn command_id(&self) -> &str {
        match self {
            FeedbackAnswer::Accepted(a) => &a.command_id,
            FeedbackAnswer::Rejected(r) => &r.command_id,
            FeedbackAnswer::Unknown(u) => &u.command_id,
            FeedbackAnswer::BadRequest(b) => &b.command_id,
        }
    }

    /// The status as it appears on the wire.
    pub fn status(&self) -> &'static str {
        match self {
            FeedbackAnswer::Accepted(_) => "accepted",
            FeedbackAnswer::Rejected(_) => "rejected",
            FeedbackAnswer::Unknown(_) => "unknown",
            FeedbackAnswer::BadRequest(_) => "bad_request",
        }
    }
}

/// The answer to `errors.list.<type>.<id>`: the aggregate's recent
/// rejections, newest first, at most a configured number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RejectionList {
    /// The aggregate type (empty when the query was malformed).
    pub aggregate_type: String,
    /// The aggregate instance id (empty when the query was malformed).
    pub aggregate_id: String,
    /// Newest first.
    pub rejections: Vec<RejectionNotice>,
    /// Set when the query was malformed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One accepted command in the command index (key: its command id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandIndexEntry {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate instance id.
    pub aggregate_id: String,
    /// Its events, in stream order.
    pub events: Vec<EventRef>,
}

// The unprefixed forms; under a subject prefix see the same methods of
// [`Namespace`].

/// `notice.rejected.<aggregate_type>.<aggregate_id>`.
pub fn notice_subject(aggregate_type: &str, aggregate_id: &str) -> Result<String, TokenError> {
    Namespace::default().notice_subject(aggregate_type, aggregate_id)
}

/// `errors.get.<command_id>`.
pub fn errors_get_subject(command_id: &str) -> Result<String, TokenError> {
    Namespace::default().errors_get_subject(command_id)
}

/// `errors.list.<aggregate_type>.<aggregate_id>`.
pub fn errors_list_subject(aggregate_type: &str, aggregate_id: &str) -> Result<String, TokenError> {
    Namespace::default().errors_list_subject(aggregate_type, aggregate_id)
}

/// `status.<command_id>`.
pub fn status_subject(command_id: &str) -> Result<String, TokenError> {
    Namespace::default().status_subject(command_id)
}

/// `feedback.peer.get.<command_id>`.
pub fn peer_get_subject(command_id: &str) -> Result<String, TokenError> {
    Namespace::default().peer_get_subject(command_id)
}

/// `feedback.peer.list.<aggregate_type>.<aggregate_id>`.
pub fn peer_list_subject(aggregate_type: &str, aggregate_id: &str) -> Result<String, TokenError> {
    Namespace::default().peer_list_subject(aggregate_type, aggregate_id)
}

/// Why a subject is not the query or notice expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuerySubjectError {
    /// The subject does not start with the expected prefix or has the wrong
    /// number of tokens.
    #[error("subject is not of the form {expected}")]
    Shape {
        /// The expected form.
        expected: &'static str,
    },
    /// A token is outside the allowed set.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The tokens after `root.` in `subject`, exactly `N` of them.
fn tokens_after<'a, const N: usize>(
    subject: &'a str,
    root: &str,
    expected: &'static str,
) -> Result<[&'a str; N], QuerySubjectError> {
    let shape = || QuerySubjectError::Shape { expected };
    let rest = subject
        .strip_prefix(root)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or_else(shape)?;
    let parts: Vec<&str> = rest.split('.').collect();
    <[&str; N]>::try_from(parts).map_err(|_| shape())
}

/// The command id of `<root>.<command_id>` (`errors.get`, `status`,
/// `feedback.peer.get`), validated.
pub fn parse_command_id<'a>(subject: &'a str, root: &str) -> Result<&'a str, QuerySubjectError> {
    let [command_id] = tokens_after::<1>(subject, root, "<prefix>.<command_id>")?;
    validate("command id", command_id)?;
    Ok(command_id)
}

/// The aggregate of `<root>.<aggregate_type>.<aggregate_id>` (notices,
/// `errors.list`, `feedback.peer.list`), validated.
pub fn parse_aggregate<'a>(
    subject: &'a str,
    root: &str,
) -> Result<(&'a str, &'a str), QuerySubjectError> {
    let [aggregate_type, aggregate_id] =
        tokens_after::<2>(subject, root, "<prefix>.<aggregate_type>.<aggregate_id>")?;
    validate("aggregate type", aggregate_type)?;
    validate("aggregate id", aggregate_id)?;
    Ok((aggregate_type, aggregate_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() {
        let notice = RejectionNotice {
            command_id: "c1".into(),
            aggregate_type: "blogpost".into(),
            aggregate_id: "p1".into(),
            command: "create".into(),
            code: RejectionCode::Validation,
            reason: "title is empty".into(),
            at: "2025-01-01T00:00:00Z".into(),
        };
        assert_eq!(
            serde_json::to_value(FeedbackAnswer::Rejected(notice)).expect("json"),
            serde_json::json!({"status":"rejected","command_id":"c1","aggregate_type":"blogpost",
                "aggregate_id":"p1","command":"create","code":"validation","reason":"title is empty",
                "at":"2025-01-01T00:00:00Z"})
        );
        assert_eq!(
            serde_json::to_string(&FeedbackAnswer::unknown("c3")).expect("json"),
            r#"{"status":"unknown","command_id":"c3"}"#
        );
        let accepted: FeedbackAnswer = serde_json::from_str(
            r#"{"status":"accepted","command_id":"c2","aggregate_type":"blogpost","aggregate_id":"p1",
                "events":[{"type":"BlogPostCreated","stream":"EVT_BLOGPOST","seq":12}]}"#,
        )
        .expect("accepted parses");
        assert_eq!(accepted.status(), "accepted");
    }

    #[test]
    fn subjects_validate_both_ways() {
        assert_eq!(
            notice_subject("blogpost", "p1").as_deref(),
            Ok("notice.rejected.blogpost.p1")
        );
        assert!(errors_get_subject("a.b").is_err());
        assert!(status_subject(">").is_err());
        assert_eq!(
            parse_command_id("errors.get.c-1", ERRORS_GET_ROOT),
            Ok("c-1")
        );
        assert_eq!(
            parse_aggregate("errors.list.blogpost.p1", ERRORS_LIST_ROOT),
            Ok(("blogpost", "p1"))
        );
        for bad in [
            "errors.get",
            "errors.get.",
            "errors.get.a.b",
            "errors.getx.a",
            "status.é",
        ] {
            assert!(
                parse_command_id(bad, ERRORS_GET_ROOT).is_err()
                    && parse_command_id(bad, STATUS_ROOT).is_err(),
                "{bad:?}"
            );
        }
        assert!(parse_aggregate("notice.rejected.blogpost", NOTICE_ROOT).is_err());
        assert!(parse_aggregate("notice.rejected.blogpost.p:1", NOTICE_ROOT).is_err());
    }
}
