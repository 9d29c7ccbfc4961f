//! What goes wrong setting up or running a projector.

use jetsource_schemas::error::Error;

/// What went wrong setting up or running a projector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProjectionErrorKind {
    /// Its name or subjects are invalid, or the name is registered twice.
    BadProjector,
    /// A stream it follows does not exist (no aggregate of that type has
    /// been served yet).
    NoStream,
    /// A stream it follows names another contract version in its metadata
    /// (`jetsource.contract`) than this build speaks: its events may not
    /// mean what the projector expects, so nothing is read from it.
    ContractMismatch,
    /// NATS or JetStream failed.
    Nats,
    /// The KV bucket could not be read or written.
    Store,
    /// Another instance wrote the checkpoint first; the state was reloaded.
    Conflict,
    /// The checkpoint is behind what the durable consumer acknowledged (the
    /// bucket was deleted or replaced): resuming would skip events.
    Inconsistent,
    /// The projector stopped at an event it could not apply.
    Halted,
    /// Another instance holds the projection's lease.
    NotHolder,
}

impl std::fmt::Display for ProjectionErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProjectionErrorKind::BadProjector => "invalid projector",
            ProjectionErrorKind::NoStream => "no such stream",
            ProjectionErrorKind::ContractMismatch => "contract version mismatch",
            ProjectionErrorKind::Nats => "NATS failure",
            ProjectionErrorKind::Store => "read model store failure",
            ProjectionErrorKind::Conflict => "read model written by another instance",
            ProjectionErrorKind::Inconsistent => "read model behind its consumer",
            ProjectionErrorKind::Halted => "projector halted",
            ProjectionErrorKind::NotHolder => "not the active instance",
        })
    }
}

/// A projector runtime failure.
pub type ProjectionError = Error<ProjectionErrorKind>;
