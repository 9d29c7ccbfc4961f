//! A payment: received once, for one order. The order is named by id
//! only: the payment stream knows nothing of the orders' (the desk joins
//! them).

use jetsource::{Aggregate, Rejection};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a payment's commands need to know.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Payment {
    received: bool,
}

/// `cmd.payment.<id>.pay`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PaymentCommand {
    /// Records the payment.
    Pay {
        /// The order paid.
        order: String,
        /// How much, in cents; at least 1.
        amount: u64,
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
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;

    fn handle(&self, command: PaymentCommand) -> Result<Vec<PaymentEvent>, Rejection> {
        match command {
            PaymentCommand::Pay { .. } if self.received => {
                Err(Rejection::validation("the payment is received already"))
            }
            PaymentCommand::Pay { amount: 0, .. } => {
                Err(Rejection::validation("a payment is at least 1"))
            }
            PaymentCommand::Pay { order, amount } => {
                jetsource::schemas::token::validate("order id", &order)
                    .map_err(|e| Rejection::validation(e.to_string()))?;
                Ok(vec![PaymentEvent::PaymentReceived { order, amount }])
            }
        }
    }

    fn apply(&mut self, event: PaymentEvent) {
        match event {
            PaymentEvent::PaymentReceived { .. } => self.received = true,
        }
    }
}
