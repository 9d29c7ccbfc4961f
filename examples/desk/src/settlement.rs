//! The `settlement` process manager: an order waits for its payment, and
//! is confirmed when paid in full, or cancelled when its payment is
//! refused or does not come within [`Settlement::window`] of its placing.
//!
//! Each order is an instance, keyed by the order id: the order's own
//! events name it as their aggregate, a payment's name it in `order`. The
//! two streams have no order between them, so a payment may come before
//! its order: the instance then starts from the payment and waits for the
//! placing, bounded by the same deadline (a payment for an order never
//! placed, or settled already, ends there and sends nothing).
//!
//! Every time comes from an event (its `Event-Time`) or a deadline, never
//! the clock, so a redelivered trigger decides the same.

use crate::order::{Order, OrderEvent};
use crate::payment::{Payment, PaymentEvent};
use jetsource::process::{Command, ProcessManager, Reaction, Trigger};
use jetsource::projector::typed::Meta;
use jetsource::time::format_description::well_known::Rfc3339;
use jetsource::time::{Duration, OffsetDateTime};
use serde::{Deserialize, Serialize};
use serde_json::json;

jetsource::projector::follows! {
    /// What the settlement follows: orders and payments.
    pub enum SettlementInput {
        Order(Order),
        Payment(Payment),
    }
}

/// The deadline by which an order is paid (or a payment's order placed).
pub const PAYMENT_DUE: &str = "payment_due";

/// Why the settlement cancels an order whose payment was refused.
pub const REFUSED: &str = "payment refused";

/// Why it cancels an order not paid in time.
pub const OVERDUE: &str = "payment overdue";

/// Settles orders against their payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// How long after its placing an order may wait for its payment.
    pub window: Duration,
}

impl Default for Settlement {
    /// Fifteen minutes to pay.
    fn default() -> Self {
        Settlement {
            window: Duration::minutes(15),
        }
    }
}

/// One order waiting to be settled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settling {
    /// The order.
    pub order: String,
    /// Its total, once placed.
    pub total: Option<u64>,
    /// What was paid for it so far, in cents.
    pub paid: u64,
    /// A payment for it was refused (before it was placed).
    pub refused: bool,
}

impl Settlement {
    /// The deadline `window` after the event's time. An event time that is
    /// not RFC 3339 (the runtime writes only RFC 3339) sets none: waiting
    /// without a bound beats cancelling at a guessed time.
    fn due(&self, meta: &Meta) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&meta.time, &Rfc3339)
            .ok()
            .map(|at| at + self.window)
    }

    /// Waits on, with the deadline moved to `window` after `meta`'s event.
    fn wait(&self, settling: Settling, meta: &Meta) -> Reaction<Settling> {
        match self.due(meta) {
            Some(at) => Reaction::keep(settling).set_deadline(PAYMENT_DUE, at),
            None => Reaction::keep(settling),
        }
    }

    /// Decides what `settling` comes to now that something about it
    /// changed: confirmed when paid in full, cancelled when refused,
    /// otherwise waiting on; `placed_now` (the instance's first payment, or
    /// its placing) starts the window.
    fn settle(&self, settling: Settling, meta: &Meta, placed_now: bool) -> Reaction<Settling> {
        match settling.total {
            Some(_) if settling.refused => cancel(&settling.order, REFUSED),
            Some(total) if settling.paid >= total => {
                Reaction::end().send(Command::to::<Order>(settling.order, "confirm", json!({})))
            }
            // The window runs from the placing (or from the first payment
            // of an order not placed yet); a later payment does not move it.
            _ if !placed_now => Reaction::keep(settling),
            _ => self.wait(settling, meta),
        }
    }
}

/// Ends the instance and cancels `order` for `reason`.
fn cancel(order: &str, reason: &str) -> Reaction<Settling> {
    Reaction::end().send(Command::to::<Order>(
        order,
        "cancel",
        json!({ "reason": reason }),
    ))
}

impl ProcessManager for Settlement {
    type Input = SettlementInput;
    type State = Settling;

    fn name(&self) -> &'static str {
        "settlement"
    }

    fn key(&self, input: &SettlementInput) -> Option<String> {
        Some(match input {
            SettlementInput::Order(envelope) => envelope.meta.aggregate_id.clone(),
            SettlementInput::Payment(envelope) => match &envelope.event {
                PaymentEvent::PaymentReceived { order, .. }
                | PaymentEvent::PaymentRefused { order } => order.clone(),
            },
        })
    }

    fn react(
        &self,
        state: Option<Settling>,
        trigger: Trigger<SettlementInput>,
    ) -> Reaction<Settling> {
        match trigger {
            Trigger::Event(SettlementInput::Order(envelope)) => match envelope.event {
                OrderEvent::OrderPlaced { total, .. } => {
                    let settling = Settling {
                        order: envelope.meta.aggregate_id.clone(),
                        total: Some(total),
                        ..state.unwrap_or_default()
                    };
                    self.settle(settling, &envelope.meta, true)
                }
                // Settled, by this manager or by hand: nothing to wait for.
                OrderEvent::OrderConfirmed {} | OrderEvent::OrderCancelled { .. } => {
                    Reaction::end()
                }
            },
            Trigger::Event(SettlementInput::Payment(envelope)) => {
                let first = state.is_none();
                let mut settling = state.unwrap_or_default();
                match envelope.event {
                    PaymentEvent::PaymentReceived { order, amount } => {
                        settling.order = order;
                        settling.paid = settling.paid.saturating_add(amount);
                    }
                    PaymentEvent::PaymentRefused { order } => {
                        settling.order = order;
                        settling.refused = true;
                    }
                }
                // A payment starting the instance bounds the wait for the
                // order's placing.
                self.settle(settling, &envelope.meta, first)
            }
            Trigger::Deadline(fired) if fired.name == PAYMENT_DUE => match state {
                Some(Settling {
                    order,
                    total: Some(_),
                    ..
                }) => cancel(&order, OVERDUE),
                // Paid for, never placed: forget it.
                Some(_) | None => Reaction::end(),
            },
            Trigger::Deadline(_) => keep_or_end(state),
            // `confirm` or `cancel` refused: the order was settled by hand
            // meanwhile (its event ends the instance too).
            Trigger::Refused(_) => Reaction::end(),
            // A settlement's state copies no personal data: never named.
            Trigger::Forgotten(_) => keep_or_end(state),
        }
    }
}

/// Goes on waiting, or stays ended.
fn keep_or_end(state: Option<Settling>) -> Reaction<Settling> {
    match state {
        Some(settling) => Reaction::keep(settling),
        None => Reaction::end(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsource::process::testing::ReactionTest;
    use jetsource::process::{Deadline, Fired, Refusal, Refused};
    use jetsource::projector::testing::envelope;

    const PLACED_AT: &str = "2026-01-01T10:00:00Z";
    const DUE: &str = "2026-01-01T10:15:00Z";

    fn at(s: &str) -> OffsetDateTime {
        OffsetDateTime::parse(s, &Rfc3339).expect("a time")
    }

    fn placed(total: u64) -> Trigger<SettlementInput> {
        let event = OrderEvent::OrderPlaced {
            customer: "ada".into(),
            total,
        };
        Trigger::Event(SettlementInput::Order(envelope::<Order>(
            "o1", 1, PLACED_AT, event,
        )))
    }

    fn paid(amount: u64) -> Trigger<SettlementInput> {
        let event = PaymentEvent::PaymentReceived {
            order: "o1".into(),
            amount,
        };
        Trigger::Event(SettlementInput::Payment(envelope::<Payment>(
            "pay1",
            1,
            "2026-01-01T10:05:00Z",
            event,
        )))
    }

    fn refused() -> Trigger<SettlementInput> {
        let event = PaymentEvent::PaymentRefused { order: "o1".into() };
        Trigger::Event(SettlementInput::Payment(envelope::<Payment>(
            "pay1",
            1,
            "2026-01-01T10:05:00Z",
            event,
        )))
    }

    fn due() -> Trigger<SettlementInput> {
        Trigger::Deadline(Fired {
            name: PAYMENT_DUE.into(),
            at: at(DUE),
        })
    }

    fn waiting(total: Option<u64>, paid: u64) -> Settling {
        Settling {
            order: "o1".into(),
            total,
            paid,
            refused: false,
        }
    }

    fn confirm() -> Command {
        Command::to::<Order>("o1", "confirm", json!({}))
    }

    fn cancel_for(reason: &str) -> Command {
        Command::to::<Order>("o1", "cancel", json!({ "reason": reason }))
    }

    #[test]
    fn a_placed_order_waits_for_its_payment_until_the_window_ends() {
        let settlement = Settlement::default();
        let reaction = ReactionTest::new(&settlement).when(placed(30));
        assert_eq!(reaction.state, Some(waiting(Some(30), 0)));
        assert_eq!(
            reaction.set,
            [Deadline {
                name: PAYMENT_DUE.into(),
                at: at(DUE),
            }],
            "fifteen minutes after the placing's event time"
        );
        assert!(reaction.commands.is_empty());
    }

    #[test]
    fn paid_in_full_it_is_confirmed_and_ends() {
        let settlement = Settlement::default();
        let reaction = ReactionTest::new(&settlement)
            .when_all([placed(30), paid(10), paid(20)])
            .expect("a reaction");
        assert_eq!(reaction.state, None);
        assert_eq!(reaction.commands, [confirm()]);
        let part = ReactionTest::given(&settlement, waiting(Some(30), 0)).when(paid(10));
        assert_eq!(part.state, Some(waiting(Some(30), 10)));
        assert!(
            part.commands.is_empty() && part.set.is_empty(),
            "the window stays"
        );
    }

    #[test]
    fn a_refused_payment_cancels_the_order() {
        let settlement = Settlement::default();
        let reaction = ReactionTest::given(&settlement, waiting(Some(30), 0)).when(refused());
        assert_eq!(reaction.state, None);
        assert_eq!(reaction.commands, [cancel_for(REFUSED)]);
        // Refused before the order was placed: cancelled once it is.
        let early = ReactionTest::new(&settlement)
            .when_all([refused(), placed(30)])
            .expect("a reaction");
        assert_eq!(early.commands, [cancel_for(REFUSED)]);
    }

    #[test]
    fn no_payment_in_time_cancels_the_order() {
        let settlement = Settlement::default();
        let reaction = ReactionTest::given(&settlement, waiting(Some(30), 10)).when(due());
        assert_eq!(reaction.state, None);
        assert_eq!(reaction.commands, [cancel_for(OVERDUE)]);
    }

    #[test]
    fn a_payment_before_its_order_waits_for_the_placing() {
        let settlement = Settlement::default();
        let first = ReactionTest::new(&settlement).when(paid(30));
        assert_eq!(first.state, Some(waiting(None, 30)));
        assert_eq!(first.set.len(), 1, "bounded");
        let placed = ReactionTest::given(&settlement, waiting(None, 30)).when(placed(30));
        assert_eq!(placed.commands, [confirm()]);
        let never = ReactionTest::given(&settlement, waiting(None, 30)).when(due());
        assert_eq!(never.state, None);
        assert!(never.commands.is_empty(), "nothing to cancel");
    }

    #[test]
    fn an_order_settled_otherwise_ends_the_wait() {
        let settlement = Settlement::default();
        for event in [
            OrderEvent::OrderConfirmed {},
            OrderEvent::OrderCancelled {
                reason: "by hand".into(),
            },
        ] {
            let trigger = Trigger::Event(SettlementInput::Order(envelope::<Order>(
                "o1", 2, PLACED_AT, event,
            )));
            let reaction = ReactionTest::given(&settlement, waiting(Some(30), 0)).when(trigger);
            assert_eq!(reaction.state, None);
            assert!(reaction.commands.is_empty());
        }
        let refusal = Trigger::Refused(Refused {
            command: cancel_for(OVERDUE),
            refusal: Refusal::Validation,
            reason: "the order is confirmed already".into(),
        });
        let reaction = ReactionTest::given(&settlement, waiting(Some(30), 0)).when(refusal);
        assert_eq!(reaction.state, None);
        assert!(reaction.commands.is_empty());
    }
}
