//! Sending one command a reaction decided, and reading its answer.

use crate::error::{ProcessError, ProcessErrorKind};
use crate::manager::{ProcessManager, Refusal};
use jetsource_client::{SendErrorKind, SendOptions};
use jetsource_schemas::error::Error;
use jetsource_schemas::{CommandReply, RejectionCode};
use tracing::{info, warn};

use super::trigger::Lineage;
use super::Context;

/// Sends one command. A rejection on business grounds (`validation`,
/// `not_found`, `bad_request`) is the command's answer and is logged; the
/// reaction stands, and a `validation` or `not_found` one is returned for
/// the instance to react to. One saying the infrastructure failed (`unavailable`,
/// `internal`, `conflict` after the handler's own retries), or no answer,
/// fails the trigger, which is retried and resends the same `Command-Id`.
pub(super) async fn send<M: ProcessManager>(
    context: &Context<M>,
    key: &str,
    id: &str,
    lineage: &Lineage<'_>,
    command: &crate::manager::Command,
) -> Result<Option<(Refusal, String)>, ProcessError> {
    let manager = context.names.name();
    let options = SendOptions {
        command_id: Some(id.to_string()),
        correlation_id: command
            .correlation_id
            .clone()
            .or_else(|| lineage.correlation.map(str::to_string)),
        causation_id: lineage.causation.map(str::to_string),
        traceparent: lineage.trace,
        expected_seq: None,
    };
    let reply = context
        .commands
        .send(
            &command.aggregate_type,
            &command.aggregate_id,
            &command.command,
            command.body.to_string(),
            &options,
        )
        .await;
    match reply {
        Ok(CommandReply::Accepted(accepted)) => {
            info!(manager, key, command_id = id, aggregate = %command.aggregate_id, command = %command.command, duplicate = accepted.duplicate, "command accepted");
            Ok(None)
        }
        Ok(CommandReply::Rejected(rejected)) => match rejected.code {
            RejectionCode::Validation | RejectionCode::NotFound | RejectionCode::BadRequest => {
                if rejected.code == RejectionCode::BadRequest {
                    warn!(manager, key, command_id = id, aggregate = %command.aggregate_id, command = %command.command, code = rejected.code.as_str(), reason = %rejected.reason, "command rejected");
                } else {
                    // An answer the instance reacts to (a saga's step
                    // refused is how it learns to compensate), not a fault.
                    info!(manager, key, command_id = id, aggregate = %command.aggregate_id, command = %command.command, code = rejected.code.as_str(), reason = %rejected.reason, "command refused");
                }
                Ok(match rejected.code {
                    RejectionCode::Validation => Some((Refusal::Validation, rejected.reason)),
                    RejectionCode::NotFound => Some((Refusal::NotFound, rejected.reason)),
                    // A malformed command is the manager's bug, not an
                    // answer to react to.
                    _ => None,
                })
            }
            RejectionCode::Conflict | RejectionCode::Unavailable | RejectionCode::Internal => {
                Err(Error::new(
                    ProcessErrorKind::Command,
                    format!(
                        "{} {}: {}",
                        command.command,
                        rejected.code.as_str(),
                        rejected.reason
                    ),
                ))
            }
        },
        Err(e) if e.kind() == SendErrorKind::InvalidInput => {
            Err(Error::with_source(ProcessErrorKind::InvalidName, e))
        }
        Err(e) => Err(Error::with_source(ProcessErrorKind::Command, e)),
    }
}
