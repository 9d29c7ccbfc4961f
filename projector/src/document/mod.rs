//! Document projections: a read model of many small documents, one per
//! key (usually one per aggregate), folded event by event and stored one
//! KV entry per document by [`crate::store::DocumentStore`].
//!
//! ```
//! use jetsource_projector::document::DocumentProjector;
//! use jetsource_projector::{Follows, ProjectorError};
//! # use jetsource_projector::{Event, Meta};
//! # #[derive(Debug)] struct Any(Meta);
//! # impl Follows for Any {
//! #   fn aggregate_types() -> Vec<&'static str> { vec!["blogpost"] }
//! #   fn decode(e: &Event) -> Result<Option<Self>, ProjectorError> { unimplemented!() }
//! #   fn meta(&self) -> &Meta { &self.0 }
//! # }
//!
//! struct Counts;
//!
//! impl DocumentProjector for Counts {
//!     type Input = Any;
//!     type Document = u64;
//!     fn name(&self) -> &'static str { "counts" }
//!     fn key(&self, input: &Any) -> Option<String> {
//!         Some(input.meta().aggregate_id.clone())
//!     }
//!     fn apply(&self, count: Option<u64>, _input: Any) -> Result<Option<u64>, ProjectorError> {
//!         Ok(Some(count.unwrap_or(0) + 1))
//!     }
//! }
//! ```
//!
//! # Layout
//! - this module: [`DocumentProjector`] and the key rules.
//! - `answer`: the `get` and `list` queries' requests and pages, the
//!   same wherever the documents are kept.
//! - [`in_memory`]: [`InMemory`], a document projection folded in memory.

mod answer;
pub mod in_memory;

pub(crate) use answer::{not_found as answer_not_found, page, Asked};
pub use in_memory::InMemory;

use crate::config::PoisonPolicy;
use crate::projector::{ProjectorError, ProjectorErrorKind};
use crate::typed::Follows;
use jetsource_schemas::error::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The most bytes a document key may have.
pub const MAX_KEY_BYTES: usize = 256;

/// A read model of documents, each folded from the events that name its
/// key. Hosted with [`crate::ProjectorRuntimeBuilder::documents`].
pub trait DocumentProjector: Send + Sync + 'static {
    /// The events it follows, typed (an [`crate::Envelope`], or several
    /// aggregate types with [`crate::follows!`]).
    type Input: Follows;

    /// One document, stored as JSON in its own KV entry.
    type Document: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The projection's name (see [`crate::Projector::name`]).
    fn name(&self) -> &'static str;

    /// Items a `list` page holds when the request names no limit.
    const LIST_DEFAULT: usize = crate::store::DEFAULT_LIMIT;
    /// The most items a `list` page holds, whatever is asked.
    const LIST_MAX: usize = crate::store::MAX_LIMIT;

    /// The event subjects it follows: every event of its input's types.
    fn subjects(&self) -> Vec<String> {
        Self::Input::subjects()
    }

    /// The document an event touches (usually `input.meta().aggregate_id`),
    /// or `None` for none. It must be a valid key (see [`check_key`]): an
    /// event naming another fails and is parked.
    fn key(&self, input: &Self::Input) -> Option<String>;

    /// Folds one event into its document (`None`: there is none yet);
    /// returns the new document, or `None` to delete it. On `Err` the event
    /// is retried and then parked, like any failing persisted apply.
    fn apply(
        &self,
        document: Option<Self::Document>,
        input: Self::Input,
    ) -> Result<Option<Self::Document>, ProjectorError>;

    /// Its poison policy; the default keeps the runtime's.
    fn poison_policy(&self, default: PoisonPolicy) -> PoisonPolicy {
        default
    }

    /// Checks a key this projection may hold: by default [`check_key`]. A
    /// projection whose keys are narrower (aggregate ids) refuses more, so
    /// that a query naming a key it can never hold is `bad_request` rather
    /// than `not_found`. [`check_key`] applies whatever this says: a wider
    /// rule cannot let in a key the store cannot keep.
    fn check_key(&self, key: &str) -> Result<(), ProjectorError> {
        check_key(key)
    }

    /// What to do with the documents derived from aggregate
    /// `aggregate_id` of `aggregate_type` (one of its input's types) once
    /// its personal data was forgotten (`jetsource forget`). By default
    /// [`Forgotten::Keep`]: documents keep what they folded, plain values
    /// included, until a rebuild folds them afresh (redacted). Called once
    /// per forget, in order with the events, also when the projection was
    /// down at the time (it follows the stored notices) and in a rebuild's
    /// replay.
    fn forgotten(&self, aggregate_type: &str, aggregate_id: &str) -> Forgotten {
        let _ = (aggregate_type, aggregate_id);
        Forgotten::Keep
    }

    /// One document as a `list` page shows it: by default `{"key": key,
    /// "document": document}`. A projection whose documents carry their
    /// key may list them bare.
    fn list_item(&self, key: &str, document: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"key": key, "document": document})
    }
}

/// What a document projection does once an aggregate it folded was
/// forgotten (see [`DocumentProjector::forgotten`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forgotten {
    /// Keep every document as it is.
    Keep,
    /// Drop these documents (keys, as [`DocumentProjector::key`] names
    /// them). Each becomes a tombstone holding the forgotten aggregate's
    /// stream position at the forget, so no event of the aggregate up to
    /// then is folded into it again, whichever of the notice and those
    /// events the projection meets first (a projection behind, a rebuild);
    /// events after the forget start it afresh. A document folded from
    /// several aggregates loses the not yet applied events of the others
    /// up to that position too: drop only documents of the one aggregate.
    Drop(Vec<String>),
}

/// Checks `key` by [`check_key`] and then by `projector`'s own rule.
pub(crate) fn check_key_of<P: DocumentProjector>(
    projector: &P,
    key: &str,
) -> Result<(), ProjectorError> {
    check_key(key)?;
    projector.check_key(key)
}

/// Checks a document key: 1 to [`MAX_KEY_BYTES`] bytes of `A-Z a-z 0-9`
/// and `- _ / = .`, not starting or ending with `.`, without `..`, and not
/// starting with `_` (the store's own entries).
pub fn check_key(key: &str) -> Result<(), ProjectorError> {
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_BYTES
        && !key.starts_with(['.', '_'])
        && !key.ends_with('.')
        && !key.contains("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/=.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(Error::new(
            ProjectorErrorKind::BadKey,
            format!(
                "document key {:?} is not 1-{MAX_KEY_BYTES} bytes of [A-Za-z0-9-_/=.] \
                 (no leading '_' or '.', no trailing '.', no '..')",
                key.chars().take(80).collect::<String>()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        for good in ["p1", "a-b_c/d=e.f", &"x".repeat(MAX_KEY_BYTES)] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "_checkpoint",
            "a b",
            "a*",
            "a>",
            "é",
            &"x".repeat(MAX_KEY_BYTES + 1),
        ] {
            let e = check_key(bad).expect_err(bad);
            assert_eq!(e.kind(), ProjectorErrorKind::BadKey);
        }
    }
}
