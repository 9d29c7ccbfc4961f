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

/// The `Nats-Msg-Id` of the `index`-th event (0-based) a command appended to
/// an aggregate.
///
/// It includes the aggregate id so that a command id reused on another
/// aggregate of the same type is never deduplicated against the first.
pub fn message_id(aggregate_id: &str, command_id: &str, index: usize) -> String {
    format!("{aggregate_id}:{command_id}:{index}")
}
