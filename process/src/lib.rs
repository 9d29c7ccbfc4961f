//! Process managers for jetsource: workflows that follow events, keep a
//! state per instance, send commands and wait for durable deadlines.
//!
//! A projector folds events into a read model someone queries; a process
//! manager turns events into *commands*: when a post is created, publish it
//! later unless someone did; when a payment is offered, present it to its
//! payee, and refund the payer when that is refused or not accepted in
//! time. It implements
//! [`ProcessManager`]: it follows the events of one or more aggregate types
//! (typed, as a [`TypedProjector`](jetsource_projector::TypedProjector)
//! does: an [`Envelope`](jetsource_projector::Envelope), or an enum of them
//! declared with [`follows!`](jetsource_projector::follows)), routes each to
//! an instance by [`ProcessManager::key`], and decides in a pure,
//! synchronous [`ProcessManager::react`] the [`Reaction`]: the instance's
//! new state (none ends it), the commands to send and the deadlines to set
//! or cancel. A deadline coming is a [`Trigger`] of the same instance, and
//! so is a command of its refused with `validation` or `not_found`
//! ([`Trigger::Refused`]), reacted to at once, and so is a forget of an
//! aggregate it follows, told to the instances [`ProcessManager::forgotten`]
//! names ([`Trigger::Forgotten`]).
//!
//! [`runtime::start`] runs one: a durable consumer on each event stream
//! followed and one on the manager's fired deadlines; per trigger it reads
//! the instance's KV entry, reacts, sends each command through the normal
//! command subjects with a `Command-Id` derived from the manager, the
//! instance and the trigger ([`command_id`]), sets and cancels the
//! deadlines, writes the entry (compare-and-set on its revision) and acks.
//! A redelivery, a crash between sending and recording, or two processes
//! racing on one trigger send the same ids again, and the handlers accept
//! each command once (a command id names a command on its aggregate for
//! the aggregate's whole history). An instance that ends is removed from
//! the bucket; a trigger that reaches it later (a redelivery, an event
//! after its end) is reacted to from no state.
//!
//! # Deadlines on message schedules
//! Deadlines are JetStream message schedules (ADR-51), in a stream of the
//! manager's with `allow_msg_schedules` (see [`deadlines`] for the
//! subjects). Verified against nats-server 2.15.1 (`tests/message_schedules.rs`):
//! - a message with `Nats-Schedule: @at <RFC 3339>` and
//!   `Nats-Schedule-Target: <subject of the same stream>` is held, and is
//!   not on the target before its time;
//! - at the time the server publishes the held body to the target, with
//!   `Nats-Scheduler: <the held subject>`, and removes the held message;
//!   it fires once;
//! - purging the held subject before the time cancels it: it never fires;
//! - a schedule due while the server was down (SIGKILL, store kept) fires
//!   once after the restart, late;
//! - a second message on the held subject replaces the schedule (ADR-51:
//!   "the last message on a subject holds the schedule"): it fires once,
//!   with the second body.
//!
//! The stream is created with async-nats's `stream::Config::allow_message_schedules`
//! (`allow_msg_schedules` on the wire). Not probed: what the server does
//! with an `@at` already past; the runtime publishes such a deadline as
//! fired itself.
//!
//! Since a deadline may fire just as it is moved or cancelled, the
//! instance's entry keeps each pending deadline's time, and a fired
//! deadline that does not match it is stale and ignored, once the entry
//! records the trigger that set it: a deadline due at once fires before
//! the reaction setting it is recorded, and is retried until it is (for
//! at most an ack wait: a reaction that failed before recording is redone
//! and sets its deadlines again).
//!
//! Nothing in [`ProcessManager`], [`Trigger`] or [`Reaction`] is a NATS type.
//!
//! # Layout
//! - [`manager`]: the trait and its inputs and outputs.
//! - [`runtime`]: consumers, one trigger at a time, start and stop; in
//!   it, a message as a trigger, applying one, sending a command.
//! - [`instance`]: an instance as stored in its KV entry.
//! - [`command_id`]: the deterministic `Command-Id` of a command sent.
//! - [`deadlines`]: setting and cancelling deadlines on message schedules.
//! - [`names`]: the bucket, stream, subjects and consumers of a manager.
//! - [`status`]: where a manager is, read from JetStream.
//! - [`parked`]: triggers that can never be reacted to, kept aside.
//! - [`config`](mod@config): settings.
//! - `error`: [`ProcessError`].
//! - [`testing`]: given/when/then for `react`.

pub mod command_id;
pub mod config;
pub mod deadlines;
mod error;
pub mod instance;
pub mod manager;
pub mod names;
pub mod parked;
pub mod runtime;
pub mod status;
pub mod testing;

pub use config::ProcessConfig;
pub use error::{ProcessError, ProcessErrorKind};
pub use manager::{
    Command, Deadline, Fired, ForgottenAggregate, ProcessManager, Reaction, Refusal, Refused,
    Trigger,
};
pub use runtime::{start, RunningProcessManager};
