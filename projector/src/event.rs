//! The event a projector folds: plain data, no NATS types.

use bytes::Bytes;
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

    /// Builds an event from its parts; `None` when the subject is not an
    /// event subject (without a subject prefix; see [`Event::from_parts_in`]).
    pub fn from_parts(
        subject: String,
        stream: String,
        seq: u64,
        stored_at: String,
        headers: BTreeMap<String, String>,
        body: Bytes,
    ) -> Option<Event> {
        Self::from_parts_in(
            &Namespace::default(),
            subject,
            stream,
            seq,
            stored_at,
            headers,
            body,
        )
    }

    /// Like [`Event::from_parts`], for a subject under `namespace`'s prefix.
    pub fn from_parts_in(
        namespace: &Namespace,
        subject: String,
        stream: String,
        seq: u64,
        stored_at: String,
        headers: BTreeMap<String, String>,
        body: Bytes,
    ) -> Option<Event> {
        let parsed = namespace.parse_event(&subject)?;
        let (aggregate_type, aggregate_id, event_type) = (
            parsed.aggregate_type.to_string(),
            parsed.aggregate_id.to_string(),
            parsed.event_type.to_string(),
        );
        let time = headers
            .get(headers::EVENT_TIME)
            .cloned()
            .unwrap_or(stored_at);
        Some(Event {
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

/// Converts a JetStream message of `namespace` into an [`Event`], or says
/// why it is not one.
pub(crate) fn from_message(
    namespace: &Namespace,
    message: &async_nats::jetstream::Message,
) -> Result<Event, String> {
    let info = message
        .info()
        .map_err(|e| format!("message without JetStream metadata: {e}"))?;
    let mut map = BTreeMap::new();
    if let Some(h) = &message.headers {
        for (name, values) in h.iter() {
            if let Some(value) = values.first() {
                map.insert(name.to_string(), value.as_str().to_string());
            }
        }
    }
    let stored_at = info
        .published
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let (stream, seq) = (info.stream.to_string(), info.stream_sequence);
    Event::from_parts_in(
        namespace,
        message.subject.to_string(),
        stream.clone(),
        seq,
        stored_at,
        map,
        message.payload.clone(),
    )
    .ok_or_else(|| {
        format!(
            "{stream} #{seq}: subject {:?} is not {}.<type>.<id>.<EventType>",
            message.subject.as_str(),
            namespace.event_root()
        )
    })
}
