//! The typed projector: it folds decoded events of the aggregate types it
//! follows, named by their Rust types, and the runtime runs it as any
//! [`Projector`].

use crate::event::Event;
use crate::projector::{Projector, ProjectorError, ProjectorErrorKind, Query, QueryError};
use crate::typed::Follows;

/// A read model folded from typed events.
///
/// Its subjects are those of [`Follows::subjects`]: every event of each
/// aggregate type its [`Input`](Self::Input) follows. Every typed projector
/// is a [`Projector`] (the runtime's form, which sees raw [`Event`]s): an
/// event whose body does not decode as its aggregate's event is an
/// [`ProjectorErrorKind::Invalid`] error, on which an in-memory projection
/// halts and a persisted one parks the event.
///
/// ```
/// # use jetsource_schemas::aggregate::{Aggregate, Rejection};
/// # #[derive(Default, Clone)] struct Order;
/// # #[derive(serde::Serialize, serde::Deserialize)] enum OrderEvent { Placed { total: u64 } }
/// # impl Aggregate for Order {
/// #     const TYPE: &'static str = "order";
/// #     type Command = ();
/// #     type Event = OrderEvent;
/// #     fn handle(&self, _: ()) -> Result<Vec<OrderEvent>, Rejection> { Ok(vec![]) }
/// #     fn apply(&mut self, _: OrderEvent) {}
/// # }
/// use jetsource_projector::typed::{Envelope, Id, Queries, TypedProjector};
/// use jetsource_projector::{ProjectorError, Query, QueryError};
/// use std::collections::BTreeMap;
///
/// #[derive(Default)]
/// struct Totals { by_order: BTreeMap<String, u64> }
///
/// impl TypedProjector for Totals {
///     type Input = Envelope<Order>;
///     fn name(&self) -> &'static str { "totals" }
///     fn apply(&mut self, input: Envelope<Order>) -> Result<(), ProjectorError> {
///         let OrderEvent::Placed { total } = input.event;
///         self.by_order.insert(input.meta.aggregate_id, total);
///         Ok(())
///     }
///     fn query(&self, query: &Query) -> Result<serde_json::Value, QueryError> {
///         Queries::new(query)
///             .get("get", |id: Id| self.by_order.get(id.as_str()).copied())
///             .answer()
///     }
/// }
/// ```
pub trait TypedProjector: Send + Sync + 'static {
    /// What it folds: an [`Envelope`](crate::typed::Envelope) of one
    /// aggregate type, or an enum declared with [`follows!`](crate::follows)
    /// for several.
    type Input: Follows;

    /// The projection's name; see [`Projector::name`].
    fn name(&self) -> &'static str;

    /// Folds one event into the read model. On `Err` the state must be as
    /// before the call; see [`Projector::apply`] for what the runtime does.
    fn apply(&mut self, input: Self::Input) -> Result<(), ProjectorError>;

    /// Effects outside the read model, for an event met live; see
    /// [`Projector::side_effects`]. The default does nothing.
    fn side_effects(&self, _input: &Self::Input) {}

    /// Answers a query on `query.<name>.<path…>`: typed with [`Queries`](crate::typed::Queries).
    fn query(&self, query: &Query) -> Result<serde_json::Value, QueryError>;
}

/// Decodes `event` as `I`'s inputs (several or none when upcasting split
/// or dropped it); one of a type not followed (which its subjects never
/// deliver) is refused rather than skipped.
fn decode<I: Follows>(event: &Event) -> Result<Vec<I>, ProjectorError> {
    I::decode_all(event)?.ok_or_else(|| {
        ProjectorError::new(
            ProjectorErrorKind::Invalid,
            format!(
                "{} #{}: an event of aggregate type {} is not followed here",
                event.stream,
                event.seq,
                jetsource_schemas::reply::excerpt(&event.aggregate_type, 64)
            ),
        )
    })
}

impl<T: TypedProjector> Projector for T {
    fn name(&self) -> &'static str {
        TypedProjector::name(self)
    }

    fn subjects(&self) -> Vec<String> {
        T::Input::subjects()
    }

    fn apply(&mut self, event: &Event) -> Result<(), ProjectorError> {
        // An event upcast into several applies them in order; the first
        // error is the event's, as any error of `apply` is.
        for input in decode(event)? {
            TypedProjector::apply(self, input)?;
        }
        Ok(())
    }

    fn side_effects(&self, event: &Event) {
        // `apply` consumed its input; an event met live decodes again here
        // (it decoded a moment ago, so it does again).
        for input in decode::<T::Input>(event).into_iter().flatten() {
            TypedProjector::side_effects(self, &input);
        }
    }

    fn query(&self, query: &Query) -> Result<serde_json::Value, QueryError> {
        TypedProjector::query(self, query)
    }
}
