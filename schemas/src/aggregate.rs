//! The domain side of jetsource: what an aggregate is.
//!
//! An aggregate is its own state. [`Aggregate::handle`] is a pure,
//! synchronous decision: given the state built from the aggregate's
//! confirmed events and a command, it returns the events to append or a
//! [`Rejection`]. [`Aggregate::apply`] folds one event into the state and
//! cannot fail: every business rule lives in `handle`, so replaying history
//! never stops on an event that was once accepted.
//!
//! It lives in the contract crate because both sides name aggregates by
//! it: the command runtime hosts them, and read models, process managers
//! and clients follow their events and send their commands by type.
//!
//! Nothing here knows about NATS. The runtime decodes commands from the
//! subject's last token and the JSON body, and events from the subject's last
//! token and the JSON body, with serde's default ("externally tagged") enum
//! representation: a command enum variant named `create` (after serde
//! renames) is the command `cmd.<type>.<id>.create`; an event variant named
//! `BlogPostCreated` is stored on `evt.<type>.<id>.BlogPostCreated` with the
//! variant's fields as its body.

use crate::personal::PersonalData;
use crate::upcast::Upcasters;
use crate::RejectionCode;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// An event-sourced aggregate: state, decision and fold.
///
/// ```
/// use jetsource_schemas::aggregate::{Aggregate, Rejection};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Clone)]
/// struct Counter { exists: bool, value: u64 }
///
/// #[derive(Deserialize)]
/// #[serde(rename_all = "snake_case", deny_unknown_fields)]
/// enum CounterCommand { Start {}, Add { by: u64 } }
///
/// #[derive(Serialize, Deserialize)]
/// enum CounterEvent { Started {}, Added { by: u64 } }
///
/// impl Aggregate for Counter {
///     const TYPE: &'static str = "counter";
///     type Command = CounterCommand;
///     type Event = CounterEvent;
///
///     fn handle(&self, command: CounterCommand) -> Result<Vec<CounterEvent>, Rejection> {
///         match command {
///             CounterCommand::Start {} if self.exists => Err(Rejection::validation("already started")),
///             CounterCommand::Start {} => Ok(vec![CounterEvent::Started {}]),
///             CounterCommand::Add { .. } if !self.exists => Err(Rejection::not_found("no such counter")),
///             CounterCommand::Add { by } => Ok(vec![CounterEvent::Added { by }]),
///         }
///     }
///
///     fn apply(&mut self, event: CounterEvent) {
///         match event {
///             CounterEvent::Started {} => self.exists = true,
///             CounterEvent::Added { by } => self.value = self.value.saturating_add(by),
///         }
///     }
/// }
/// ```
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The aggregate type: `[a-z0-9_-]{1,64}`. It names the command and event
    /// subjects and the stream (`EVT_<TYPE>`), so it must never change.
    const TYPE: &'static str;

    /// The schema version of the event bodies, written in each event's
    /// `Event-Version` header unless it is 1 (which a missing header means).
    /// Raise it when the shape of an event body changes, and list in
    /// [`Aggregate::upcasters`] how the previous version's events read now.
    const EVENT_VERSION: u32 = 1;

    /// How events stored at older [`Aggregate::EVENT_VERSION`]s read as
    /// today's: a chain of steps, each from one version to the next (see
    /// [`Upcasters`]). Every reader of the events applies them. Default:
    /// none, every event reads as stored.
    fn upcasters() -> Upcasters {
        Upcasters::new()
    }

    /// The JSON Schema of the `details` its rejections carry, when it gives
    /// any: its [`DomainError`] type's (`Some(schemars::schema_for!(OrderError))`).
    /// `jetsource schema` publishes it as `<type>/details.json`, so callers
    /// in other languages branch on the details by a file. Default: none.
    fn details_schema() -> Option<schemars::Schema> {
        None
    }

    /// The personal fields of the events (see [`crate::personal`]): each
    /// is stored sealed under a key of the aggregate instance's own, and
    /// reads as its redaction value once that key is forgotten. Default:
    /// none, and the events are stored exactly as encoded.
    fn personal_data() -> PersonalData {
        PersonalData::new()
    }

    /// The commands, an enum deserialized from `(command name, JSON body)`.
    type Command: DeserializeOwned + Send + 'static;

    /// The events, an enum whose variant names are the event types.
    type Event: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Decides what `command` does to this state. Pure and synchronous:
    /// no I/O, no clock, no randomness, so it can be retried after a
    /// concurrency conflict and tested without a server.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Rejection>;

    /// Folds one confirmed event into the state. Infallible.
    fn apply(&mut self, event: Self::Event);

    /// The other aggregates of this type whose state `command` decides
    /// over, by id, as the command names them (from its body, say): a
    /// transfer names the account it pays into. Default: none, and the
    /// command is decided by [`Aggregate::handle`] on its own aggregate
    /// alone, exactly as if this method did not exist.
    ///
    /// When it names any, the runtime loads each of them (and the
    /// addressed one), hands all their states to
    /// [`Aggregate::handle_many`], and appends the events for every
    /// aggregate in one atomic write that checks each aggregate is still
    /// at the state the decision saw. An id that is not a token is
    /// `bad_request`; naming the addressed aggregate itself is allowed
    /// (the decision sees it as itself, not among the others).
    fn involves(command: &Self::Command) -> Vec<String> {
        let _ = command;
        Vec::new()
    }

    /// Decides a command that [`Aggregate::involves`] other aggregates:
    /// `self` is the addressed aggregate, `id` its id, and `others` holds
    /// the state of every other id `involves` named (the default state
    /// for one without events, so that telling "does not exist" is the
    /// decision's). Returns each event with the id of the aggregate it
    /// belongs to, `id` or one of `others`: the events of one aggregate
    /// are appended in the order given, and all of them in one atomic
    /// write, or none.
    ///
    /// Pure and synchronous, like `handle`: after a concurrency conflict
    /// on any of the aggregates it is asked again on their new states.
    /// Only the aggregates that get an event are checked at commit: a
    /// decision must give an event to every aggregate whose state it
    /// relies on (see PROTOCOL.md). Default: `handle` on `self`, every
    /// event on `id`.
    fn handle_many(
        &self,
        id: &str,
        command: Self::Command,
        others: &BTreeMap<&str, &Self>,
    ) -> Result<Vec<(String, Self::Event)>, Rejection> {
        let _ = others;
        Ok(self
            .handle(command)?
            .into_iter()
            .map(|event| (id.to_string(), event))
            .collect())
    }

    /// The version of what [`Aggregate::snapshot`] writes. A snapshot of
    /// another version is ignored and the history replayed instead: raise it
    /// with any change to the snapshot's shape or to what `apply` makes of
    /// the events.
    const SNAPSHOT_VERSION: u32 = 1;

    /// The state as a snapshot, or `None` (the default) for an aggregate
    /// that takes none. With snapshots, a process meeting a long-lived
    /// aggregate reads its latest snapshot and the events after it instead
    /// of its whole history.
    fn snapshot(&self) -> Option<serde_json::Value> {
        None
    }

    /// The state back from a snapshot of this [`Aggregate::SNAPSHOT_VERSION`],
    /// or `None` when it does not read (the history is replayed then).
    fn from_snapshot(snapshot: serde_json::Value) -> Option<Self> {
        let _ = snapshot;
        None
    }
}

/// What kind of "no" a decision said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// A business rule was broken (`validation` on the wire).
    Validation,
    /// The command needs an aggregate that does not exist (`not_found`).
    NotFound,
    /// The command conflicts with the aggregate's current state in a way the
    /// client should resolve by reloading (`conflict`).
    Conflict,
}

/// A decision's refusal: the command is denied, nothing is appended.
///
/// Besides its kind and reason it may carry `details`, a JSON value the
/// caller branches on (`{"error":"insufficient_funds","balance":3}`): given
/// with [`Rejection::with_details`], or made from the aggregate's own error
/// type by `?` when that type implements [`DomainError`]. The details travel
/// in the reply, the rejection notice, the error cache and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    reason: String,
    details: Option<serde_json::Value>,
}

/// An aggregate's own error type: what its `handle` refuses with, carried to
/// the caller as the rejection's `details` (its JSON), its `reason` (its
/// `Display`) and its kind ([`DomainError::kind`], `validation` unless it
/// says otherwise). `?` turns one into a [`Rejection`].
///
/// ```
/// use jetsource_schemas::aggregate::{DomainError, Rejection, RejectionKind};
///
/// #[derive(Debug, serde::Serialize)]
/// #[serde(tag = "error", rename_all = "snake_case")]
/// enum OrderError { TooManyItems { max: u32 } }
///
/// impl std::fmt::Display for OrderError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         match self { OrderError::TooManyItems { max } => write!(f, "at most {max} items") }
///     }
/// }
/// impl DomainError for OrderError {}
///
/// let refused = Rejection::from(OrderError::TooManyItems { max: 10 });
/// assert_eq!(refused.kind(), RejectionKind::Validation);
/// assert_eq!(refused.reason(), "at most 10 items");
/// assert_eq!(refused.details(), Some(&serde_json::json!({"error": "too_many_items", "max": 10})));
/// ```
pub trait DomainError: serde::Serialize + fmt::Display {
    /// The kind of refusal it is.
    fn kind(&self) -> RejectionKind {
        RejectionKind::Validation
    }
}

impl<E: DomainError> From<E> for Rejection {
    fn from(error: E) -> Self {
        Rejection {
            kind: error.kind(),
            reason: error.to_string(),
            details: None,
        }
        .with_details(&error)
    }
}

impl Rejection {
    /// A broken business rule.
    pub fn validation(reason: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::Validation,
            reason: reason.into(),
            details: None,
        }
    }

    /// A missing aggregate.
    pub fn not_found(reason: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::NotFound,
            reason: reason.into(),
            details: None,
        }
    }

    /// A conflict with the current state.
    pub fn conflict(reason: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::Conflict,
            reason: reason.into(),
            details: None,
        }
    }

    /// The same refusal, carrying `details` (any value that serializes to
    /// JSON; one that does not, or whose JSON is over
    /// [`crate::reply::MAX_DETAILS_BYTES`], is left out, and the code and
    /// reason still go).
    pub fn with_details(mut self, details: impl serde::Serialize) -> Self {
        self.details = serde_json::to_value(details)
            .ok()
            .and_then(crate::reply::bounded_details);
        self
    }

    /// The kind of refusal.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The details for the caller, if any.
    pub fn details(&self) -> Option<&serde_json::Value> {
        self.details.as_ref()
    }

    /// The reason, for people.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The wire code of this rejection.
    pub fn code(&self) -> RejectionCode {
        match self.kind {
            RejectionKind::Validation => RejectionCode::Validation,
            RejectionKind::NotFound => RejectionCode::NotFound,
            RejectionKind::Conflict => RejectionCode::Conflict,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.reason)
    }
}

impl std::error::Error for Rejection {}
