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
    /// A command over several aggregates lists all of them, each other
    /// aggregate's marked with its [`EventRef::aggregate_id`].
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
    /// What the aggregate said besides, for the caller to branch on (its
    /// own error type, as JSON); absent when it said nothing more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl Rejected {
    /// The details read as `T` (the aggregate's error type); `None` without
    /// details.
    pub fn details_as<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Option<Result<T, serde_json::Error>> {
        self.details.clone().map(serde_json::from_value)
    }
}

/// The most bytes a rejection's `details` take as JSON: bounded like its
/// reason, every rejection fits in a reply, a notice and the error cache.
pub const MAX_DETAILS_BYTES: usize = 4096;

/// `details` when its JSON fits in [`MAX_DETAILS_BYTES`], else `None`.
pub fn bounded_details(details: serde_json::Value) -> Option<serde_json::Value> {
    let fits = serde_json::to_vec(&details).is_ok_and(|b| b.len() <= MAX_DETAILS_BYTES);
    fits.then_some(details)
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

/// The longest `reason` a rejection carries, in bytes. A reason may quote
/// what the client sent (a malformed header) or be written by an aggregate;
/// bounded, every rejection fits in a reply, a notice and the error cache's
/// lists, whatever was sent.
pub const MAX_REASON_BYTES: usize = 1024;

/// `reason`, cut to at most [`MAX_REASON_BYTES`] on a character boundary,
/// saying how long it was.
pub fn bounded_reason(reason: String) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let total = reason.len();
    // Room for the note below, whatever the length's digits.
    let mut cut = MAX_REASON_BYTES - 40;
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… (cut: {total} bytes in all)", &reason[..cut])
}

/// A short, printable excerpt of an untrusted value for a reason: at most
/// `max` characters of it, escaped as Rust's `{:?}` does, and its length
/// when longer.
pub fn excerpt(value: &str, max: usize) -> String {
    let shown: String = value.chars().take(max).collect();
    if shown.len() == value.len() {
        format!("{shown:?}")
    } else {
        format!("{shown:?}… ({} bytes)", value.len())
    }
}

impl CommandReply {
    /// A rejection; `reason` is bounded ([`bounded_reason`]).
    pub fn rejected(
        command_id: impl Into<String>,
        code: RejectionCode,
        reason: impl Into<String>,
    ) -> Self {
        CommandReply::Rejected(Rejected {
            command_id: command_id.into(),
            code,
            reason: bounded_reason(reason.into()),
            details: None,
        })
    }

    /// A rejection with `details` (bounded, [`bounded_details`]).
    pub fn rejected_with_details(
        command_id: impl Into<String>,
        code: RejectionCode,
        reason: impl Into<String>,
        details: Option<serde_json::Value>,
    ) -> Self {
        CommandReply::Rejected(Rejected {
            command_id: command_id.into(),
            code,
            reason: bounded_reason(reason.into()),
            details: details.and_then(bounded_details),
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

    /// Appends the reply's JSON to `out`: the same bytes as serde_json
    /// writes from [`Serialize`].
    ///
    /// Every accepted command's reply is encoded, so an accepted reply is
    /// written directly: serde's internally tagged enums go through a
    /// generic map serializer, and its strings (ids, types, stream names)
    /// almost never need escaping, which one scan tells. A rejection goes
    /// through serde_json.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let accepted = match self {
            CommandReply::Accepted(accepted) => accepted,
            CommandReply::Rejected(_) => return serde_json::to_writer(out, self),
        };
        out.extend_from_slice(br#"{"status":"accepted","command_id":"#);
        json_string(out, &accepted.command_id)?;
        out.extend_from_slice(br#","aggregate_type":"#);
        json_string(out, &accepted.aggregate_type)?;
        out.extend_from_slice(br#","aggregate_id":"#);
        json_string(out, &accepted.aggregate_id)?;
        out.extend_from_slice(br#","events":["#);
        for (i, event) in accepted.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"type":"#);
            json_string(out, &event.event_type)?;
            out.extend_from_slice(br#","stream":"#);
            json_string(out, &event.stream)?;
            out.extend_from_slice(br#","seq":"#);
            serde_json::to_writer(&mut *out, &event.seq)?;
            if let Some(aggregate_id) = &event.aggregate_id {
                out.extend_from_slice(br#","aggregate_id":"#);
                json_string(out, aggregate_id)?;
            }
            out.push(b'}');
        }
        out.extend_from_slice(if accepted.duplicate {
            br#"],"duplicate":true}"#
        } else {
            br#"],"duplicate":false}"#
        });
        Ok(())
    }

    /// The reply's JSON ([`Self::write_json`]) as bytes to publish: encoded
    /// into a per-thread buffer and copied out once, at its exact size.
    pub fn to_bytes(&self) -> Result<bytes::Bytes, serde_json::Error> {
        crate::scratch::encode(|body| {
            self.write_json(body)?;
            Ok::<_, serde_json::Error>(0..body.len())
        })
    }
}

/// Writes `s` as a JSON string: verbatim when nothing in it needs escaping
/// (serde_json escapes only `"`, `\\` and control characters), else
/// through serde_json.
fn json_string(out: &mut Vec<u8>, s: &str) -> Result<(), serde_json::Error> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_travel_bounded_and_read_back_typed() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Short {
            balance: u64,
        }
        let reply = CommandReply::rejected_with_details(
            "c1",
            RejectionCode::Validation,
            "short",
            Some(serde_json::json!({"balance": 3})),
        );
        let text = String::from_utf8(reply.to_bytes().expect("encodes").to_vec()).expect("utf-8");
        assert_eq!(
            text,
            r#"{"status":"rejected","command_id":"c1","code":"validation","reason":"short","details":{"balance":3}}"#
        );
        let CommandReply::Rejected(rejected) = serde_json::from_str(&text).expect("decodes") else {
            panic!("not a rejection");
        };
        let details: Short = rejected.details_as().expect("details").expect("a Short");
        assert_eq!(details, Short { balance: 3 });
        let big = serde_json::json!({"text": "x".repeat(MAX_DETAILS_BYTES)});
        let CommandReply::Rejected(cut) =
            CommandReply::rejected_with_details("c2", RejectionCode::Validation, "big", Some(big))
        else {
            panic!("not a rejection");
        };
        assert_eq!((cut.details, cut.reason.as_str()), (None, "big"));
        let none = CommandReply::rejected("c3", RejectionCode::Internal, "no");
        assert!(!String::from_utf8_lossy(&none.to_bytes().expect("encodes")).contains("details"));
    }

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
                aggregate_id: None,
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
    fn a_reason_is_bounded_whatever_it_quotes() {
        let short = CommandReply::rejected("c", RejectionCode::BadRequest, "short");
        assert!(matches!(&short, CommandReply::Rejected(r) if r.reason == "short"));
        let huge = "é".repeat(300_000);
        let CommandReply::Rejected(r) =
            CommandReply::rejected("c", RejectionCode::Validation, huge.clone())
        else {
            panic!("a rejection");
        };
        assert!(r.reason.len() <= MAX_REASON_BYTES, "{}", r.reason.len());
        assert!(
            r.reason.ends_with("(cut: 600000 bytes in all)"),
            "{}",
            r.reason
        );
        assert!(huge.starts_with(r.reason.split('…').next().expect("a prefix")));
        assert_eq!(excerpt("12x", 8), "\"12x\"");
        assert_eq!(
            excerpt(&"\u{1}".repeat(200_000), 8),
            format!("{:?}… (200000 bytes)", "\u{1}".repeat(8))
        );
    }

    #[test]
    fn write_json_is_byte_for_byte_what_serde_writes() {
        let event = |event_type: &str, stream: &str, seq| EventRef {
            event_type: event_type.into(),
            stream: stream.into(),
            seq,
            aggregate_id: None,
        };
        let accepted = |command_id: &str, aggregate_id: &str, events, duplicate| {
            CommandReply::Accepted(Accepted {
                command_id: command_id.into(),
                aggregate_type: "blogpost".into(),
                aggregate_id: aggregate_id.into(),
                events,
                duplicate,
            })
        };
        let replies = [
            accepted(
                "c1",
                "p1",
                vec![event("BlogPostCreated", "EVT_BLOGPOST", 12)],
                false,
            ),
            accepted("c1", "p1", vec![], false),
            accepted(
                "0190a6b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b",
                "p-17",
                vec![
                    event("A", "APP_EVT_X", 1),
                    event("B", "APP_EVT_X", 2),
                    event("C", "APP_EVT_X", u64::MAX),
                ],
                true,
            ),
            // Strings that need escaping, and some that do not but look odd.
            accepted(
                "quote\"back\\slash",
                "tab\tnl\ncr\r\u{1}",
                vec![event("é✓", "\u{7f}", 0)],
                false,
            ),
            accepted("", "", vec![event("", "", 0)], true),
            // A command over several aggregates: the others' events name
            // their aggregate.
            accepted(
                "t1",
                "a1",
                vec![
                    event("TransferSent", "EVT_ACCOUNT", 7),
                    EventRef {
                        aggregate_id: Some("b\"2".into()),
                        ..event("TransferReceived", "EVT_ACCOUNT", 8)
                    },
                ],
                false,
            ),
            CommandReply::rejected("c1", RejectionCode::Validation, "title \"x\" is\nempty"),
            CommandReply::rejected("", RejectionCode::Internal, ""),
        ];
        for reply in &replies {
            let mut written = Vec::new();
            reply.write_json(&mut written).expect("writes");
            let serde = serde_json::to_vec(reply).expect("serialize");
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&serde)
            );
            let back: CommandReply = serde_json::from_slice(&written).expect("reads back");
            assert_eq!(&back, reply);
        }
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
