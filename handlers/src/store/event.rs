//! Events as the store writes them and reads them back.

use async_nats::header::HeaderMap;
use bytes::Bytes;

/// One stored event as read back.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its subject, `evt.<type>.<id>.<EventType>` (under the store's
    /// subject prefix, if any).
    pub subject: String,
    /// Its stream sequence.
    pub seq: u64,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its JSON body.
    pub payload: Bytes,
}

impl StoredEvent {
    /// The event type: the subject's last token.
    pub fn event_type(&self) -> &str {
        self.subject.rsplit('.').next().unwrap_or_default()
    }

    /// The body's version (`Event-Version`), 1 when unmarked.
    pub fn version(&self) -> u32 {
        self.headers
            .get(crate::header_names::EVENT_VERSION.clone())
            .and_then(|v| v.as_str().parse().ok())
            .unwrap_or(1)
    }

    /// The `Command-Id` header.
    pub fn command_id(&self) -> Option<&str> {
        self.headers
            .get(crate::header_names::COMMAND_ID.clone())
            .map(|v| v.as_str())
    }
}

/// One event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The event type (a validated token).
    pub event_type: String,
    /// The JSON body.
    pub body: Bytes,
}
