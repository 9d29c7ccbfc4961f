//! The domain contract of a projector: a name, the events it follows, a
//! fold, and the queries its read model answers.

use crate::config::PoisonPolicy;
use crate::event::Event;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// A read model folded from raw events: the form the runtime runs.
///
/// A read model usually implements [`TypedProjector`](crate::TypedProjector)
/// instead, which is a `Projector` too: its events arrive decoded, named by
/// their aggregate's Rust type. Implement this one where raw events are
/// wanted (a tool recording every event, a projector following part of a
/// stream by subject).
///
/// ```
/// use jetsource_projector::{Event, Projector, ProjectorError, Query, QueryError};
///
/// #[derive(Default)]
/// struct Count { events: u64 }
///
/// impl Projector for Count {
///     fn name(&self) -> &'static str { "count" }
///     fn subjects(&self) -> Vec<String> { vec!["evt.blogpost.>".into()] }
///     fn apply(&mut self, _event: &Event) -> Result<(), ProjectorError> {
///         self.events += 1;
///         Ok(())
///     }
///     fn query(&self, query: &Query) -> Result<serde_json::Value, QueryError> {
///         match query.path_str().as_slice() {
///             ["total"] => Ok(serde_json::json!({"events": self.events})),
///             _ => Err(QueryError::bad_request("known queries: total")),
///         }
///     }
/// }
/// ```
pub trait Projector: Send + Sync + 'static {
    /// The projection's name: `[A-Za-z0-9_-]{1,64}`, not `projectors`. It
    /// names the query subjects (`query.<name>.…`), the durable consumers
    /// and the KV bucket, so it must never change; never derive it from a
    /// Rust type name.
    fn name(&self) -> &'static str;

    /// The event subjects it follows, `evt.<aggregate_type>.…` with `*` and
    /// `>` allowed after the type: `evt.blogpost.>` for every blog post
    /// event, `evt.blogpost.*.BlogPostPublished` for one event type. Each
    /// aggregate type is one stream (`EVT_<TYPE>`); several types may be
    /// followed at once. Within a stream events arrive in stream order;
    /// across streams there is no order. Subjects are named without the
    /// subject prefix: under one, the runtime follows them under it.
    fn subjects(&self) -> Vec<String>;

    /// Folds one event into the read model.
    ///
    /// On `Err` the state must be as before the call. In memory, a
    /// [`ProjectorErrorKind::Transient`] error is retried and any other
    /// error halts the projector at this event. Persisted, the event is
    /// delivered again with a growing back-off and, after the policy's
    /// number of deliveries, parked with its error (never lost): the
    /// projector then halts or skips it, per [`PersistedProjector::poison_policy`].
    /// Either way the status reports it.
    fn apply(&mut self, event: &Event) -> Result<(), ProjectorError>;

    /// Effects outside the read model (mail, calls to other systems), run
    /// right after `apply` succeeded for an event the projection meets live.
    ///
    /// Only persisted projections call it, and only the one active
    /// instance; never while a rebuild replays history. An event may meet
    /// it again when a crash strikes before its batch is stored (at least
    /// once). In-memory projections never call it: every process replays
    /// every event. The default does nothing.
    fn side_effects(&self, _event: &Event) {}

    /// Answers a query on `query.<name>.<path…>` from the current state.
    fn query(&self, query: &Query) -> Result<serde_json::Value, QueryError>;
}

/// A projector whose state is kept in a NATS KV bucket, together with the
/// last stream sequence applied, so a restart resumes where it stopped and a
/// redelivered event is never applied twice.
pub trait PersistedProjector: Projector {
    /// The state stored (as JSON, in one KV value: keep it well under the
    /// server's `max_payload`, 1 MiB by default).
    type State: Serialize + DeserializeOwned + Send + Sync;

    /// The current state.
    fn state(&self) -> &Self::State;

    /// Replaces the state with one read back from the bucket.
    fn restore(&mut self, state: Self::State);

    /// Its poison policy: how many failed deliveries park an event and
    /// whether it then stops or skips. The default keeps `default`, the
    /// runtime's settings (5 deliveries, stop).
    fn poison_policy(&self, default: PoisonPolicy) -> PoisonPolicy {
        default
    }
}

/// What went wrong applying an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProjectorErrorKind {
    /// Worth retrying (an outside resource was briefly unavailable).
    Transient,
    /// The event cannot be applied (an unknown event type, a body that does
    /// not decode). An in-memory projector halts here rather than skip it;
    /// a persisted one, like for any failure, retries the delivery and then
    /// parks the event per its [`PoisonPolicy`].
    Invalid,
    /// A document projection named a document key that is not a valid key
    /// (see [`crate::document::check_key`]); the event is parked.
    BadKey,
    /// A document projection's document would be larger than one message
    /// may be (the server's `max_payload`); the event is parked and the
    /// document stays as it was.
    TooLarge,
}

impl fmt::Display for ProjectorErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProjectorErrorKind::Transient => "transient",
            ProjectorErrorKind::Invalid => "invalid event",
            ProjectorErrorKind::BadKey => "bad document key",
            ProjectorErrorKind::TooLarge => "document too large",
        })
    }
}

/// An apply failure.
pub type ProjectorError = jetsource_schemas::error::Error<ProjectorErrorKind>;

/// A query: `query.<projection>.<path…>` with an optional JSON body.
#[derive(Debug, Clone)]
pub struct Query {
    /// The projection's name.
    pub projection: String,
    /// The subject's tokens after the projection's name (`["get", "p1"]`).
    pub path: Vec<String>,
    /// The request body (often empty).
    pub body: Bytes,
    /// The bytes the result may take so that the whole answer fits in one
    /// message: the connection's `max_payload` less room for the rest of
    /// the answer. A list answers a page within it; a larger answer is
    /// replied `too_large`.
    pub budget: usize,
}

impl Query {
    /// The path as string slices, to match on.
    pub fn path_str(&self) -> Vec<&str> {
        self.path.iter().map(String::as_str).collect()
    }
}

/// Why a query has no answer; replied as `{"status":<code>,"reason":…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// The status code on the wire.
    pub code: QueryErrorCode,
    /// Why, for people.
    pub reason: String,
}

/// The codes a projector may answer a query with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryErrorCode {
    /// The thing asked for does not exist (`not_found`).
    NotFound,
    /// The query is malformed or unknown (`bad_request`).
    BadRequest,
    /// The read model's storage cannot answer now (`unavailable`).
    Unavailable,
}

impl QueryErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryErrorCode::NotFound => "not_found",
            QueryErrorCode::BadRequest => "bad_request",
            QueryErrorCode::Unavailable => "unavailable",
        }
    }
}

impl QueryError {
    /// A `not_found` answer.
    pub fn not_found(reason: impl Into<String>) -> Self {
        QueryError {
            code: QueryErrorCode::NotFound,
            reason: reason.into(),
        }
    }

    /// An `unavailable` answer.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        QueryError {
            code: QueryErrorCode::Unavailable,
            reason: reason.into(),
        }
    }

    /// A `bad_request` answer.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        QueryError {
            code: QueryErrorCode::BadRequest,
            reason: reason.into(),
        }
    }
}
