//! A command's outcome as its wire reply: the one place a
//! [`CommandFailure`] becomes a code and a reason.

use super::failure::CommandFailure;
use super::request::CommandRequest;
use jetsource_schemas::{Accepted, CommandReply, EventRef};

/// What an accepted command's reply lists.
#[derive(Debug)]
pub(crate) struct AcceptedEvents {
    /// Where the command's events went (none for a decision without events).
    pub(crate) events: Vec<EventRef>,
    /// The command had been accepted before: the events are its first
    /// acceptance's.
    pub(crate) duplicate: bool,
}

/// The reply to `request` for aggregate type `aggregate_type`.
pub(crate) fn reply(
    aggregate_type: &str,
    request: &CommandRequest<'_>,
    outcome: Result<AcceptedEvents, CommandFailure>,
) -> CommandReply {
    match outcome {
        Ok(AcceptedEvents { events, duplicate }) => CommandReply::Accepted(Accepted {
            command_id: request.command_id.to_string(),
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: request.aggregate_id.to_string(),
            events,
            duplicate,
        }),
        Err(failure) => {
            if let CommandFailure::CorruptHistory(corrupt) = &failure {
                tracing::error!(
                    reason = %corrupt,
                    aggregate_type,
                    aggregate_id = request.aggregate_id,
                    command_id = &*request.command_id,
                    "cannot rebuild aggregate"
                );
            }
            rejected(&request.command_id, &failure)
        }
    }
}

/// The rejection of command `command_id` for `failure`.
pub(crate) fn rejected(command_id: &str, failure: &CommandFailure) -> CommandReply {
    let details = match failure {
        CommandFailure::Denied(rejection) => rejection.details().cloned(),
        _ => None,
    };
    CommandReply::rejected_with_details(command_id, failure.code(), failure.to_string(), details)
}
