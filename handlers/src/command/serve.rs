//! Serving one command message: its subject and headers parsed into a
//! request, the request handed to its aggregate type's handler, the reply
//! published and the outcome's observers told.

use super::failure::CommandFailure;
use super::handler::AggregateHandler;
use super::reply;
use super::request::{self, CommandRequest};
use crate::aggregate::Aggregate;
use async_nats::{Client, Message};
use jetsource_schemas::{trace, CommandReply, Namespace};
use std::future::Future;
use std::sync::Arc;
use tracing::Instrument;

/// Callback told of every command's outcome (after the reply is decided,
/// before it is sent). Must not block.
pub type OutcomeObserver = Arc<dyn Fn(&CommandOutcome<'_>) + Send + Sync>;

/// A command's outcome, as observers see it.
#[derive(Debug)]
pub struct CommandOutcome<'a> {
    /// The aggregate type, when the subject parsed.
    pub aggregate_type: Option<&'a str>,
    /// The aggregate id, when the subject parsed.
    pub aggregate_id: Option<&'a str>,
    /// The command name, when the subject parsed.
    pub command: Option<&'a str>,
    /// The reply.
    pub reply: &'a CommandReply,
}

/// Where the command span and its line are logged: under the runtime, as
/// `RUST_LOG=info,jetsource_handlers::runtime=debug` has always shown them,
/// though serving a command is written here.
const LOG_TARGET: &str = "jetsource_handlers::runtime";

/// What serving one command needs besides its handler, shared by every
/// command in flight (one reference count per command).
pub(crate) struct Dispatch {
    pub(crate) client: Client,
    /// The registered aggregate types, sorted and joined by ", ", for the
    /// reply to a command of another type.
    pub(crate) known_types: String,
    pub(crate) observers: Vec<OutcomeObserver>,
    pub(crate) namespace: Namespace,
    pub(crate) max_body: usize,
    pub(crate) reply: bool,
}

/// What [`serve`] hands a parsed command to.
pub(crate) trait Process: Sync {
    fn process(&self, request: &CommandRequest<'_>) -> impl Future<Output = CommandReply> + Send;
}

impl<A: Aggregate> Process for AggregateHandler<A> {
    fn process(&self, request: &CommandRequest<'_>) -> impl Future<Output = CommandReply> + Send {
        AggregateHandler::process(self, request)
    }
}

/// The handler of a command whose subject names no registered aggregate
/// type: there is none, and [`request::parse`] answers such a command
/// itself.
pub(crate) enum Unroutable {}

impl Process for Unroutable {
    #[allow(clippy::manual_async_fn)]
    fn process(&self, _: &CommandRequest<'_>) -> impl Future<Output = CommandReply> + Send {
        async move { match *self {} }
    }
}

/// Parses, handles and answers one command message; `handler` is the
/// subject's aggregate type's, if it is registered.
pub(crate) async fn serve<P: Process>(dispatch: &Dispatch, handler: Option<&P>, message: Message) {
    let subject = dispatch.namespace.parse_command(message.subject.as_str());
    let parsed = subject.as_ref().ok().copied();
    // At debug level: at `info`, recording the span for every command cost
    // about 5 µs of CPU per command with the fmt subscriber, a third of
    // serving it. The few events logged above debug inside a command name
    // the command themselves.
    let span = tracing::debug_span!(
        target: LOG_TARGET,
        "command",
        command_id = tracing::field::Empty,
        aggregate_type = parsed.map(|p| p.aggregate_type),
        aggregate_id = parsed.map(|p| p.aggregate_id),
        command = parsed.map(|p| p.command),
        outcome = tracing::field::Empty,
    );
    let request = request::parse(
        &message,
        &subject,
        handler.is_none().then_some(&*dispatch.known_types),
        dispatch.max_body,
    );
    // Before the span is entered: OpenTelemetry fixes its parent then.
    if let Ok(request) = &request {
        trace::continue_from(&span, request.traceparent.as_ref());
    }
    let reply = async {
        let reply = match (request, handler) {
            (Ok(request), Some(handler)) => {
                tracing::Span::current().record("command_id", &*request.command_id);
                handler.process(&request).await
            }
            (Err(unparsed), _) => reply::rejected(&unparsed.command_id, &unparsed.failure.into()),
            // The runtime hands a handler every command of its type, and
            // `parse` refuses those of other types: not reached.
            (Ok(request), None) => reply::rejected(&request.command_id, &CommandFailure::NoHandler),
        };
        let outcome = match &reply {
            CommandReply::Accepted(_) => "accepted",
            CommandReply::Rejected(r) => r.code.as_str(),
        };
        tracing::Span::current().record("outcome", outcome);
        tracing::debug!(target: LOG_TARGET, "command handled");
        reply
    }
    .instrument(span)
    .await;
    let outcome = CommandOutcome {
        aggregate_type: parsed.map(|p| p.aggregate_type),
        aggregate_id: parsed.map(|p| p.aggregate_id),
        command: parsed.map(|p| p.command),
        reply: &reply,
    };
    crate::metrics::global().command(&reply);
    for observer in &dispatch.observers {
        observer(&outcome);
    }
    if let Some(reply_to) = message.reply.filter(|_| dispatch.reply) {
        match reply.to_bytes() {
            Ok(body) => {
                if let Err(e) = dispatch.client.publish(reply_to, body).await {
                    tracing::warn!(error = %e, command_id = reply.command_id(), "could not send a command reply");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, command_id = reply.command_id(), "could not encode a command reply")
            }
        }
    }
}
