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
use std::collections::BTreeMap;
use std::fmt::Debug;

/// The "given" step: an aggregate built from past events, and for a
/// command that involves other aggregates, theirs.
pub struct AggregateTest<A: Aggregate> {
    state: A,
    others: BTreeMap<String, A>,
}

impl<A: Aggregate> AggregateTest<A> {
    /// A new aggregate with no history.
    pub fn given_no_previous_events() -> Self {
        AggregateTest {
            state: A::default(),
            others: BTreeMap::new(),
        }
    }

    /// An aggregate that has applied `events`.
    pub fn given(events: Vec<A::Event>) -> Self {
        let mut state = A::default();
        for event in events {
            state.apply(event);
        }
        AggregateTest {
            state,
            others: BTreeMap::new(),
        }
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
            if let Err(e) = upcast::decode_stored::<A>(
                event_type,
                version,
                bytes.as_bytes(),
                None,
                |_, event| state.apply(event),
            ) {
                panic!("stored {event_type} v{version} {body} does not read: {e}");
            }
        }
        AggregateTest {
            state,
            others: BTreeMap::new(),
        }
    }

    /// The state the "given" step built, for checks of its own.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Another aggregate of the type, with id `id`, that has applied
    /// `events`: for a command that involves it. An involved aggregate
    /// not given this way has no events.
    pub fn and_other(mut self, id: &str, events: Vec<A::Event>) -> Self {
        let mut state = A::default();
        for event in events {
            state.apply(event);
        }
        self.others.insert(id.to_string(), state);
        self
    }

    /// The "when" step for a command addressed to aggregate `id` (the one
    /// the "given" step built), decided as the runtime decides it: over
    /// the states of every aggregate it involves when it involves any
    /// ([`Aggregate::handle_many`]), else by `handle`, every event on `id`.
    pub fn when_on(self, id: &str, command: A::Command) -> ManyOutcome<A> {
        let involved = A::involves(&command);
        let result = if involved.is_empty() {
            self.state
                .handle(command)
                .map(|events| events.into_iter().map(|e| (id.to_string(), e)).collect())
        } else {
            let empty = A::default();
            let others: BTreeMap<&str, &A> = involved
                .iter()
                .filter(|other| *other != id)
                .map(|other| {
                    let state = self.others.get(other).unwrap_or(&empty);
                    (other.as_str(), state)
                })
                .collect();
            self.state.handle_many(id, command, &others)
        };
        ManyOutcome { result }
    }

    /// [`AggregateTest::when_on`] with the command as it arrives on the
    /// wire: its name and its JSON body.
    ///
    /// # Panics
    /// When the command does not decode: a test failure.
    pub fn when_wire_on(self, id: &str, name: &str, body: &str) -> ManyOutcome<A> {
        match codec::decode_command::<A::Command>(name, body.as_bytes()) {
            Ok(command) => self.when_on(id, command),
            Err(e) => panic!("command {name} {body} does not decode: {e}"),
        }
    }

    /// The "when" step: decide `command`.
    pub fn when(self, command: A::Command) -> Outcome<A> {
        let result = self.state.handle(command);
        Outcome {
            state: self.state,
            result: Ok(result),
        }
    }

    /// The "when" step with the command as it arrives on the wire: its name
    /// (the subject's last token) and its JSON body. A command that does
    /// not decode is what the runtime answers `bad_request`
    /// ([`Outcome::then_expect_bad_request`]).
    pub fn when_wire(self, name: &str, body: &str) -> Outcome<A> {
        match codec::decode_command::<A::Command>(name, body.as_bytes()) {
            Ok(command) => self.when(command),
            Err(e) => Outcome {
                state: self.state,
                result: Err(e.to_string()),
            },
        }
    }
}

/// The "then" step: what the decision returned, or why the command never
/// reached it (it did not decode: `bad_request`).
pub struct Outcome<A: Aggregate> {
    state: A,
    result: Result<Result<Vec<A::Event>, Rejection>, String>,
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
        let events = self.events(&format!("expected events {expected:?}"));
        assert_eq!(events, expected, "unexpected events");
    }

    /// Asserts the decision produced exactly `expected`, and returns the
    /// state with them applied, for assertions on it.
    ///
    /// # Panics
    /// When it did not.
    pub fn then_expect_events_and_state(self, expected: Vec<A::Event>) -> A {
        let mut state = self.state.clone();
        let events = self.events(&format!("expected events {expected:?}"));
        assert_eq!(events, expected, "unexpected events");
        for event in events {
            state.apply(event);
        }
        state
    }

    /// Asserts the decision was rejected with `kind`; returns the rejection
    /// for further checks (its [`Rejection::reason`]).
    ///
    /// # Panics
    /// When it was not.
    pub fn then_expect_rejection(self, kind: RejectionKind) -> Rejection {
        match self.result {
            Ok(Ok(events)) => panic!("expected a {kind:?} rejection, got events {events:?}"),
            Ok(Err(rejection)) => {
                assert_eq!(rejection.kind(), kind, "wrong rejection kind: {rejection}");
                rejection
            }
            Err(why) => panic!("expected a {kind:?} rejection, got bad_request: {why}"),
        }
    }

    /// Asserts the decision was rejected with `kind` and a reason
    /// containing `part`.
    ///
    /// # Panics
    /// When it was not.
    pub fn then_expect_rejection_saying(self, kind: RejectionKind, part: &str) -> Rejection {
        let rejection = self.then_expect_rejection(kind);
        assert!(
            rejection.reason().contains(part),
            "the reason {:?} does not say {part:?}",
            rejection.reason()
        );
        rejection
    }

    /// Asserts the decision was rejected with `kind` and `details` (the
    /// aggregate's error, as it serializes: see
    /// [`jetsource_schemas::aggregate::DomainError`]).
    ///
    /// # Panics
    /// When it was not.
    pub fn then_expect_rejection_with_details(
        self,
        kind: RejectionKind,
        details: impl serde::Serialize,
    ) -> Rejection {
        let rejection = self.then_expect_rejection(kind);
        let expected = serde_json::to_value(details).expect("the expected details serialize");
        assert_eq!(
            rejection.details(),
            Some(&expected),
            "the details of {rejection}"
        );
        rejection
    }

    /// Asserts the command did not decode, as the runtime answers
    /// `bad_request`; returns why.
    ///
    /// # Panics
    /// When it did.
    pub fn then_expect_bad_request(self) -> String {
        match self.result {
            Err(why) => why,
            Ok(decided) => panic!("expected bad_request, the command decoded and gave {decided:?}"),
        }
    }

    /// The raw result of the decision.
    ///
    /// # Panics
    /// When the command did not decode (see
    /// [`Outcome::then_expect_bad_request`]).
    pub fn into_result(self) -> Result<Vec<A::Event>, Rejection> {
        match self.result {
            Ok(decided) => decided,
            Err(why) => panic!("the command did not decode (bad_request): {why}"),
        }
    }

    fn events(self, expected: &str) -> Vec<A::Event> {
        match self.result {
            Ok(Ok(events)) => events,
            Ok(Err(rejection)) => panic!("{expected}, got rejection {rejection}"),
            Err(why) => panic!("{expected}, got bad_request: {why}"),
        }
    }
}

/// The "then" step of a command addressed to one aggregate of several:
/// what the decision returned, each event with its aggregate's id.
pub struct ManyOutcome<A: Aggregate> {
    result: Result<Vec<(String, A::Event)>, Rejection>,
}

impl<A: Aggregate> ManyOutcome<A>
where
    A::Event: PartialEq + Debug,
{
    /// Asserts the decision produced exactly `expected`: each event with
    /// the id of the aggregate it goes to, in order.
    ///
    /// # Panics
    /// When it did not.
    pub fn then_expect_events(self, expected: Vec<(&str, A::Event)>) {
        let expected: Vec<(String, A::Event)> = expected
            .into_iter()
            .map(|(id, event)| (id.to_string(), event))
            .collect();
        match self.result {
            Ok(events) => assert_eq!(events, expected, "unexpected events"),
            Err(rejection) => panic!("expected events {expected:?}, got rejection {rejection}"),
        }
    }

    /// Asserts the decision was rejected with `kind`; returns the rejection.
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
}
