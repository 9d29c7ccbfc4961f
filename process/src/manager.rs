//! What a process manager implements: a pure decision over its instance's
//! state and one trigger, as an aggregate's `handle` is over its state and
//! a command.

use jetsource_projector::typed::Follows;
use serde::de::DeserializeOwned;
use serde::Serialize;
use time::OffsetDateTime;

/// A workflow that follows events of one or more aggregate types, keeps
/// one state per instance, and decides which commands to send and which
/// deadlines to set or cancel.
///
/// `react` is synchronous and pure: everything it decides is in the
/// returned [`Reaction`], which the runtime carries out. That is what makes
/// a redelivered trigger safe: reacting again to the same state and trigger
/// decides the same commands, sent with the same `Command-Id`s. Take times
/// from the trigger ([`Meta::time`](jetsource_projector::Meta::time), a
/// deadline's [`Fired::at`]), never from the clock.
pub trait ProcessManager: Send + Sync + 'static {
    /// The events followed: an [`Envelope`](jetsource_projector::Envelope)
    /// of one aggregate type, or an enum declared with
    /// [`follows!`](jetsource_projector::follows) for several.
    type Input: Follows;

    /// An instance's state, stored as JSON in one KV entry per instance.
    type State: Serialize + DeserializeOwned + Send;

    /// The manager's name: its consumers, its KV bucket, its deadlines'
    /// stream and subjects are named after it. `[a-z0-9_-]{1,32}`; stable,
    /// since a new name starts over from the first event.
    fn name(&self) -> &'static str;

    /// The instance an event belongs to (often an aggregate id or a
    /// correlation value), `None` when it concerns none. A key is a token,
    /// `[A-Za-z0-9_-]{1,128}`.
    fn key(&self, input: &Self::Input) -> Option<String>;

    /// The instances to tell that aggregate `aggregate_id` of
    /// `aggregate_type` (a type it follows) was forgotten (`jetsource
    /// forget`): each reacts to [`Trigger::Forgotten`], to drop what its
    /// state copied of the aggregate's personal fields. Told also when the
    /// manager was down at the forget: the notices are stored. Default:
    /// none, for a manager whose states copy no personal data.
    fn forgotten(&self, aggregate_type: &str, aggregate_id: &str) -> Vec<String> {
        let _ = (aggregate_type, aggregate_id);
        Vec::new()
    }

    /// Decides what the trigger leads to, given the instance's state
    /// (`None` for an instance not started, or one that ended).
    fn react(
        &self,
        state: Option<Self::State>,
        trigger: Trigger<Self::Input>,
    ) -> Reaction<Self::State>;
}

/// What an instance reacts to.
#[derive(Debug)]
pub enum Trigger<I> {
    /// An event it follows.
    Event(I),
    /// One of its deadlines came.
    Deadline(Fired),
    /// A command it sent was refused on business grounds. Reacted to at
    /// once, from the state its reaction reached; what this reaction sends
    /// is not reacted to again when refused (that is logged).
    Refused(Refused),
    /// An aggregate's personal data was forgotten, and
    /// [`ProcessManager::forgotten`] named this instance.
    Forgotten(ForgottenAggregate),
}

/// An aggregate forgotten (its data key erased): its personal fields read
/// as their redaction value from now on, and an instance drops its copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgottenAggregate {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
}

/// A command refused by its aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The command, as sent.
    pub command: Command,
    /// Why, as a code.
    pub refusal: Refusal,
    /// Why, for people (the aggregate's reason).
    pub reason: String,
}

/// Why a command was refused: the rejections a process manager may act
/// on. Others (`conflict`, `unavailable`, `internal`) are retried with the
/// same `Command-Id`; `bad_request` is a bug of the manager and is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It broke a business rule (`validation`).
    Validation,
    /// Its aggregate does not exist (`not_found`).
    NotFound,
}

/// A deadline that came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// Its name, as set.
    pub name: String,
    /// The time it was set for (it may be handled later: the process was
    /// down, or busy).
    pub at: OffsetDateTime,
}

/// What an instance decided: its new state, the commands to send, the
/// deadlines to set and cancel.
#[derive(Debug)]
pub struct Reaction<S> {
    /// The state from now on; `None` ends the instance: its entry is
    /// removed and its pending deadlines cancelled.
    pub state: Option<S>,
    /// Commands to send, in order.
    pub commands: Vec<Command>,
    /// Deadlines to set; one already set under the same name moves to the
    /// new time.
    pub set: Vec<Deadline>,
    /// Names of deadlines to cancel (one not set is no error).
    pub cancel: Vec<String>,
}

impl<S> Reaction<S> {
    /// Keeps `state`, doing nothing else.
    pub fn keep(state: S) -> Self {
        Reaction {
            state: Some(state),
            commands: Vec::new(),
            set: Vec::new(),
            cancel: Vec::new(),
        }
    }

    /// Ends the instance.
    pub fn end() -> Self {
        Reaction {
            state: None,
            commands: Vec::new(),
            set: Vec::new(),
            cancel: Vec::new(),
        }
    }

    /// Also sends `command`.
    pub fn send(mut self, command: Command) -> Self {
        self.commands.push(command);
        self
    }

    /// Also sets deadline `name` at `at`.
    pub fn set_deadline(mut self, name: impl Into<String>, at: OffsetDateTime) -> Self {
        self.set.push(Deadline {
            name: name.into(),
            at,
        });
        self
    }

    /// Also cancels deadline `name`.
    pub fn cancel_deadline(mut self, name: impl Into<String>) -> Self {
        self.cancel.push(name.into());
        self
    }
}

/// A command to send through the normal command subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The aggregate type (`A::TYPE`).
    pub aggregate_type: String,
    /// The aggregate instance.
    pub aggregate_id: String,
    /// The command's name, as in its subject (`publish`).
    pub command: String,
    /// Its JSON body.
    pub body: serde_json::Value,
    /// Its `Correlation-Id`, a token: name the workflow (often the
    /// instance key) so that the events it causes carry it and route back
    /// to the instance. `None` passes on the triggering event's.
    pub correlation_id: Option<String>,
}

impl Command {
    /// Command `command` with `body` to `A`'s instance `aggregate_id`.
    pub fn to<A: jetsource_projector::typed::AggregateType>(
        aggregate_id: impl Into<String>,
        command: impl Into<String>,
        body: serde_json::Value,
    ) -> Self {
        Command {
            aggregate_type: A::TYPE.to_string(),
            aggregate_id: aggregate_id.into(),
            command: command.into(),
            body,
            correlation_id: None,
        }
    }

    /// With `Correlation-Id` `id`.
    pub fn correlated(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }
}

/// A deadline to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// Its name within the instance, `[A-Za-z0-9_-]{1,128}`.
    pub name: String,
    /// When it comes.
    pub at: OffsetDateTime,
}
