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
    /// The aggregate it belongs to, when that is not the one the listing
    /// names: a command that decided over several aggregates lists their
    /// events under the addressed one, each other aggregate's marked with
    /// its id. Absent for the named aggregate's own events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate_id: Option<String>,
}
