//! W3C Trace Context on commands and events: one trace from a client's
//! request to the read model.
//!
//! A command may carry a [`TRACEPARENT`] header
//! (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, W3C Trace
//! Context level 1). The handler's span continues that trace, and every
//! event the command stores carries a `traceparent` naming the handler's
//! span (or, when this process records no spans, the client's value as it
//! came); projectors and process managers continue the trace from the
//! event, and a process manager's commands carry it on.
//!
//! As the W3C recommendation asks, a value that does not parse is ignored
//! (the command is served, its events carry none), never refused: tracing
//! must not change what a command does. `tracestate` is not carried.
//!
//! The spans are `tracing` spans; with an OpenTelemetry layer installed
//! (`jetsource run` installs one when an OTLP endpoint is configured) they
//! are exported with these trace ids. Without one, [`continue_from`] and
//! [`outgoing`] cost a lookup and change nothing but the forwarded header.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header a command or an event names its trace in (lower case, as
/// the W3C spells it; NATS header names are case-sensitive).
pub const TRACEPARENT: &str = "traceparent";

/// A `traceparent` value that parses: version, trace id, parent id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace's id (never all zeros).
    pub trace_id: [u8; 16],
    /// The id of the span that sent it (never all zeros).
    pub parent_id: [u8; 8],
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses `value` as W3C Trace Context level 1 does: version `00` is
    /// exactly 55 characters; a higher version (not `ff`) is read by its
    /// first 55 and must go on with `-` if longer. Lower-case hex only.
    /// `None`: not a trace parent (to be ignored).
    pub fn parse(value: &str) -> Option<TraceParent> {
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_byte(&bytes[0..2])?;
        match version {
            0xff => return None,
            0 if bytes.len() != 55 => return None,
            _ if bytes.len() > 55 && bytes[55] != b'-' => return None,
            _ => {}
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&bytes[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_id = [0u8; 8];
        for (i, b) in parent_id.iter_mut().enumerate() {
            *b = hex_byte(&bytes[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&bytes[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The value, at version `00`.
    pub fn to_header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }

    fn span_context(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.parent_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        )
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes `span` continue the trace `parent` names. Call it before the
/// span is first entered: OpenTelemetry fixes a span's parent when the
/// span starts.
pub fn continue_from(span: &tracing::Span, parent: Option<&TraceParent>) {
    if let Some(parent) = parent {
        let cx = opentelemetry::Context::new().with_remote_span_context(parent.span_context());
        // Refused only when no OpenTelemetry layer records this span (none
        // installed, or the span is off): then there is nothing to join.
        let _ = span.set_parent(cx);
    }
}

/// The `traceparent` to write on what `span` sends on: the span itself
/// when it is recorded by OpenTelemetry, else `received` as it came (so a
/// trace passes through a process that records none).
pub fn outgoing(span: &tracing::Span, received: Option<&TraceParent>) -> Option<TraceParent> {
    let cx = span.context();
    let own = cx.span().span_context().clone();
    if own.is_valid() {
        return Some(TraceParent {
            trace_id: own.trace_id().to_bytes(),
            parent_id: own.span_id().to_bytes(),
            flags: own.trace_flags().to_u8(),
        });
    }
    received.copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_w3c_example_parses_and_prints_back() {
        let parsed = TraceParent::parse(GOOD).expect("a trace parent");
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            parsed.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(parsed.flags, 1);
        assert_eq!(parsed.to_header(), GOOD);
    }

    #[test]
    fn what_the_recommendation_says_to_ignore_is_none() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        let parsed = TraceParent::parse(later).expect("a trace parent");
        assert_eq!(parsed.to_header(), GOOD);
    }

    #[test]
    fn without_a_recording_layer_the_received_parent_is_passed_on() {
        let parent = TraceParent::parse(GOOD);
        let span = tracing::info_span!("nothing records this");
        continue_from(&span, parent.as_ref());
        assert_eq!(outgoing(&span, parent.as_ref()), parent);
        assert_eq!(outgoing(&span, None), None);
    }
}
