//! The event a projector folds: plain data, no NATS types.

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use jetsource_schemas::error::Error;
use jetsource_schemas::forgotten::{self, ForgottenNotice};
use jetsource_schemas::{headers, Namespace};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

/// One stored event, as a projector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its subject as stored, `evt.<aggregate_type>.<aggregate_id>.<EventType>`
    /// (under the subject prefix, when one is configured).
    pub subject: String,
    /// The stream holding it (`EVT_BLOGPOST`; `<prefix>_EVT_BLOGPOST` under
    /// a subject prefix).
    pub stream: String,
    /// Its stream sequence: the position `After-Seq` names.
    pub seq: u64,
    /// The aggregate type (`blogpost`).
    pub aggregate_type: String,
    /// The aggregate instance id.
    pub aggregate_id: String,
    /// The event type (`BlogPostCreated`).
    pub event_type: String,
    /// When it was decided (`Event-Time`), else when JetStream stored it;
    /// RFC 3339, UTC.
    pub time: String,
    /// Its headers (`Command-Id`, `Event-Version`, `Event-Time`, and
    /// `Correlation-Id` / `Causation-Id` when the command had them); the
    /// first value of each.
    pub headers: BTreeMap<String, String>,
    /// Its JSON body: the event's fields, without the type.
    pub body: Bytes,
}

impl Event {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The `Command-Id` of the command that appended it.
    pub fn command_id(&self) -> Option<&str> {
        self.header(headers::COMMAND_ID)
    }

    /// The body's schema version (`Event-Version`), 1 when absent.
    pub fn version(&self) -> u32 {
        self.header(headers::EVENT_VERSION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    /// Decodes the event into an aggregate's event enum (the same codec the
    /// command side wrote it with: variant = event type, fields = body).
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, serde_json::Error> {
        jetsource_schemas::codec::decode_event(&self.event_type, &self.body)
    }

    /// The body as a JSON value.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Builds the event stored at `seq` of `stream`, under `subject` (with
    /// `namespace`'s prefix, as stored). `stored_at` is when JetStream
    /// stored it (RFC 3339), the event's `time` unless it has an
    /// `Event-Time` header; `headers` hold the first value of each.
    ///
    /// Every event the runtime hands a projector is built here; tools and
    /// tests building events of their own call it too. Refused (kind
    /// [`EventErrorKind::NotAnEvent`]) when `subject` is not an event
    /// subject of `namespace`.
    pub fn from_parts(
        namespace: &Namespace,
        subject: String,
        stream: String,
        seq: u64,
        stored_at: String,
        headers: BTreeMap<String, String>,
        body: Bytes,
    ) -> Result<Event, EventError> {
        let Some(parsed) = namespace.parse_event(&subject) else {
            return Err(Error::new(
                EventErrorKind::NotAnEvent,
                format!(
                    "{stream} #{seq}: subject {subject:?} is not {}.<type>.<id>.<EventType>",
                    namespace.event_root()
                ),
            ));
        };
        let (aggregate_type, aggregate_id, event_type) = (
            parsed.aggregate_type.to_string(),
            parsed.aggregate_id.to_string(),
            parsed.event_type.to_string(),
        );
        let time = headers
            .get(headers::EVENT_TIME)
            .cloned()
            .unwrap_or(stored_at);
        Ok(Event {
            subject,
            stream,
            seq,
            aggregate_type,
            aggregate_id,
            event_type,
            time,
            headers,
            body,
        })
    }
}

/// Why a stored message is not an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventErrorKind {
    /// Its subject is not `evt.<aggregate_type>.<aggregate_id>.<EventType>`
    /// under the namespace's prefix.
    NotAnEvent,
    /// A consumer delivered it without JetStream metadata (stream,
    /// sequence, time).
    NoMetadata,
    /// Its personal fields do not open: a sealed value was altered, or
    /// the aggregate's data key could not be read.
    Sealed,
    /// Its aggregate's data key is wrapped under a master key, and this
    /// process has none, or another one (see
    /// [`jetsource_schemas::key_wrap`]): the event is not read as
    /// forgotten.
    MasterKey,
}

impl std::fmt::Display for EventErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EventErrorKind::NotAnEvent => "not an event subject",
            EventErrorKind::NoMetadata => "message without JetStream metadata",
            EventErrorKind::Sealed => "its personal data does not open",
            EventErrorKind::MasterKey => {
                "its data key is wrapped under a master key not configured"
            }
        })
    }
}

/// A stored message that is not an event.
pub type EventError = Error<EventErrorKind>;

/// A message as JetStream stored it, however it was read: a consumer's
/// delivery and a direct read of the stream carry the same parts.
struct Stored<'a> {
    subject: &'a str,
    stream: &'a str,
    seq: u64,
    time: time::OffsetDateTime,
    headers: Option<&'a HeaderMap>,
    payload: Bytes,
}

/// The one conversion of a stored message into an [`Event`]: consumer
/// deliveries ([`from_message`]) and messages read back from the stream
/// ([`from_stream_message`]) both come here, so both read headers, time
/// and subject (in `namespace`) alike.
fn from_stored(namespace: &Namespace, stored: Stored<'_>) -> Result<Event, EventError> {
    let mut first_values = BTreeMap::new();
    for (name, values) in stored.headers.iter().flat_map(|h| h.iter()) {
        if let Some(value) = values.first() {
            first_values.insert(name.to_string(), value.as_str().to_string());
        }
    }
    let stored_at = stored
        .time
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Event::from_parts(
        namespace,
        stored.subject.to_string(),
        stored.stream.to_string(),
        stored.seq,
        stored_at,
        first_values,
        stored.payload,
    )
}

/// The event a consumer delivered in `namespace`.
pub(crate) fn from_message(
    namespace: &Namespace,
    message: &jetstream::Message,
) -> Result<Event, EventError> {
    let info = message
        .info()
        .map_err(|e| Error::with_source(EventErrorKind::NoMetadata, e))?;
    let stored = Stored {
        subject: message.subject.as_str(),
        stream: info.stream,
        seq: info.stream_sequence,
        time: info.published,
        headers: message.headers.as_ref(),
        payload: message.payload.clone(),
    };
    from_stored(namespace, stored)
}

/// The event type of a forgotten notice handed to a [`crate::store::ReadStore`]
/// that asked for them ([`crate::store::ReadStore::forgotten_types`]): an
/// [`Event`] of the notices stream, its aggregate the one forgotten, its
/// body the notice ([`jetsource_schemas::forgotten::ForgottenNotice`]). No
/// event type is ever spelt so (`$` is not a token character).
pub const FORGOTTEN_EVENT: &str = "$Forgotten";

/// The forgotten notice a consumer delivered in `namespace`, as an
/// [`Event`] of type [`FORGOTTEN_EVENT`]. Refused (kind
/// [`EventErrorKind::NotAnEvent`]) when its body is not a notice or names
/// another aggregate than its subject.
pub(crate) fn notice_from_message(
    namespace: &Namespace,
    message: &jetstream::Message,
) -> Result<Event, EventError> {
    let info = message
        .info()
        .map_err(|e| Error::with_source(EventErrorKind::NoMetadata, e))?;
    let stored = Stored {
        subject: message.subject.as_str(),
        stream: info.stream,
        seq: info.stream_sequence,
        time: info.published,
        headers: None,
        payload: message.payload.clone(),
    };
    notice_from_stored(namespace, stored)
}

/// The forgotten notice read back from `stream` (by sequence), as
/// [`notice_from_message`] reads a delivered one (`replay-parked`).
pub(crate) fn notice_from_stream_message(
    namespace: &Namespace,
    stream: &str,
    message: jetstream::message::StreamMessage,
) -> Result<Event, EventError> {
    let stored = Stored {
        subject: message.subject.as_str(),
        stream,
        seq: message.sequence,
        time: message.time,
        headers: None,
        payload: message.payload.clone(),
    };
    notice_from_stored(namespace, stored)
}

fn notice_from_stored(namespace: &Namespace, stored: Stored<'_>) -> Result<Event, EventError> {
    let not_a_notice = |why: &str| {
        Error::new(
            EventErrorKind::NotAnEvent,
            format!(
                "{} #{}: not a forgotten notice: {why}",
                stored.stream, stored.seq
            ),
        )
    };
    let notice: ForgottenNotice =
        serde_json::from_slice(&stored.payload).map_err(|e| not_a_notice(&e.to_string()))?;
    let tokens = jetsource_schemas::subject::validate_aggregate_type(&notice.aggregate_type)
        .is_ok()
        && jetsource_schemas::token::validate("aggregate id", &notice.aggregate_id).is_ok();
    if !tokens
        || stored.subject
            != forgotten::subject(namespace, &notice.aggregate_type, &notice.aggregate_id)
    {
        return Err(not_a_notice(
            "its body names another aggregate than its subject",
        ));
    }
    Ok(Event {
        subject: stored.subject.to_string(),
        stream: stored.stream.to_string(),
        seq: stored.seq,
        aggregate_type: notice.aggregate_type,
        aggregate_id: notice.aggregate_id,
        event_type: FORGOTTEN_EVENT.to_string(),
        time: stored
            .time
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        headers: BTreeMap::new(),
        body: stored.payload,
    })
}

/// The event read back from `stream` (by sequence) in `namespace`.
pub(crate) fn from_stream_message(
    namespace: &Namespace,
    stream: &str,
    message: jetstream::message::StreamMessage,
) -> Result<Event, EventError> {
    let jetstream::message::StreamMessage {
        subject,
        sequence,
        headers,
        payload,
        time,
    } = message;
    let stored = Stored {
        subject: subject.as_str(),
        stream,
        seq: sequence,
        time,
        headers: Some(&headers),
        payload,
    };
    from_stored(namespace, stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(namespace: &Namespace, subject: &str) -> Result<Event, EventError> {
        Event::from_parts(
            namespace,
            subject.to_string(),
            namespace.stream_name("blogpost"),
            7,
            "2025-01-01T00:00:00Z".into(),
            BTreeMap::from([(
                headers::EVENT_TIME.to_string(),
                "2024-12-31T23:59:59Z".into(),
            )]),
            Bytes::from_static(b"{}"),
        )
    }

    #[test]
    fn parts_are_read_in_their_namespace() {
        let shop = Namespace::new("acme.shop").expect("a valid prefix");
        let event = build(&shop, "acme.shop.evt.blogpost.p1.BlogPostCreated").expect("an event");
        assert_eq!(
            (
                event.aggregate_type.as_str(),
                event.aggregate_id.as_str(),
                event.event_type.as_str()
            ),
            ("blogpost", "p1", "BlogPostCreated")
        );
        assert_eq!(event.time, "2024-12-31T23:59:59Z", "Event-Time wins");
        for (namespace, subject) in [
            (&shop, "evt.blogpost.p1.BlogPostCreated"),
            (
                &Namespace::default(),
                "acme.shop.evt.blogpost.p1.BlogPostCreated",
            ),
            (&Namespace::default(), "evt.blogpost.p1"),
        ] {
            let refused = build(namespace, subject).expect_err(subject);
            assert_eq!(refused.kind(), EventErrorKind::NotAnEvent);
        }
    }
}
