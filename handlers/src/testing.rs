//! A given/when/then harness for aggregates: no server, no runtime, just
//! the pure decision.
//!
//! ```
//! # use jetsource_handlers::{Aggregate, Rejection, RejectionKind};
//! # use jetsource_handlers::testing::AggregateTest;
//! # #[derive(Default, Clone)] struct Light { on: bool }
//! # #[derive(serde::Deserialize)] #[serde(rename_all = "snake_case")] enum Cmd { Switch {} }
//! # #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)] enum Evt { SwitchedOn {} }
//! # impl Aggregate for Light {
//! #   const TYPE: &'static str = "light"; type Command = Cmd; type Event = Evt;
//! #   fn handle(&self, _: Cmd) -> Result<Vec<Evt>, Rejection> {
//! #     if self.on { Err(Rejection::validation("already on")) } else { Ok(vec![Evt::SwitchedOn {}]) } }
//! #   fn apply(&mut self, _: Evt) { self.on = true }
//! # }
//! AggregateTest::<Light>::given_no_previous_events()
//!     .when(Cmd::Switch {})
//!     .then_expect_events(vec![Evt::SwitchedOn {}]);
//! AggregateTest::<Light>::given(vec![Evt::SwitchedOn {}])
//!     .when_wire("switch", "{}")
//!     .then_expect_rejection(RejectionKind::Validation);
//! ```

use crate::aggregate::{Aggregate, Rejection, RejectionKind};
use crate::codec;
use jetsource_schemas::upcast;
use std::fmt::Debug;

/// The "given" step: an aggregate built from past events.
pub struct AggregateTest<A: Aggregate> {
    state: A,
}

impl<A: Aggregate> AggregateTest<A> {
    /// A new aggregate with no history.
    pub fn given_no_previous_events() -> Self {
        AggregateTest {
            state: A::default(),
        }
    }

    /// An aggregate that has applied `events`.
    pub fn given(events: Vec<A::Event>) -> Self {
        let mut state = A::default();
        for event in events {
            state.apply(event);
        }
        AggregateTest { state }
    }

    /// An aggregate that has applied events as they are stored: each
    /// `(version, event type, JSON body)`, read through the aggregate's
    /// upcasters as every reader of the store reads them. For testing that
    /// events an older version wrote still decide correctly.
    ///
    /// # Panics
    /// When one does not read: a test failure.
    pub fn given_stored(events: Vec<(u32, &str, serde_json::Value)>) -> Self {
        let mut state = A::default();
        for (version, event_type, body) in events {
            let bytes = body.to_string();
            if let Err(e) =
                upcast::decode_stored::<A>(event_type, version, bytes.as_bytes(), |_, event| {
                    state.apply(event)
                })
            {
                panic!("stored {event_type} v{version} {body} does not read: {e}");
            }
        }
        AggregateTest { state }
    }

    /// The state the "given" step built, for checks of its own.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The "when" step: decide `command`.
    pub fn when(self, command: A::Command) -> Outcome<A> {
        Outcome {
            result: self.state.handle(command),
        }
    }

    /// The "when" step with the command as it arrives on the wire: its name
    /// (the subject's last token) and its JSON body.
    ///
    /// # Panics
    /// When the command does not decode: a test failure.
    pub fn when_wire(self, name: &str, body: &str) -> Outcome<A> {
        match codec::decode_command::<A::Command>(name, body.as_bytes()) {
            Ok(command) => self.when(command),
            Err(e) => panic!("command {name} {body} does not decode: {e}"),
        }
    }
}

/// The "then" step: what the decision returned.
pub struct Outcome<A: Aggregate> {
    result: Result<Vec<A::Event>, Rejection>,
}

impl<A: Aggregate> Outcome<A>
where
    A::Event: PartialEq + Debug,
{
    /// Asserts the decision produced exactly `expected`.
    ///
    /// # Panics
    /// When it did not.
    pub fn then_expect_events(self, expected: Vec<A::Event>) {
        match self.result {
            Ok(events) => assert_eq!(events, expected, "unexpected events"),
            Err(rejection) => panic!("expected events {expected:?}, got rejection {rejection}"),
        }
    }

    /// Asserts the decision was rejected with `kind`; returns the rejection
    /// for further checks.
    ///
    /// # Panics
    /// When it was not.
    pub fn then_expect_rejection(self, kind: RejectionKind) -> Rejection {
        match self.result {
            Ok(events) => panic!("expected a {kind:?} rejection, got events {events:?}"),
            Err(rejection) => {
                assert_eq!(rejection.kind(), kind, "wrong rejection kind: {rejection}");
                rejection
            }
        }
    }

    /// The raw result.
    pub fn into_result(self) -> Result<Vec<A::Event>, Rejection> {
        self.result
    }
}
