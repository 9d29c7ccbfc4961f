//! One instance as stored: one KV entry per instance holding its state,
//! the position of the last trigger applied per stream (so a redelivery is
//! recognised and not applied twice) and its pending deadlines (so a
//! deadline cancelled or moved after it fired is recognised as stale).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The stored form of an instance, generic over its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance<S> {
    /// Its state.
    pub state: S,
    /// Per stream, the last trigger applied: its sequence and the part of
    /// it (an event upcast into several inputs applies them one by one).
    pub applied: BTreeMap<String, (u64, usize)>,
    /// Pending deadlines: name → the time set (RFC 3339, UTC).
    pub deadlines: BTreeMap<String, String>,
}

impl<S> Instance<S> {
    /// True when the trigger at `seq` (part `part`) of `stream` is at or
    /// before the last one applied from it.
    pub fn has_applied(&self, stream: &str, seq: u64, part: usize) -> bool {
        has_applied(&self.applied, stream, seq, part)
    }
}

/// What an ended instance leaves: the body of the purge marker that ends
/// its entry, with the position of the last trigger applied per stream, so
/// a trigger redelivered after the end (a consumer that went back, as
/// after a server's crash) is recognised and does not start it again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// Per stream, the last trigger applied before the end.
    pub applied: BTreeMap<String, (u64, usize)>,
}

impl Ended {
    /// Like [`Instance::has_applied`].
    pub fn has_applied(&self, stream: &str, seq: u64, part: usize) -> bool {
        has_applied(&self.applied, stream, seq, part)
    }
}

fn has_applied(
    applied: &BTreeMap<String, (u64, usize)>,
    stream: &str,
    seq: u64,
    part: usize,
) -> bool {
    applied.get(stream).is_some_and(|last| (seq, part) <= *last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_at_or_before_the_last_applied_is_recognised() {
        let instance = Instance {
            state: (),
            applied: BTreeMap::from([("EVT_BLOGPOST".to_string(), (5, 1))]),
            deadlines: BTreeMap::new(),
        };
        assert!(instance.has_applied("EVT_BLOGPOST", 4, 3));
        assert!(instance.has_applied("EVT_BLOGPOST", 5, 0));
        assert!(instance.has_applied("EVT_BLOGPOST", 5, 1));
        assert!(!instance.has_applied("EVT_BLOGPOST", 5, 2));
        assert!(!instance.has_applied("EVT_BLOGPOST", 6, 0));
        assert!(!instance.has_applied("EVT_ACCOUNT", 1, 0), "another stream");
    }
}
