//! Why a command was not accepted, from where it happened to the reply.
//!
//! A failure is a value with its cause, never a code and a string, until
//! `reply.rs` writes it on the wire. Its kinds keep apart what the anchors
//! of the style keep apart: the command was denied ([`CommandFailure::Denied`]),
//! it is malformed ([`CommandFailure::BadRequest`]), it lost a race
//! ([`CommandFailure::Conflict`]), the store failed ([`CommandFailure::Store`]),
//! the history does not decode ([`CommandFailure::CorruptHistory`]). The
//! reason texts are the reply's, byte for byte: clients read codes and some
//! reasons.

use crate::aggregate::Rejection;
use crate::codec::{CommandDecodeError, EventEncodeError};
use crate::store::{AppendError, AppendErrorKind, LoadError};
use jetsource_schemas::subject::SubjectError;
use jetsource_schemas::token::TokenError;
use jetsource_schemas::RejectionCode;

/// Why a command was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandFailure {
    /// The aggregate's decision refused the command (`validation`,
    /// `not_found`, `conflict`): do not resend it unchanged.
    #[error("{}", .0.reason())]
    Denied(Rejection),
    /// The subject, headers or body are malformed, or the aggregate type is
    /// unknown (`bad_request`): fix the request.
    #[error(transparent)]
    BadRequest(#[from] BadRequest),
    /// The aggregate is not where the command expected it (`conflict`):
    /// reload and decide again.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The event store failed or refused; the outcome may be unknown
    /// (`unavailable`, or `internal` for a refused write): resend with the
    /// same `Command-Id`.
    #[error(transparent)]
    Store(#[from] StoreFailure),
    /// A stored event does not decode into the aggregate's events
    /// (`internal`): the history, or the code reading it, needs an
    /// operator; resending changes nothing.
    #[error(transparent)]
    CorruptHistory(#[from] Box<CorruptHistory>),
    /// An event the aggregate decided does not encode (`internal`): a bug
    /// in the aggregate's event type.
    #[error("encoding an event: {0}")]
    Unencodable(#[source] EventEncodeError),
    /// An event's personal fields could not be sealed (`internal`): its
    /// body is not an object, or the system gave no randomness.
    #[error("sealing personal data: {0}")]
    Unsealable(#[source] jetsource_schemas::personal::SealError),
    /// A request reached a handler that is not there (`internal`): the
    /// runtime's routing broke its own rule.
    #[error("no handler for a parsed command")]
    NoHandler,
    /// A decision over several aggregates gave an event to an aggregate
    /// the command does not involve (`internal`): a bug in the aggregate's
    /// decision. Nothing was written.
    #[error("the decision gave an event to aggregate {0}, which the command does not involve")]
    Uninvolved(String),
}

impl CommandFailure {
    /// The wire code of this failure.
    pub(crate) fn code(&self) -> RejectionCode {
        match self {
            CommandFailure::Denied(rejection) => rejection.code(),
            CommandFailure::BadRequest(_) => RejectionCode::BadRequest,
            CommandFailure::Conflict(_) => RejectionCode::Conflict,
            CommandFailure::Store(failure) => failure.code(),
            CommandFailure::CorruptHistory(_)
            | CommandFailure::Unencodable(_)
            | CommandFailure::Unsealable(_)
            | CommandFailure::NoHandler
            | CommandFailure::Uninvolved(_) => RejectionCode::Internal,
        }
    }
}

/// What is wrong with a request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadRequest {
    /// `Command-Id`, `Correlation-Id` or `Causation-Id` is not a token.
    #[error(transparent)]
    Header(TokenError),
    /// `Expected-Seq` is not decimal digits of a u64 (the value quoted,
    /// shortened: it is the client's).
    #[error("Expected-Seq must be decimal digits (a u64), got {0}")]
    ExpectedSeq(String),
    /// A header's name is one of jetsource's in another case.
    #[error("header {found:?}: header names are case-sensitive; did you mean {meant:?}?")]
    HeaderCase {
        /// The name sent (one of the four, in another case: short).
        found: String,
        /// The name jetsource reads.
        meant: &'static str,
    },
    /// One of jetsource's headers came more than once.
    #[error("header {0} given {1} times; send it once")]
    HeaderRepeated(&'static str, usize),
    /// The subject is not a command subject.
    #[error(transparent)]
    Subject(SubjectError),
    /// No handler serves the subject's aggregate type.
    #[error("unknown aggregate type {found:?}; known: {known}")]
    UnknownAggregateType {
        /// The type the subject names.
        found: String,
        /// The registered types, joined by ", ".
        known: String,
    },
    /// The body is larger than the runtime takes.
    #[error("the body is {bytes} bytes, more than the {max} allowed")]
    TooLarge {
        /// The body's size.
        bytes: usize,
        /// The largest body taken.
        max: usize,
    },
    /// The command name or the body does not decode into the aggregate's
    /// commands.
    #[error(transparent)]
    Body(CommandDecodeError),
    /// An aggregate id the command involves (named in its body) is not a
    /// token.
    #[error(transparent)]
    Involved(TokenError),
    /// The command involves more aggregates than one command may.
    #[error("the command involves {named} aggregates, more than the {max} one command may")]
    TooManyInvolved {
        /// Aggregates named, the addressed one included.
        named: usize,
        /// The most one command may involve.
        max: usize,
    },
    /// The `Command-Id` was accepted on an aggregate the command involves,
    /// but not on the one it is addressed to: another command used it.
    #[error("Command-Id {command_id} was already accepted on {aggregate_id}, which this command involves; give every command its own id")]
    CommandIdTaken {
        /// The id (a token).
        command_id: String,
        /// Where it was accepted (a token).
        aggregate_id: String,
    },
}

/// How the aggregate was not where the command expected it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Conflict {
    /// The client's `Expected-Seq` is not the aggregate's last sequence.
    #[error("Expected-Seq is {expected} but the aggregate is at {actual}")]
    ExpectedSeq {
        /// What the client sent.
        expected: u64,
        /// Where the aggregate is.
        actual: u64,
    },
    /// An append found the aggregate moved on (or saw its own earlier
    /// attempt): the retry policy reloads and decides again.
    #[error("the aggregate moved on: {0}")]
    Append(#[source] AppendError),
    /// Appends kept finding the aggregate moved on, with newer events each
    /// time, until the retries ran out.
    #[error("the aggregate kept moving: gave up after {attempts} attempts ({last})")]
    KeptMoving {
        /// Appends tried.
        attempts: u32,
        /// The last one's failure.
        #[source]
        last: AppendError,
    },
}

/// How the event store failed a command.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreFailure {
    /// Loading the aggregate failed.
    #[error("loading the aggregate: {0}")]
    Load(#[source] LoadError),
    /// Reading the aggregate's newer events after a failed append failed.
    #[error("reloading the aggregate: {0}")]
    Reload(#[source] LoadError),
    /// The append met retryable trouble (no responders, a timeout).
    #[error("the event store is unavailable: {0}")]
    Unavailable(#[source] AppendError),
    /// The stream is full.
    #[error("the event store refused the write: {0}")]
    Full(#[source] AppendError),
    /// The server refused the write for another reason.
    #[error("the event store refused the write: {0}")]
    Refused(#[source] AppendError),
    /// The data key of the aggregate's personal fields could not be read
    /// or made: nothing was written.
    #[error("the data keys are unavailable: {0}")]
    Keys(#[source] crate::keys::KeyError),
    /// The store kept refusing the expected sequence without showing newer
    /// events: no other writer is ahead, the store is not settling (a
    /// clustered stream without quorum keeps answering 10164 for the
    /// proposals it cannot commit). The outcome is unknown.
    #[error("the event store kept refusing the expected sequence without showing newer events: gave up after {attempts} attempts ({last})")]
    Unsettled {
        /// Appends tried.
        attempts: u32,
        /// The last one's failure.
        #[source]
        last: AppendError,
    },
}

impl StoreFailure {
    fn code(&self) -> RejectionCode {
        match self {
            StoreFailure::Refused(_) => RejectionCode::Internal,
            StoreFailure::Load(_)
            | StoreFailure::Reload(_)
            | StoreFailure::Unavailable(_)
            | StoreFailure::Full(_)
            | StoreFailure::Keys(_)
            | StoreFailure::Unsettled { .. } => RejectionCode::Unavailable,
        }
    }
}

/// A stored event that does not read as the aggregate's events (it does
/// not decode, or a newer version wrote it).
#[derive(Debug, thiserror::Error)]
#[error("stored event {subject} at {stream}:{seq}: {source}")]
pub(crate) struct CorruptHistory {
    pub(crate) stream: String,
    pub(crate) subject: String,
    pub(crate) seq: u64,
    pub(crate) source: jetsource_schemas::upcast::ReadEventError,
}

impl From<AppendError> for CommandFailure {
    /// An append's failure: a lost race is a conflict, the rest the store's.
    fn from(error: AppendError) -> Self {
        match error.kind() {
            AppendErrorKind::Conflict | AppendErrorKind::Duplicate => {
                CommandFailure::Conflict(Conflict::Append(error))
            }
            AppendErrorKind::Unavailable => CommandFailure::Store(StoreFailure::Unavailable(error)),
            AppendErrorKind::Full => CommandFailure::Store(StoreFailure::Full(error)),
            AppendErrorKind::Refused => CommandFailure::Store(StoreFailure::Refused(error)),
        }
    }
}

impl From<CorruptHistory> for CommandFailure {
    fn from(corrupt: CorruptHistory) -> Self {
        CommandFailure::CorruptHistory(Box::new(corrupt))
    }
}
