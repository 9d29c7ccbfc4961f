//! The span a projection applies a traced event in: it continues the trace
//! the event's `traceparent` names (see [`jetsource_schemas::trace`]), so one
//! trace runs from the client's command through the handler to each read
//! model. Events without one get no span: a replay of a million untraced
//! events costs nothing here.

use crate::event::Event;
use jetsource_schemas::trace::{self, TraceParent};

/// A span for projection `name` applying `event`, opened now and closed
/// when dropped (after the event is stored); `None` when the event carries
/// no trace.
pub(crate) fn applying(name: &str, event: &Event) -> Option<tracing::Span> {
    let parent = TraceParent::parse(event.header(trace::TRACEPARENT)?)?;
    let span = tracing::debug_span!(
        "apply",
        projection = name,
        stream = %event.stream,
        seq = event.seq,
        event_type = %event.event_type,
    );
    trace::continue_from(&span, Some(&parent));
    Some(span)
}
