//! References to stored events.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where one event of an accepted command was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventRef {
    /// The event type, also the last token of its subject (`BlogPostCreated`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The JetStream stream holding it (`EVT_BLOGPOST`).
    pub stream: String,
    /// Its JetStream stream sequence.
    pub seq: u64,
}
