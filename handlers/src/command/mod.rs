//! One command's way through the handlers, a file per step, in the order a
//! command meets them.
//!
//! - `serve.rs`: the message from the subscription to the reply: parsed,
//!   handed to its aggregate type's handler, answered, observed.
//! - `request.rs`: the subject and headers parsed and validated into a
//!   [`CommandRequest`].
//! - `handler.rs`: [`AggregateHandler`]: the aggregate's slot, its load,
//!   the idempotency record, the decision, the append, retries.
//! - `cache.rs`: the state cache; `slot.rs`: an aggregate's entry in it.
//! - `load.rs`: a slot rebuilt from the store.
//! - `idempotency.rs`: the commands an aggregate accepted, and their events.

mod cache;
mod handler;
mod idempotency;
mod load;
mod request;
mod serve;
mod slot;

pub use handler::{AggregateHandler, HandlerConfig, WarmError, WarmErrorKind};
pub use request::CommandRequest;
pub(crate) use serve::{serve, Dispatch, Unroutable};
pub use serve::{CommandOutcome, OutcomeObserver};
