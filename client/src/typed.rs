//! Sending an aggregate's commands typed: the subject's command name and
//! the body come from the `A::Command` value as the handler decodes it
//! (variant name, fields), and the accepted events come back decoded as
//! `A::Event`.
//!
//! `Aggregate::Command` asks only for `Deserialize` (the handler's side);
//! sending typed also asks for `Serialize`, on these methods alone, so an
//! aggregate whose commands never leave Rust typed needs no more than
//! before.

use crate::{CommandClient, SendErrorKind, SendOptions};
use jetsource_schemas::aggregate::Aggregate;
use jetsource_schemas::error::Error;
use jetsource_schemas::event::EventRef;
use jetsource_schemas::{codec, headers, upcast, Accepted, CommandReply, Rejected};
use serde::Serialize;

/// What went wrong sending a typed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypedSendErrorKind {
    /// The aggregate id is not a valid token, or a header is not; or the
    /// command does not serialize as an enum variant whose name is a
    /// token: nothing was sent.
    InvalidInput,
    /// No handler answered (none running, or too slow).
    NoAnswer,
    /// The answer was not a command reply.
    BadReply,
    /// The command was accepted, but one of its events could not be read
    /// back from its stream, or did not read as an `A::Event` (a reader
    /// older than the writer). The command is not to be resent.
    UnreadableEvent,
}

impl std::fmt::Display for TypedSendErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TypedSendErrorKind::InvalidInput => "invalid input",
            TypedSendErrorKind::NoAnswer => "no answer",
            TypedSendErrorKind::BadReply => "bad reply",
            TypedSendErrorKind::UnreadableEvent => "unreadable event",
        })
    }
}

/// A typed send failure.
pub type TypedSendError = Error<TypedSendErrorKind>;

/// The reply to a typed command.
pub enum TypedReply<A: Aggregate> {
    /// Accepted, with its events.
    Accepted(TypedAccepted<A>),
    /// Rejected; nothing was written.
    Rejected(Rejected),
}

/// An accepted command and its events, decoded.
pub struct TypedAccepted<A: Aggregate> {
    /// The reply as it came.
    pub reply: Accepted,
    /// Each event the command appended to the addressed aggregate, in
    /// order, with where it is stored. Events of other aggregates a
    /// command decided over are in [`Accepted::events`] only.
    pub events: Vec<(EventRef, A::Event)>,
}

// By hand: a derive would ask `A: Debug`, where only the events matter.
impl<A: Aggregate> std::fmt::Debug for TypedReply<A>
where
    A::Event: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypedReply::Accepted(accepted) => f.debug_tuple("Accepted").field(accepted).finish(),
            TypedReply::Rejected(rejected) => f.debug_tuple("Rejected").field(rejected).finish(),
        }
    }
}

impl<A: Aggregate> std::fmt::Debug for TypedAccepted<A>
where
    A::Event: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedAccepted")
            .field("reply", &self.reply)
            .field("events", &self.events)
            .finish()
    }
}

impl<A: Aggregate> TypedReply<A> {
    /// The events when accepted, else the rejection.
    pub fn into_result(self) -> Result<TypedAccepted<A>, Rejected> {
        match self {
            TypedReply::Accepted(accepted) => Ok(accepted),
            TypedReply::Rejected(rejected) => Err(rejected),
        }
    }
}

impl CommandClient {
    /// Sends `command` to `A`'s instance `aggregate_id` and waits for the
    /// reply; an accepted command's events are read back from their
    /// stream (one direct get each) and decoded as `A::Event`, through
    /// `A`'s upcasters. Personal fields of an aggregate with personal data
    /// are sealed in the stream: such an aggregate's events read as
    /// [`TypedSendErrorKind::UnreadableEvent`]; use [`CommandClient::send`].
    ///
    /// ```no_run
    /// # use jetsource_schemas::aggregate::{Aggregate, Rejection};
    /// # #[derive(Default, Clone)] struct Order;
    /// # #[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = "snake_case")]
    /// # enum OrderCommand { Place { total: u64 } }
    /// # #[derive(Debug, serde::Serialize, serde::Deserialize)] enum OrderEvent { OrderPlaced { total: u64 } }
    /// # impl Aggregate for Order {
    /// #     const TYPE: &'static str = "order";
    /// #     type Command = OrderCommand;
    /// #     type Event = OrderEvent;
    /// #     fn handle(&self, _: OrderCommand) -> Result<Vec<OrderEvent>, Rejection> { Ok(vec![]) }
    /// #     fn apply(&mut self, _: OrderEvent) {}
    /// # }
    /// # async fn example(nats: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use jetsource_client::{CommandClient, SendOptions, TypedReply};
    ///
    /// let client = CommandClient::new(nats);
    /// let reply = client
    ///     .send_command::<Order>("o1", &OrderCommand::Place { total: 30 }, &SendOptions::default())
    ///     .await?;
    /// match reply {
    ///     TypedReply::Accepted(accepted) => println!("{:?}", accepted.events),
    ///     TypedReply::Rejected(rejected) => println!("{:?}: {}", rejected.code, rejected.reason),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send_command<A>(
        &self,
        aggregate_id: &str,
        command: &A::Command,
        options: &SendOptions,
    ) -> Result<TypedReply<A>, TypedSendError>
    where
        A: Aggregate,
        A::Command: Serialize,
    {
        // A command enum is written as the handler reads it: the variant
        // name is the subject's last token, its fields the body (the
        // encoding events have, so the same function splits it).
        let encoded = codec::encode_event(command)
            .map_err(|e| Error::with_source(TypedSendErrorKind::InvalidInput, e))?;
        let reply = self
            .send(
                A::TYPE,
                aggregate_id,
                &encoded.event_type,
                encoded.body,
                options,
            )
            .await
            .map_err(|e| {
                let kind = match e.kind() {
                    SendErrorKind::InvalidInput => TypedSendErrorKind::InvalidInput,
                    SendErrorKind::NoAnswer => TypedSendErrorKind::NoAnswer,
                    SendErrorKind::BadReply => TypedSendErrorKind::BadReply,
                };
                Error::with_source(kind, e)
            })?;
        match reply {
            CommandReply::Rejected(rejected) => Ok(TypedReply::Rejected(rejected)),
            CommandReply::Accepted(reply) => {
                let mut events = Vec::with_capacity(reply.events.len());
                for at in reply.events.iter().filter(|e| e.aggregate_id.is_none()) {
                    for event in self.read_event::<A>(at).await? {
                        events.push((at.clone(), event));
                    }
                }
                Ok(TypedReply::Accepted(TypedAccepted { reply, events }))
            }
        }
    }

    /// The event stored at `at`, read as `A`'s events (one, or several or
    /// none when an upcaster split or dropped its type since).
    async fn read_event<A: Aggregate>(
        &self,
        at: &EventRef,
    ) -> Result<Vec<A::Event>, TypedSendError> {
        let unreadable = |e: &dyn std::fmt::Display| {
            Error::new(
                TypedSendErrorKind::UnreadableEvent,
                format!("{} #{}: {e}", at.stream, at.seq),
            )
        };
        let js = async_nats::jetstream::new(self.client.clone());
        let stream = js
            .get_stream_no_info(&at.stream)
            .await
            .map_err(|e| unreadable(&e))?;
        let message = stream
            .direct_get(at.seq)
            .await
            .map_err(|e| unreadable(&e))?;
        let version = message
            .headers
            .get(headers::EVENT_VERSION)
            .and_then(|v| v.as_str().parse().ok())
            .unwrap_or(1);
        let mut read = Vec::with_capacity(1);
        upcast::decode_stored::<A>(
            &at.event_type,
            version,
            &message.payload,
            None,
            |_, event| read.push(event),
        )
        .map_err(|e| unreadable(&e))?;
        Ok(read)
    }
}
