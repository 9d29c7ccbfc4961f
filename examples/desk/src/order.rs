//! An order: placed once with a customer and a total, cancelled at most
//! once.

use jetsource::{Aggregate, Rejection};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What an order's commands need to know.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Order {
    placed: bool,
    cancelled: bool,
}

/// `cmd.order.<id>.place` and `cmd.order.<id>.cancel`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OrderCommand {
    /// Places the order.
    Place {
        /// Who ordered.
        customer: String,
        /// What it costs, in cents; at least 1.
        total: u64,
    },
    /// Cancels it.
    Cancel {},
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
    /// The order was cancelled.
    OrderCancelled {},
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
            OrderCommand::Cancel {} if !self.placed => Err(Rejection::not_found("no such order")),
            OrderCommand::Cancel {} if self.cancelled => {
                Err(Rejection::validation("the order is cancelled already"))
            }
            OrderCommand::Cancel {} => Ok(vec![OrderEvent::OrderCancelled {}]),
        }
    }

    fn apply(&mut self, event: OrderEvent) {
        match event {
            OrderEvent::OrderPlaced { .. } => self.placed = true,
            OrderEvent::OrderCancelled {} => self.cancelled = true,
        }
    }
}
