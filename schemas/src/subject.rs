//! Command and event subjects, and stream names.
//!
//! - commands: `cmd.<aggregate_type>.<aggregate_id>.<command>`
//! - events: `evt.<aggregate_type>.<aggregate_id>.<EventType>`, one stream
//!   per aggregate type named [`stream_name`] (`EVT_BLOGPOST`).
//!
//! Under a subject prefix every subject and stream name changes as
//! [`Namespace`] describes; the functions here are the unprefixed forms.
//!
//! Every token is checked with [`crate::token::validate`] on the way in and
//! on the way out, so a subject built here never holds a wildcard, a dot or
//! whitespace that came from a user.

use crate::namespace::Namespace;
use crate::token::{validate, TokenError};

/// The first token of command subjects.
pub const COMMAND_ROOT: &str = "cmd";
/// The first token of event subjects.
pub const EVENT_ROOT: &str = "evt";
/// The prefix of event stream names.
pub const STREAM_PREFIX: &str = "EVT_";

/// The parts of a command subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSubject<'a> {
    /// The aggregate type (`blogpost`).
    pub aggregate_type: &'a str,
    /// The aggregate instance id.
    pub aggregate_id: &'a str,
    /// The command name (`create`).
    pub command: &'a str,
}

/// Why a subject is not a command subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The subject does not have the shape `cmd.<type>.<id>.<command>`.
    #[error(
        "subject {subject:?} is not of the form cmd.<aggregate_type>.<aggregate_id>.<command>"
    )]
    Shape {
        /// The subject as received.
        subject: String,
    },
    /// One token is outside the allowed character set.
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl<'a> CommandSubject<'a> {
    /// Parses `cmd.<type>.<id>.<command>`, validating every token (no
    /// subject prefix; see [`Namespace::parse_command`]).
    pub fn parse(subject: &'a str) -> Result<Self, SubjectError> {
        parse_command(subject, subject)
    }

    /// Builds the subject from validated parts (no subject prefix; see
    /// [`Namespace::command_subject`]).
    pub fn build(
        aggregate_type: &str,
        aggregate_id: &str,
        command: &str,
    ) -> Result<String, TokenError> {
        Namespace::default().command_subject(aggregate_type, aggregate_id, command)
    }
}

/// Parses `rest`, the unprefixed part of `subject`, as
/// `cmd.<type>.<id>.<command>`; errors quote the whole `subject`.
pub(crate) fn parse_command<'a>(
    subject: &str,
    rest: &'a str,
) -> Result<CommandSubject<'a>, SubjectError> {
    let shape = || SubjectError::Shape {
        subject: subject.chars().take(256).collect(),
    };
    let mut parts = rest.split('.');
    let (Some(root), Some(aggregate_type), Some(aggregate_id), Some(command), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(shape());
    };
    if root != COMMAND_ROOT {
        return Err(shape());
    }
    validate("aggregate type", aggregate_type)?;
    validate("aggregate id", aggregate_id)?;
    validate("command", command)?;
    Ok(CommandSubject {
        aggregate_type,
        aggregate_id,
        command,
    })
}

/// The parts of an event subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSubject<'a> {
    /// The aggregate type.
    pub aggregate_type: &'a str,
    /// The aggregate instance id.
    pub aggregate_id: &'a str,
    /// The event type (`BlogPostCreated`).
    pub event_type: &'a str,
}

impl<'a> EventSubject<'a> {
    /// Parses `evt.<type>.<id>.<EventType>` (no subject prefix; see
    /// [`Namespace::parse_event`]).
    pub fn parse(subject: &'a str) -> Option<Self> {
        let mut parts = subject.split('.');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (
                Some(EVENT_ROOT),
                Some(aggregate_type),
                Some(aggregate_id),
                Some(event_type),
                None,
            ) => Some(EventSubject {
                aggregate_type,
                aggregate_id,
                event_type,
            }),
            _ => None,
        }
    }

    /// Builds `evt.<type>.<id>.<EventType>` from validated parts (no
    /// subject prefix; see [`Namespace::event_subject`]).
    pub fn build(
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
    ) -> Result<String, TokenError> {
        Namespace::default().event_subject(aggregate_type, aggregate_id, event_type)
    }
}

/// All events of one aggregate instance: `evt.<type>.<id>.*`. This is also
/// the subject of its expected-sequence check. (No subject prefix; see
/// [`Namespace::aggregate_filter`].)
pub fn aggregate_filter(aggregate_type: &str, aggregate_id: &str) -> Result<String, TokenError> {
    Namespace::default().aggregate_filter(aggregate_type, aggregate_id)
}

/// All events of one aggregate type: `evt.<type>.>`, the stream's subject.
/// (No subject prefix; see [`Namespace::type_filter`].)
pub fn type_filter(aggregate_type: &str) -> Result<String, TokenError> {
    Namespace::default().type_filter(aggregate_type)
}

/// The stream of an aggregate type: `EVT_` and the type in upper case.
///
/// Aggregate types are lower case (see [`validate_aggregate_type`]), so two
/// types never share a stream. (No subject prefix; see
/// [`Namespace::stream_name`].)
pub fn stream_name(aggregate_type: &str) -> String {
    Namespace::default().stream_name(aggregate_type)
}

/// Aggregate type names: `[a-z0-9_-]{1,64}`, lower case so that
/// [`stream_name`] is one-to-one.
pub fn validate_aggregate_type(name: &str) -> Result<(), TokenError> {
    validate("aggregate type", name)?;
    if name.len() > 64 {
        return Err(TokenError::TooLong {
            what: "aggregate type",
            len: name.len(),
        });
    }
    if let Some((at, found)) = name.char_indices().find(|(_, c)| c.is_ascii_uppercase()) {
        return Err(TokenError::BadChar {
            what: "aggregate type (lower case only)",
            found,
            at,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_command_subjects() {
        let s = CommandSubject::parse("cmd.blogpost.p-1.create").expect("valid");
        assert_eq!(
            s,
            CommandSubject {
                aggregate_type: "blogpost",
                aggregate_id: "p-1",
                command: "create"
            }
        );
    }

    #[test]
    fn rejects_malformed_command_subjects() {
        for bad in [
            "cmd.blogpost.p1",
            "cmd.blogpost.p.1.create",
            "evt.blogpost.p1.create",
            "cmd.blogpost.*.create",
            "cmd.blogpost.>.create",
            "cmd.blogpost..create",
            "cmd.blogpost.p1.create.",
            "cmd",
            "",
        ] {
            assert!(CommandSubject::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn builders_validate() {
        assert_eq!(
            EventSubject::build("blogpost", "p1", "BlogPostCreated").as_deref(),
            Ok("evt.blogpost.p1.BlogPostCreated")
        );
        assert!(EventSubject::build("blogpost", "p.1", "X").is_err());
        assert!(aggregate_filter("blogpost", ">").is_err());
        assert_eq!(stream_name("blogpost"), "EVT_BLOGPOST");
        assert!(validate_aggregate_type("BlogPost").is_err());
        let parsed = EventSubject::parse("evt.blogpost.p1.BlogPostCreated").expect("event subject");
        assert_eq!(parsed.event_type, "BlogPostCreated");
    }
}
