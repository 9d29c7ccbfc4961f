//! One command's way through the handlers, a file per step, in the order a
//! command meets them.
//!
//! 1. `serve.rs`: the message from the subscription to the reply: parsed,
//!    handed to its aggregate type's handler, answered, observed.
//! 2. `request.rs`: the subject and headers parsed and validated into a
//!    [`CommandRequest`].
//! 3. `handler.rs`: [`AggregateHandler::process`], the loop of the steps
//!    below, in about a screen.
//! 4. `cache.rs`: the state cache; `slot.rs`: an aggregate's entry in it.
//! 5. `load.rs`: a slot rebuilt from the store (a cold load, or the events
//!    past its sequence after a failed append).
//! 6. `idempotency.rs`: the commands an aggregate accepted, and where
//!    their events went: a resend is answered from it.
//! 7. `decide.rs`: the command decoded, `Expected-Seq` checked, `handle`
//!    asked, the events encoded.
//! 8. `append.rs`: the events appended, then applied after the ack; the
//!    snapshot trigger. `involved.rs`: the same steps for a command that
//!    decides over several aggregates, with one atomic append for all.
//! 9. `retry.rs`: after a failed append, reload and decide again, or give
//!    up: the policy, a value.
//! 10. `failure.rs`: why a command was not accepted, typed, with its cause.
//! 11. `reply.rs`: the outcome as the wire reply, in one place.

mod append;
mod cache;
mod decide;
mod failure;
mod handler;
mod idempotency;
mod involved;
mod load;
mod reply;
mod request;
mod retry;
mod serve;
mod slot;

pub use handler::{AggregateHandler, HandlerConfig, WarmError, WarmErrorKind};
pub use request::CommandRequest;
pub(crate) use serve::{serve, Dispatch, Unroutable};
pub use serve::{CommandOutcome, OutcomeObserver};
