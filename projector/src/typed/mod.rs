//! Typed events: a projector names the aggregates it follows by their Rust
//! type and receives their decoded events with the metadata of each.
//!
//! [`Envelope<A>`] is one event of aggregate `A`: its decoded `A::Event`
//! and its [`Meta`]. A projector following one aggregate type takes
//! `Envelope<A>` as its input; one following several declares an enum of
//! envelopes with [`follows!`](crate::follows). Either way the input
//! implements [`Follows`], which knows the aggregate types (so the
//! subjects come from `A::TYPE`, never from a string a user types) and
//! decodes a stored [`Event`] into the input.
//!
//! A [`TypedProjector`] folds such inputs and answers typed queries
//! ([`Queries`]); the runtime runs it like any [`Projector`](crate::Projector).
//!
//! # Layout
//! - this module: [`Meta`], [`Envelope`], [`Follows`], [`follows!`](crate::follows).
//! - [`projector`](mod@projector): the [`TypedProjector`] trait.
//! - [`queries`]: typed query arguments ([`FromQuery`], [`Id`], [`Paging`])
//!   and the [`Queries`] router.

use crate::event::Event;
use crate::projector::{ProjectorError, ProjectorErrorKind};
use jetsource_schemas::aggregate::Aggregate;
use jetsource_schemas::headers;
use jetsource_schemas::upcast;

pub mod projector;
pub mod queries;

pub use projector::TypedProjector;
pub use queries::{FromQuery, Id, Paging, Queries};

/// What is known of a stored event besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The stream (`EVT_<TYPE>`).
    pub stream: String,
    /// Its sequence in the stream.
    pub seq: u64,
    /// Its subject, as stored (with the subject prefix, under one).
    pub subject: String,
    /// The aggregate type (`A::TYPE`).
    pub aggregate_type: String,
    /// The aggregate instance.
    pub aggregate_id: String,
    /// The event type (the variant name).
    pub event_type: String,
    /// The schema version of the body as stored (1 when unmarked).
    pub version: u32,
    /// When it was stored (RFC 3339).
    pub time: String,
    /// The command that produced it.
    pub command_id: Option<String>,
    /// The correlation id the command carried.
    pub correlation_id: Option<String>,
    /// The causation id the command carried.
    pub causation_id: Option<String>,
}

impl Meta {
    /// The metadata of `event`.
    pub fn of(event: &Event) -> Meta {
        let header = |name: &str| event.header(name).map(str::to_string);
        Meta {
            stream: event.stream.clone(),
            seq: event.seq,
            subject: event.subject.clone(),
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            event_type: event.event_type.clone(),
            version: event.version(),
            time: event.time.clone(),
            command_id: header(headers::COMMAND_ID),
            correlation_id: header(headers::CORRELATION_ID),
            causation_id: header(headers::CAUSATION_ID),
        }
    }
}

/// One event of aggregate `A`, decoded, with its metadata.
pub struct Envelope<A: Aggregate> {
    /// The event.
    pub event: A::Event,
    /// Where and when it was stored, and what caused it.
    pub meta: Meta,
}

impl<A: Aggregate> std::fmt::Debug for Envelope<A>
where
    A::Event: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("event", &self.event)
            .field("meta", &self.meta)
            .finish()
    }
}

impl<A: Aggregate> Envelope<A> {
    /// Decodes `event` as `A`'s events: `None` when it belongs to another
    /// aggregate type; otherwise every event it reads as today, through
    /// `A`'s upcasters (one, or several or none for an event whose type
    /// was split or dropped since it was stored), each with the event's
    /// metadata and its type as read. An [`ProjectorErrorKind::Invalid`]
    /// error when it does not read (the runtime parks such an event).
    pub fn decode_all(event: &Event) -> Result<Option<Vec<Self>>, ProjectorError> {
        if event.aggregate_type != A::TYPE {
            return Ok(None);
        }
        let mut read = Vec::with_capacity(1);
        upcast::decode_stored::<A>(
            &event.event_type,
            event.version(),
            &event.body,
            None,
            |event_type, decoded| {
                let mut meta = Meta::of(event);
                if meta.event_type != event_type {
                    meta.event_type = event_type.to_string();
                }
                read.push(Envelope {
                    event: decoded,
                    meta,
                });
            },
        )
        .map_err(|e| {
            ProjectorError::with_message_and_source(
                ProjectorErrorKind::Invalid,
                format!(
                    "{} #{}: {} does not read as a {} event",
                    event.stream,
                    event.seq,
                    jetsource_schemas::reply::excerpt(&event.event_type, 64),
                    A::TYPE
                ),
                e,
            )
        })?;
        Ok(Some(read))
    }

    /// [`Envelope::decode_all`] for an event that reads as at most one:
    /// `None` when it belongs to another aggregate type or reads as none;
    /// an [`ProjectorErrorKind::Invalid`] error when it reads as several.
    pub fn decode(event: &Event) -> Result<Option<Self>, ProjectorError> {
        let Some(mut read) = Self::decode_all(event)? else {
            return Ok(None);
        };
        match read.len() {
            0 | 1 => Ok(read.pop()),
            n => Err(ProjectorError::new(
                ProjectorErrorKind::Invalid,
                format!(
                    "{} #{}: reads as {n} events; read it with decode_all",
                    event.stream, event.seq
                ),
            )),
        }
    }
}

/// The input of a typed projector: the events of one or more aggregate
/// types, decoded.
pub trait Follows: Sized + Send + 'static {
    /// The aggregate types followed (each is one stream, `EVT_<TYPE>`).
    fn aggregate_types() -> Vec<&'static str>;

    /// The subjects followed, without a subject prefix: every event of
    /// each type followed.
    fn subjects() -> Vec<String> {
        Self::aggregate_types()
            .into_iter()
            .map(|t| format!("evt.{t}.>"))
            .collect()
    }

    /// Decodes a stored event: `None` for one of a type not followed.
    fn decode(event: &Event) -> Result<Option<Self>, ProjectorError>;

    /// Decodes a stored event into every input it reads as (an event
    /// upcast from an older version may read as several, or none): `None`
    /// for one of a type not followed. The runtime reads events with this;
    /// the default is [`Follows::decode`]'s one input.
    fn decode_all(event: &Event) -> Result<Option<Vec<Self>>, ProjectorError> {
        Ok(Self::decode(event)?.map(|one| vec![one]))
    }

    /// The metadata of the event.
    fn meta(&self) -> &Meta;
}

impl<A: Aggregate> Follows for Envelope<A> {
    fn aggregate_types() -> Vec<&'static str> {
        vec![A::TYPE]
    }

    fn decode(event: &Event) -> Result<Option<Self>, ProjectorError> {
        Envelope::<A>::decode(event)
    }

    fn decode_all(event: &Event) -> Result<Option<Vec<Self>>, ProjectorError> {
        Envelope::<A>::decode_all(event)
    }

    fn meta(&self) -> &Meta {
        &self.meta
    }
}

/// Declares an enum of [`Envelope`]s, one variant per aggregate type, that
/// implements [`Follows`]: the input of a projector following several
/// aggregate types.
///
/// ```
/// # use jetsource_schemas::aggregate::{Aggregate, Rejection};
/// # #[derive(Default, Clone)] struct Order;
/// # #[derive(serde::Serialize, serde::Deserialize)] enum OrderEvent { Placed {} }
/// # impl Aggregate for Order {
/// #     const TYPE: &'static str = "order";
/// #     type Command = ();
/// #     type Event = OrderEvent;
/// #     fn handle(&self, _: ()) -> Result<Vec<OrderEvent>, Rejection> { Ok(vec![]) }
/// #     fn apply(&mut self, _: OrderEvent) {}
/// # }
/// # #[derive(Default, Clone)] struct Payment;
/// # #[derive(serde::Serialize, serde::Deserialize)] enum PaymentEvent { Paid {} }
/// # impl Aggregate for Payment {
/// #     const TYPE: &'static str = "payment";
/// #     type Command = ();
/// #     type Event = PaymentEvent;
/// #     fn handle(&self, _: ()) -> Result<Vec<PaymentEvent>, Rejection> { Ok(vec![]) }
/// #     fn apply(&mut self, _: PaymentEvent) {}
/// # }
/// use jetsource_projector::typed::Follows;
///
/// jetsource_projector::follows! {
///     /// What the order desk follows.
///     pub enum Desk {
///         Order(Order),
///         Payment(Payment),
///     }
/// }
///
/// assert_eq!(Desk::aggregate_types(), ["order", "payment"]);
/// ```
#[macro_export]
macro_rules! follows {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident {
            $($variant:ident($aggregate:ty)),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        $vis enum $name {
            $(
                #[doc = concat!("An event of `", stringify!($aggregate), "`.")]
                $variant($crate::typed::Envelope<$aggregate>),
            )+
        }

        impl $crate::typed::Follows for $name {
            fn aggregate_types() -> ::std::vec::Vec<&'static str> {
                ::std::vec![$(<$aggregate as $crate::typed::AggregateType>::TYPE),+]
            }

            fn decode(
                event: &$crate::Event,
            ) -> ::std::result::Result<::std::option::Option<Self>, $crate::ProjectorError> {
                $(
                    if let ::std::option::Option::Some(envelope) =
                        $crate::typed::Envelope::<$aggregate>::decode(event)?
                    {
                        return ::std::result::Result::Ok(::std::option::Option::Some(
                            $name::$variant(envelope),
                        ));
                    }
                )+
                ::std::result::Result::Ok(::std::option::Option::None)
            }

            fn decode_all(
                event: &$crate::Event,
            ) -> ::std::result::Result<
                ::std::option::Option<::std::vec::Vec<Self>>,
                $crate::ProjectorError,
            > {
                $(
                    if let ::std::option::Option::Some(read) =
                        $crate::typed::Envelope::<$aggregate>::decode_all(event)?
                    {
                        return ::std::result::Result::Ok(::std::option::Option::Some(
                            read.into_iter().map($name::$variant).collect(),
                        ));
                    }
                )+
                ::std::result::Result::Ok(::std::option::Option::None)
            }

            fn meta(&self) -> &$crate::typed::Meta {
                match self {
                    $($name::$variant(envelope) => &envelope.meta,)+
                }
            }
        }
    };
}

/// `A::TYPE`, named through this crate so [`follows!`](crate::follows)
/// works in a crate that does not depend on `jetsource-schemas` itself.
pub trait AggregateType {
    /// The aggregate type.
    const TYPE: &'static str;
}

impl<A: Aggregate> AggregateType for A {
    const TYPE: &'static str = A::TYPE;
}
