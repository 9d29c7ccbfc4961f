//! A command message's subject and headers, parsed and validated into the
//! request a handler takes.

use super::failure::BadRequest;
use async_nats::Message;
use jetsource_schemas::reply::excerpt;
use jetsource_schemas::subject::{CommandSubject, SubjectError};
use jetsource_schemas::trace::TraceParent;
use jetsource_schemas::{headers, token};
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
    /// The client's `traceparent`, when it parses (one that does not is
    /// ignored, see [`jetsource_schemas::trace`]).
    pub traceparent: Option<TraceParent>,
}

/// The headers jetsource reads from a command, in `found`'s order.
const READ: [&str; 4] = [
    headers::COMMAND_ID,
    headers::CORRELATION_ID,
    headers::CAUSATION_ID,
    headers::EXPECTED_SEQ,
];

/// The most characters of a header value a reason quotes.
const QUOTED: usize = 64;

/// A message that is not a valid request.
#[derive(Debug)]
pub(crate) struct Unparsed<'a> {
    /// The id to answer under: the message's, the one generated for it, or
    /// empty when its `Command-Id` is itself invalid.
    pub(crate) command_id: Cow<'a, str>,
    pub(crate) failure: BadRequest,
}

/// Turns a message with `subject` into a request for its aggregate type's
/// handler. `unregistered` is `Some(known)` when the subject's aggregate
/// type has no handler: `known` lists those that have one. A body over
/// `max_body` bytes is refused.
pub(crate) fn parse<'a>(
    message: &'a Message,
    subject: &Result<CommandSubject<'a>, SubjectError>,
    unregistered: Option<&str>,
    max_body: usize,
) -> Result<CommandRequest<'a>, Unparsed<'a>> {
    // One pass over the few headers a command has, rather than a hash of
    // each name jetsource reads. Header names are case-sensitive (as
    // JetStream's own are), but a near miss (`command-id`) or a repeat is
    // refused rather than dropped or picked from: the client would lose
    // the idempotency or the check it meant to send, without a word.
    let mut found: [Option<&str>; 4] = [None; 4];
    let mut refused = None;
    let mut traceparent = None;
    for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
        let name = name.as_ref();
        let index = match name {
            // Several are no trace parent (W3C): ignored, as one that
            // does not parse.
            headers::TRACEPARENT => {
                traceparent = match values.as_slice() {
                    [one] => TraceParent::parse(one.as_str()),
                    _ => None,
                };
                continue;
            }
            headers::COMMAND_ID => 0,
            headers::CORRELATION_ID => 1,
            headers::CAUSATION_ID => 2,
            headers::EXPECTED_SEQ => 3,
            _ => {
                if let Some(meant) = READ.iter().find(|r| r.eq_ignore_ascii_case(name)) {
                    refused.get_or_insert(BadRequest::HeaderCase {
                        found: name.to_string(),
                        meant,
                    });
                }
                continue;
            }
        };
        if values.len() > 1 {
            refused.get_or_insert(BadRequest::HeaderRepeated(READ[index], values.len()));
        }
        found[index] = values.first().map(|v| v.as_str());
    }
    let [command_id_header, correlation_header, causation_header, expected_header] = found;
    let command_id = match command_id_header {
        Some(id) => match token::validate("Command-Id", id) {
            Ok(()) => Cow::Borrowed(id),
            Err(e) => {
                return Err(Unparsed {
                    command_id: Cow::Borrowed(""),
                    failure: BadRequest::Header(e),
                })
            }
        },
        None => Cow::Owned(uuid::Uuid::now_v7().to_string()),
    };
    let bad = |failure: BadRequest| Unparsed {
        command_id: command_id.clone(),
        failure,
    };
    if let Some(failure) = refused {
        return Err(bad(failure));
    }
    let optional_token = |name: &'static str, value: Option<&'a str>| match value {
        Some(value) => token::validate(name, value)
            .map(|()| Some(value))
            .map_err(|e| bad(BadRequest::Header(e))),
        None => Ok(None),
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
                .ok_or_else(|| bad(BadRequest::ExpectedSeq(excerpt(value, QUOTED))))?,
        ),
        None => None,
    };
    let parsed = subject
        .as_ref()
        .map_err(|e| bad(BadRequest::Subject(e.clone())))?;
    if let Some(known) = unregistered {
        return Err(bad(BadRequest::UnknownAggregateType {
            found: parsed.aggregate_type.to_string(),
            known: known.to_string(),
        }));
    }
    if message.payload.len() > max_body {
        return Err(bad(BadRequest::TooLarge {
            bytes: message.payload.len(),
            max: max_body,
        }));
    }
    Ok(CommandRequest {
        aggregate_id: parsed.aggregate_id,
        command: parsed.command,
        body: &message.payload,
        command_id,
        correlation_id,
        causation_id,
        expected_seq,
        traceparent,
    })
}
