//! Hosting your own aggregate: a counter in its own crate, with the whole
//! jetsource CLI.
//!
//! Run it (an embedded nats-server starts when no URL is set):
//!
//! ```sh
//! cargo run --example counter -- run
//! cargo run --example counter -- send counter c1 start '{}'
//! cargo run --example counter -- send counter c1 add '{"by": 5}'
//! cargo run --example counter -- rewind counter c1
//! cargo run --example counter -- schema --out counter-schemas
//! ```
//!
//! `App::aggregate` asks for a serializable state (so `rewind` can show
//! it) and JSON Schemas of the commands and events (so `schema` can
//! publish them): derive `Serialize` and `JsonSchema`.

use jetsource::{Aggregate, App, Rejection};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The state a counter's commands need.
#[derive(Debug, Default, Clone, Serialize)]
struct Counter {
    started: bool,
    value: u64,
}

/// `cmd.counter.<id>.start` and `cmd.counter.<id>.add`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum CounterCommand {
    Start {},
    Add { by: u64 },
}

/// `evt.counter.<id>.Started` and `evt.counter.<id>.Added`.
// PartialEq and Debug: the test harness compares and shows events.
#[derive(Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
enum CounterEvent {
    Started {},
    Added { by: u64 },
}

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    type Command = CounterCommand;
    type Event = CounterEvent;

    fn handle(&self, command: CounterCommand) -> Result<Vec<CounterEvent>, Rejection> {
        match command {
            CounterCommand::Start {} if self.started => {
                Err(Rejection::validation("already started"))
            }
            CounterCommand::Start {} => Ok(vec![CounterEvent::Started {}]),
            CounterCommand::Add { .. } if !self.started => {
                Err(Rejection::not_found("no such counter"))
            }
            CounterCommand::Add { by: 0 } => Err(Rejection::validation("add at least 1")),
            CounterCommand::Add { by } if self.value.checked_add(by).is_none() => {
                Err(Rejection::validation("the counter would overflow"))
            }
            CounterCommand::Add { by } => Ok(vec![CounterEvent::Added { by }]),
        }
    }

    fn apply(&mut self, event: CounterEvent) {
        match event {
            CounterEvent::Started {} => self.started = true,
            CounterEvent::Added { by } => self.value = self.value.saturating_add(by),
        }
    }
}

fn main() -> std::process::ExitCode {
    jetsource::cli::main(App::new().aggregate::<Counter>())
}

// The README's test, as written there (`cargo test --example counter`).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_to_a_started_counter() {
        use jetsource::testing::AggregateTest;
        AggregateTest::<Counter>::given(vec![CounterEvent::Started {}])
            .when_wire("add", r#"{"by": 2}"#)
            .then_expect_events(vec![CounterEvent::Added { by: 2 }]);
    }
}
