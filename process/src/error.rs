//! What goes wrong running a process manager.

use jetsource_schemas::error::Error;

/// Why a process manager could not start or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessErrorKind {
    /// Its name, an instance key or a deadline name is not valid.
    InvalidName,
    /// JetStream refused or failed a request (a stream, consumer or bucket
    /// could not be created or read, a write was not confirmed): retried
    /// while running.
    JetStream,
    /// An instance's entry changed since it was read (another process
    /// applied a trigger to it): reread and react again.
    Conflict,
    /// A stored instance or fired deadline does not read.
    Corrupt,
    /// A command was not answered, or answered with a rejection saying the
    /// infrastructure failed (`unavailable`, `internal`): resent with the
    /// same `Command-Id`.
    Command,
    /// A deadline came while an event stored before its time waits to be
    /// reacted to: it is retried once that event is.
    Early,
    /// A parked trigger replayed after its instance reacted to a later one
    /// of the same stream: not applied, it stays parked.
    Stale,
}

impl std::fmt::Display for ProcessErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProcessErrorKind::InvalidName => "invalid name",
            ProcessErrorKind::JetStream => "jetstream",
            ProcessErrorKind::Conflict => "conflict",
            ProcessErrorKind::Corrupt => "corrupt",
            ProcessErrorKind::Command => "command failed",
            ProcessErrorKind::Early => "early",
            ProcessErrorKind::Stale => "stale",
        })
    }
}

/// A process manager failure.
pub type ProcessError = Error<ProcessErrorKind>;
