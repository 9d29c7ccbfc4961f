//! An order: placed once with a customer and a total, then confirmed
//! (paid) or cancelled, once.

use jetsource::{Aggregate, Rejection};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What an order's commands need to know.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Placed (and not yet confirmed or cancelled, unless those say so).
    pub placed: bool,
    /// Confirmed: paid in full.
    pub confirmed: bool,
    /// Cancelled.
    pub cancelled: bool,
}

/// `cmd.order.<id>.place`, `cmd.order.<id>.confirm`, `cmd.order.<id>.cancel`.
///
/// `Serialize` too, so that Rust callers send it typed
/// (`CommandClient::send_command::<Order>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OrderCommand {
    /// Places the order.
    Place {
        /// Who ordered.
        customer: String,
        /// What it costs, in cents; at least 1.
        total: u64,
    },
    /// Confirms it: it is paid. Sent by the `settlement` process manager.
    Confirm {},
    /// Cancels it.
    Cancel {
        /// Why, for people; not empty.
        reason: String,
    },
}

/// `evt.order.<id>.<Event>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OrderEvent {
    /// The order was placed.
    OrderPlaced {
        /// Who ordered.
        customer: String,
        /// What it costs, in cents.
        total: u64,
    },
    /// The order was paid in full and stands.
    OrderConfirmed {},
    /// The order was cancelled.
    OrderCancelled {
        /// Why.
        reason: String,
    },
}

impl Order {
    /// Why the order cannot move any more, if it cannot.
    fn closed(&self) -> Option<Rejection> {
        if !self.placed {
            Some(Rejection::not_found("no such order"))
        } else if self.cancelled {
            Some(Rejection::validation("the order is cancelled already"))
        } else if self.confirmed {
            Some(Rejection::validation("the order is confirmed already"))
        } else {
            None
        }
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;

    fn handle(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, Rejection> {
        match command {
            OrderCommand::Place { .. } if self.placed => {
                Err(Rejection::validation("the order is placed already"))
            }
            OrderCommand::Place { total: 0, .. } => {
                Err(Rejection::validation("an order costs at least 1"))
            }
            OrderCommand::Place { customer, total } => {
                Ok(vec![OrderEvent::OrderPlaced { customer, total }])
            }
            OrderCommand::Confirm {} => match self.closed() {
                Some(rejection) => Err(rejection),
                None => Ok(vec![OrderEvent::OrderConfirmed {}]),
            },
            OrderCommand::Cancel { reason } => match self.closed() {
                Some(rejection) => Err(rejection),
                None if reason.trim().is_empty() => {
                    Err(Rejection::validation("a cancellation says why"))
                }
                None => Ok(vec![OrderEvent::OrderCancelled { reason }]),
            },
        }
    }

    fn apply(&mut self, event: OrderEvent) {
        match event {
            OrderEvent::OrderPlaced { .. } => self.placed = true,
            OrderEvent::OrderConfirmed {} => self.confirmed = true,
            OrderEvent::OrderCancelled { .. } => self.cancelled = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsource::testing::AggregateTest;
    use jetsource::RejectionKind;

    fn placed() -> OrderEvent {
        OrderEvent::OrderPlaced {
            customer: "ada".into(),
            total: 30,
        }
    }

    #[test]
    fn an_order_is_placed_once() {
        let state = AggregateTest::<Order>::given_no_previous_events()
            .when(OrderCommand::Place {
                customer: "ada".into(),
                total: 30,
            })
            .then_expect_events_and_state(vec![placed()]);
        assert!(state.placed && !state.confirmed && !state.cancelled);
        AggregateTest::<Order>::given(vec![placed()])
            .when_wire("place", r#"{"customer":"bob","total":1}"#)
            .then_expect_rejection_saying(RejectionKind::Validation, "placed already");
        AggregateTest::<Order>::given_no_previous_events()
            .when_wire("place", r#"{"customer":"ada","total":0}"#)
            .then_expect_rejection_saying(RejectionKind::Validation, "at least 1");
    }

    #[test]
    fn a_placed_order_is_confirmed_or_cancelled_and_then_neither() {
        AggregateTest::<Order>::given(vec![placed()])
            .when_wire("confirm", "{}")
            .then_expect_events(vec![OrderEvent::OrderConfirmed {}]);
        let cancelled = OrderEvent::OrderCancelled {
            reason: "payment refused".into(),
        };
        AggregateTest::<Order>::given(vec![placed()])
            .when_wire("cancel", r#"{"reason":"payment refused"}"#)
            .then_expect_events(vec![cancelled.clone()]);
        for (history, says) in [
            (vec![placed(), OrderEvent::OrderConfirmed {}], "confirmed"),
            (vec![placed(), cancelled], "cancelled"),
        ] {
            for (command, body) in [("confirm", "{}"), ("cancel", r#"{"reason":"late"}"#)] {
                AggregateTest::<Order>::given(history.clone())
                    .when_wire(command, body)
                    .then_expect_rejection_saying(RejectionKind::Validation, says);
            }
        }
    }

    #[test]
    fn an_order_not_placed_is_not_found_and_a_cancellation_says_why() {
        AggregateTest::<Order>::given_no_previous_events()
            .when(OrderCommand::Confirm {})
            .then_expect_rejection(RejectionKind::NotFound);
        AggregateTest::<Order>::given(vec![placed()])
            .when_wire("cancel", r#"{"reason":" "}"#)
            .then_expect_rejection_saying(RejectionKind::Validation, "says why");
    }

    #[test]
    fn commands_of_the_wrong_shape_are_bad_requests() {
        for (command, body) in [
            ("place", r#"{"customer":"ada"}"#),
            ("place", r#"{"customer":"ada","total":-1}"#),
            ("cancel", "{}"),
            ("confirm", r#"{"now":true}"#),
            ("ship", "{}"),
        ] {
            AggregateTest::<Order>::given(vec![placed()])
                .when_wire(command, body)
                .then_expect_bad_request();
        }
    }
}
