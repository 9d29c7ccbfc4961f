//! What a look-up or an action shared by the CLI and the console fails on:
//! one kind per way a caller must react, turned into an exit code here and
//! into an HTTP status by the console.

use jetsource_schemas::error::Error;
use std::process::ExitCode;

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpErrorKind {
    /// The request is malformed: an unknown aggregate type, a bad id or filter.
    InvalidInput,
    /// NATS, a stream or the role that answers could not be reached.
    Unavailable,
    /// What came back cannot be read (not JSON, not the expected answer).
    Corrupt,
}

impl std::fmt::Display for OpErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OpErrorKind::InvalidInput => "invalid request",
            OpErrorKind::Unavailable => "unavailable",
            OpErrorKind::Corrupt => "unreadable answer",
        })
    }
}

/// A failed look-up or action.
pub type OpError = Error<OpErrorKind>;

/// Prints `e` for `jetsource <what>` and returns its exit code: 2 for
/// invalid input, 3 otherwise.
pub(crate) fn exit(what: &str, e: &OpError) -> ExitCode {
    eprintln!("jetsource {what}: {e}");
    match e.kind() {
        OpErrorKind::InvalidInput => ExitCode::from(2),
        OpErrorKind::Unavailable | OpErrorKind::Corrupt => ExitCode::from(3),
    }
}
