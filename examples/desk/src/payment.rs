//! A payment: received or refused, once, for one order. The order is named
//! by id only: the payment stream knows nothing of the orders' (the desk
//! and the settlement join them).

use jetsource::{Aggregate, Rejection};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a payment's commands need to know.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    /// Received or refused: settled either way.
    pub settled: bool,
}

/// `cmd.payment.<id>.pay` and `cmd.payment.<id>.refuse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PaymentCommand {
    /// Records the payment.
    Pay {
        /// The order paid.
        order: String,
        /// How much, in cents; at least 1.
        amount: u64,
    },
    /// Records that the payment was refused (the card was declined).
    Refuse {
        /// The order it was to pay.
        order: String,
    },
}

/// `evt.payment.<id>.<Event>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PaymentEvent {
    /// The payment was received.
    PaymentReceived {
        /// The order paid.
        order: String,
        /// How much, in cents.
        amount: u64,
    },
    /// The payment was refused.
    PaymentRefused {
        /// The order it was to pay.
        order: String,
    },
}

/// An order id is an aggregate id: a payment naming anything else could
/// never be joined to its order.
fn check_order(order: &str) -> Result<(), Rejection> {
    jetsource::schemas::token::validate("order id", order)
        .map_err(|e| Rejection::validation(e.to_string()))
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;

    fn handle(&self, command: PaymentCommand) -> Result<Vec<PaymentEvent>, Rejection> {
        if self.settled {
            return Err(Rejection::validation("the payment is settled already"));
        }
        match command {
            PaymentCommand::Pay { amount: 0, .. } => {
                Err(Rejection::validation("a payment is at least 1"))
            }
            PaymentCommand::Pay { order, amount } => {
                check_order(&order)?;
                Ok(vec![PaymentEvent::PaymentReceived { order, amount }])
            }
            PaymentCommand::Refuse { order } => {
                check_order(&order)?;
                Ok(vec![PaymentEvent::PaymentRefused { order }])
            }
        }
    }

    fn apply(&mut self, event: PaymentEvent) {
        match event {
            PaymentEvent::PaymentReceived { .. } | PaymentEvent::PaymentRefused { .. } => {
                self.settled = true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsource::testing::AggregateTest;
    use jetsource::RejectionKind;

    #[test]
    fn a_payment_is_received_or_refused_once() {
        let received = PaymentEvent::PaymentReceived {
            order: "o1".into(),
            amount: 30,
        };
        let state = AggregateTest::<Payment>::given_no_previous_events()
            .when_wire("pay", r#"{"order":"o1","amount":30}"#)
            .then_expect_events_and_state(vec![received.clone()]);
        assert!(state.settled);
        let refused = PaymentEvent::PaymentRefused { order: "o1".into() };
        AggregateTest::<Payment>::given_no_previous_events()
            .when_wire("refuse", r#"{"order":"o1"}"#)
            .then_expect_events(vec![refused.clone()]);
        for history in [received, refused] {
            AggregateTest::<Payment>::given(vec![history])
                .when_wire("pay", r#"{"order":"o1","amount":1}"#)
                .then_expect_rejection_saying(RejectionKind::Validation, "settled already");
        }
    }

    #[test]
    fn a_payment_names_an_order_and_an_amount() {
        for body in [
            r#"{"order":"o1","amount":0}"#,
            r#"{"order":"o.1","amount":5}"#,
            r#"{"order":"","amount":5}"#,
        ] {
            AggregateTest::<Payment>::given_no_previous_events()
                .when_wire("pay", body)
                .then_expect_rejection(RejectionKind::Validation);
        }
        AggregateTest::<Payment>::given_no_previous_events()
            .when_wire("pay", r#"{"order":"o1"}"#)
            .then_expect_bad_request();
    }
}
