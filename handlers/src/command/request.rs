//! A command message's subject and headers, parsed and validated into the
//! request a handler takes.

use async_nats::Message;
use jetsource_schemas::subject::{CommandSubject, SubjectError};
use jetsource_schemas::{headers, token, CommandReply, RejectionCode};
use std::borrow::Cow;

/// A command as the runtime hands it to a handler: subject and headers
/// already parsed and validated, borrowed from the message.
#[derive(Debug, Clone)]
pub struct CommandRequest<'a> {
    /// The aggregate instance id (a validated token).
    pub aggregate_id: &'a str,
    /// The command name (a validated token).
    pub command: &'a str,
    /// The JSON body.
    pub body: &'a [u8],
    /// The command id (a validated token, generated when the client sent none).
    pub command_id: Cow<'a, str>,
    /// The correlation id (a validated token), if any.
    pub correlation_id: Option<&'a str>,
    /// The causation id (a validated token), if any.
    pub causation_id: Option<&'a str>,
    /// The client's `Expected-Seq`, if any.
    pub expected_seq: Option<u64>,
}

/// Turns a message with `subject` into a request for its aggregate type's
/// handler, or a `bad_request` reply. `unregistered` is `Some(known)` when
/// the subject's aggregate type has no handler: `known` lists those that
/// have one. A body over `max_body` bytes is refused.
pub(crate) fn parse<'a>(
    message: &'a Message,
    subject: &Result<CommandSubject<'a>, SubjectError>,
    unregistered: Option<&str>,
    max_body: usize,
) -> Result<CommandRequest<'a>, CommandReply> {
    // One pass over the few headers a command has, rather than a hash of
    // each name jetsource reads. The first value of a name counts, as with
    // `HeaderMap::get`.
    let mut found: [Option<&str>; 4] = [None; 4];
    for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
        let index = match name.as_ref() {
            headers::COMMAND_ID => 0,
            headers::CORRELATION_ID => 1,
            headers::CAUSATION_ID => 2,
            headers::EXPECTED_SEQ => 3,
            _ => continue,
        };
        found[index] = values.first().map(|v| v.as_str());
    }
    let [command_id_header, correlation_header, causation_header, expected_header] = found;
    let bad = |command_id: &str, reason: String| {
        CommandReply::rejected(command_id, RejectionCode::BadRequest, reason)
    };
    let command_id = match command_id_header {
        Some(id) => {
            token::validate("Command-Id", id).map_err(|e| bad("", e.to_string()))?;
            Cow::Borrowed(id)
        }
        None => Cow::Owned(uuid::Uuid::now_v7().to_string()),
    };
    let optional_token =
        |name: &'static str, value: Option<&'a str>| -> Result<Option<&'a str>, CommandReply> {
            match value {
                Some(value) => {
                    token::validate(name, value).map_err(|e| bad(&command_id, e.to_string()))?;
                    Ok(Some(value))
                }
                None => Ok(None),
            }
        };
    let correlation_id = optional_token(headers::CORRELATION_ID, correlation_header)?;
    let causation_id = optional_token(headers::CAUSATION_ID, causation_header)?;
    let expected_seq = match expected_header {
        // Digits only: no sign, no spaces, which other languages' parsers
        // might read differently.
        Some(value) => Some(
            value
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| value.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| {
                    bad(
                        &command_id,
                        format!("Expected-Seq must be decimal digits (a u64), got {value:?}"),
                    )
                })?,
        ),
        None => None,
    };
    let parsed = subject
        .as_ref()
        .map_err(|e| bad(&command_id, e.to_string()))?;
    if let Some(known) = unregistered {
        return Err(bad(
            &command_id,
            format!(
                "unknown aggregate type {:?}; known: {known}",
                parsed.aggregate_type,
            ),
        ));
    }
    if message.payload.len() > max_body {
        return Err(bad(
            &command_id,
            format!(
                "the body is {} bytes, more than the {max_body} allowed",
                message.payload.len()
            ),
        ));
    }
    Ok(CommandRequest {
        aggregate_id: parsed.aggregate_id,
        command: parsed.command,
        body: &message.payload,
        command_id,
        correlation_id,
        causation_id,
        expected_seq,
    })
}
