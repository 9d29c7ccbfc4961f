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
    /// What the aggregate said besides (see [`crate::reply::Rejected`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
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
///
/// A command id names a command on one aggregate: the same id sent to
/// another aggregate is another command, accepted on its own. When an id
/// was accepted on several aggregates, `aggregate_type`, `aggregate_id` and
/// `events` are those of the one whose first event is earliest (by stream
/// sequence; across streams, by stream name) and `others` lists the rest in
/// that order, each with its own events: an aggregate's events are never
/// listed under another.
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
    /// The other aggregates this command id was accepted on, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<AggregateEvents>,
}

/// One aggregate's events under a command id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AggregateEvents {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate instance id.
    pub aggregate_id: String,
    /// Its events under the command id, in stream order.
    pub events: Vec<EventRef>,
}

impl AggregateEvents {
    /// The order in which an id's aggregates are listed: by the stream and
    /// sequence of their first event (events of one stream in the order
    /// they were stored; of several streams, by stream name), then by
    /// aggregate. The same for every process and every order of arrival.
    pub fn order(&self) -> (Option<(&str, u64)>, &str, &str) {
        (
            self.events.first().map(|e| (e.stream.as_str(), e.seq)),
            &self.aggregate_type,
            &self.aggregate_id,
        )
    }

    /// Adds `events` of the same aggregate, each once, in stream order.
    fn absorb(&mut self, events: impl IntoIterator<Item = EventRef>) -> bool {
        let mut changed = false;
        for event in events {
            if !self
                .events
                .iter()
                .any(|e| e.stream == event.stream && e.seq == event.seq)
            {
                self.events.push(event);
                changed = true;
            }
        }
        if changed {
            self.events
                .sort_by(|a, b| (&a.stream, a.seq).cmp(&(&b.stream, b.seq)));
        }
        changed
    }
}

/// Merges `part` into the aggregates of one command id: the first one
/// (`aggregate_type`, `aggregate_id`, `events`) and `others`, keeping each
/// aggregate's events apart and the listing in [`AggregateEvents::order`].
/// Returns whether anything changed.
fn merge(
    aggregate_type: &mut String,
    aggregate_id: &mut String,
    events: &mut Vec<EventRef>,
    others: &mut Vec<AggregateEvents>,
    part: AggregateEvents,
) -> bool {
    let mut first = AggregateEvents {
        aggregate_type: std::mem::take(aggregate_type),
        aggregate_id: std::mem::take(aggregate_id),
        events: std::mem::take(events),
    };
    let same = |a: &AggregateEvents| {
        a.aggregate_type == part.aggregate_type && a.aggregate_id == part.aggregate_id
    };
    let changed = if same(&first) {
        first.absorb(part.events)
    } else if let Some(other) = others.iter_mut().find(|o| same(o)) {
        other.absorb(part.events)
    } else {
        others.push(part);
        true
    };
    if changed {
        others.push(first);
        others.sort_by(|a, b| a.order().cmp(&b.order()));
        first = others.remove(0);
    }
    *aggregate_type = first.aggregate_type;
    *aggregate_id = first.aggregate_id;
    *events = first.events;
    changed
}

impl AcceptedStatus {
    /// The status of `command_id` accepted on one aggregate.
    pub fn new(command_id: impl Into<String>, part: AggregateEvents) -> Self {
        AcceptedStatus {
            command_id: command_id.into(),
            aggregate_type: part.aggregate_type,
            aggregate_id: part.aggregate_id,
            events: part.events,
            others: Vec::new(),
        }
    }

    /// Adds what the id did on one more aggregate (or more events of one it
    /// names); returns whether anything changed.
    pub fn merge(&mut self, part: AggregateEvents) -> bool {
        merge(
            &mut self.aggregate_type,
            &mut self.aggregate_id,
            &mut self.events,
            &mut self.others,
            part,
        )
    }

    /// Every aggregate it lists, the first one first.
    pub fn parts(self) -> impl Iterator<Item = AggregateEvents> {
        std::iter::once(AggregateEvents {
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            events: self.events,
        })
        .chain(self.others)
    }

    /// The status of the entry the command index holds for `command_id`.
    pub fn from_index(command_id: impl Into<String>, entry: CommandIndexEntry) -> Self {
        AcceptedStatus {
            command_id: command_id.into(),
            aggregate_type: entry.aggregate_type,
            aggregate_id: entry.aggregate_id,
            events: entry.events,
            others: entry.others,
        }
    }
}

/// Nothing is known of the command: never seen, or its rejection expired.
/// For `status` also: the command index had indexed every event stored
/// before the question and held nothing for the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Unknown {
    /// The id asked for.
    pub command_id: String,
}

/// `status` only: nothing is known of the command yet, but the command index
/// had not caught up with the event streams within the wait (right after a
/// restart, or behind a burst), so an accepted command may still be found.
/// Ask again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Pending {
    /// The id asked for.
    pub command_id: String,
    /// Why the answer is not known yet.
    pub reason: String,
}

/// The query itself was malformed (a subject token outside the allowed set,
/// or the wrong number of tokens).
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
    /// See [`Pending`].
    Pending(Pending),
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
            FeedbackAnswer::Pending(p) => &p.command_id,
            FeedbackAnswer::BadRequest(b) => &b.command_id,
        }
    }

    /// The status as it appears on the wire.
    pub fn status(&self) -> &'static str {
        match self {
            FeedbackAnswer::Accepted(_) => "accepted",
            FeedbackAnswer::Rejected(_) => "rejected",
            FeedbackAnswer::Unknown(_) => "unknown",
            FeedbackAnswer::Pending(_) => "pending",
            FeedbackAnswer::BadRequest(_) => "bad_request",
        }
    }
}

/// The answer to `errors.list.<type>.<id>`: the aggregate's recent
/// rejections, newest first, at most a configured number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RejectionList {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate instance id.
    pub aggregate_id: String,
    /// Newest first: one page of them.
    pub rejections: Vec<RejectionNotice>,
    /// The cursor of the next page (the request's `after`), or `null` on
    /// the last one (see [`crate::page`]).
    #[serde(default)]
    pub next: Option<String>,
}

/// One accepted command id in the command index (key: the command id),
/// laid out as the `accepted` answer of `status`: the aggregate whose first
/// event is earliest, and `others` when the id was accepted on several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandIndexEntry {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate instance id.
    pub aggregate_id: String,
    /// Its events, in stream order.
    pub events: Vec<EventRef>,
    /// The other aggregates this command id was accepted on, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<AggregateEvents>,
}

impl CommandIndexEntry {
    /// The entry of a command id first seen with `part`.
    pub fn new(part: AggregateEvents) -> Self {
        CommandIndexEntry {
            aggregate_type: part.aggregate_type,
            aggregate_id: part.aggregate_id,
            events: part.events,
            others: Vec::new(),
        }
    }

    /// Adds `part`; returns whether anything changed (a redelivered event
    /// changes nothing).
    pub fn merge(&mut self, part: AggregateEvents) -> bool {
        merge(
            &mut self.aggregate_type,
            &mut self.aggregate_id,
            &mut self.events,
            &mut self.others,
            part,
        )
    }
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
            details: None,
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

    fn part(id: &str, seqs: &[u64]) -> AggregateEvents {
        AggregateEvents {
            aggregate_type: "blogpost".into(),
            aggregate_id: id.into(),
            events: seqs
                .iter()
                .map(|&seq| EventRef {
                    event_type: "BlogPostCreated".into(),
                    stream: "EVT_BLOGPOST".into(),
                    seq,
                    aggregate_id: None,
                })
                .collect(),
        }
    }

    fn listed(entry: &CommandIndexEntry) -> Vec<(String, Vec<u64>)> {
        let seqs = |events: &[EventRef]| events.iter().map(|e| e.seq).collect();
        std::iter::once((entry.aggregate_id.clone(), seqs(&entry.events)))
            .chain(
                entry
                    .others
                    .iter()
                    .map(|o| (o.aggregate_id.clone(), seqs(&o.events))),
            )
            .collect()
    }

    #[test]
    fn one_id_on_two_aggregates_keeps_their_events_apart_in_any_order() {
        let want = vec![("p-A".to_string(), vec![13]), ("p-B".to_string(), vec![14])];
        let mut forward = CommandIndexEntry::new(part("p-A", &[13]));
        assert!(forward.merge(part("p-B", &[14])));
        assert_eq!(listed(&forward), want);
        // The index may see p-B's event first (another process took p-A's).
        let mut backward = CommandIndexEntry::new(part("p-B", &[14]));
        assert!(backward.merge(part("p-A", &[13])));
        assert_eq!(listed(&backward), want);
        // Redeliveries change nothing; a command's second event joins its own.
        assert!(!backward.merge(part("p-B", &[14])));
        assert!(backward.merge(part("p-A", &[12])));
        assert_eq!(
            listed(&backward),
            vec![
                ("p-A".to_string(), vec![12, 13]),
                ("p-B".to_string(), vec![14])
            ]
        );
        let mut status = AcceptedStatus::new("X", part("p-B", &[14]));
        assert!(status.merge(part("p-A", &[13])));
        assert_eq!(
            (status.aggregate_id.as_str(), status.others.len()),
            ("p-A", 1)
        );
        assert_eq!(
            serde_json::to_value(CommandIndexEntry::new(part("p-A", &[13]))).expect("json"),
            serde_json::json!({"aggregate_type":"blogpost","aggregate_id":"p-A",
                "events":[{"type":"BlogPostCreated","stream":"EVT_BLOGPOST","seq":13}]}),
            "an id on one aggregate has no `others`"
        );
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
