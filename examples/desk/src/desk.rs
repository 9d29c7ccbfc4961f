//! The `desk` projection: every order with what was paid for it, folded
//! from the order and the payment streams.
//!
//! - `query.desk.get.<order_id>`: the order's [`OrderView`], or `not_found`;
//! - `query.desk.list` with `{"limit": n, "after": "<cursor>"}`: one page
//!   of orders by id, `{"items":[…],"next":…}`;
//! - `query.desk.totals`: the [`Totals`] of all orders.
//!
//! The two streams have no order between them: a payment may be folded
//! before its order was, so an order's view exists from whichever event
//! names it first.

use crate::order::{Order, OrderEvent};
use crate::payment::{Payment, PaymentEvent};
use jetsource::projector::typed::{Id, Paging, Queries, TypedProjector};
use jetsource::projector::{ProjectorError, Query, QueryError};
use jetsource::schemas::page::Page;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;

jetsource::projector::follows! {
    /// What the desk follows: orders and payments.
    pub enum DeskInput {
        Order(Order),
        Payment(Payment),
    }
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Payments name it, but it is not placed (yet).
    #[default]
    Unplaced,
    /// Placed, and owed more than was paid.
    Owing,
    /// Placed and paid in full (or more).
    Paid,
    /// Cancelled.
    Cancelled,
}

/// One order as the desk sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// The order id.
    pub id: String,
    /// Who ordered, once placed.
    pub customer: Option<String>,
    /// What it costs, in cents.
    pub total: u64,
    /// What was paid for it, in cents.
    pub paid: u64,
    /// The payments received for it, by payment id.
    pub payments: Vec<String>,
    /// Where it stands.
    pub standing: Standing,
    #[serde(skip)]
    cancelled: bool,
}

impl OrderView {
    fn settle(&mut self) {
        self.standing = match (&self.customer, self.cancelled) {
            (_, true) => Standing::Cancelled,
            (None, false) => Standing::Unplaced,
            (Some(_), false) if self.paid >= self.total => Standing::Paid,
            (Some(_), false) => Standing::Owing,
        };
    }
}

/// What the desk holds in all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Orders placed (cancelled ones included).
    pub orders: u64,
    /// Their totals, cancelled ones excluded, in cents.
    pub ordered: u64,
    /// Every payment received, in cents.
    pub paid: u64,
    /// Orders still owing.
    pub owing: u64,
}

/// Every order, by id, and the totals.
#[derive(Debug, Clone, Default)]
pub struct Desk {
    orders: BTreeMap<String, OrderView>,
}

impl Desk {
    /// The projection's name.
    pub const NAME: &'static str = "desk";

    /// `get.<order_id>`.
    pub fn get(&self, id: &str) -> Option<&OrderView> {
        self.orders.get(id)
    }

    /// `list`: one page of orders by id; a page's cursor is its last id.
    pub fn list(&self, paging: &Paging) -> Page<&OrderView> {
        let from = paging.after().map_or(Bound::Unbounded, Bound::Excluded);
        let rest = self
            .orders
            .range::<str, _>((from, Bound::Unbounded))
            .map(|(_, order)| order);
        paging.page(rest, |order| order.id.clone())
    }

    /// `totals`.
    pub fn totals(&self) -> Totals {
        let placed = || self.orders.values().filter(|o| o.customer.is_some());
        Totals {
            orders: placed().count() as u64,
            ordered: placed().filter(|o| !o.cancelled).map(|o| o.total).sum(),
            paid: self.orders.values().map(|o| o.paid).sum(),
            owing: placed().filter(|o| o.standing == Standing::Owing).count() as u64,
        }
    }

    fn order(&mut self, id: &str) -> &mut OrderView {
        self.orders
            .entry(id.to_string())
            .or_insert_with(|| OrderView {
                id: id.to_string(),
                ..OrderView::default()
            })
    }
}

impl TypedProjector for Desk {
    type Input = DeskInput;

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn apply(&mut self, input: DeskInput) -> Result<(), ProjectorError> {
        let view = match input {
            DeskInput::Order(envelope) => {
                let view = self.order(&envelope.meta.aggregate_id);
                match envelope.event {
                    OrderEvent::OrderPlaced { customer, total } => {
                        view.customer = Some(customer);
                        view.total = total;
                    }
                    // The desk's standing comes from the payments: a
                    // confirmation says what they say already.
                    OrderEvent::OrderConfirmed {} => {}
                    OrderEvent::OrderCancelled { .. } => view.cancelled = true,
                }
                view
            }
            DeskInput::Payment(envelope) => match envelope.event {
                PaymentEvent::PaymentReceived { order, amount } => {
                    let view = self.order(&order);
                    view.paid = view.paid.saturating_add(amount);
                    view.payments.push(envelope.meta.aggregate_id);
                    view
                }
                // No money came: nothing the desk counts.
                PaymentEvent::PaymentRefused { .. } => return Ok(()),
            },
        };
        view.settle();
        Ok(())
    }

    fn query(&self, query: &Query) -> Result<serde_json::Value, QueryError> {
        Queries::new(query)
            .get("get", |id: Id| self.get(id.as_str()))
            .route("list", |paging: Paging| Ok(self.list(&paging)))
            .route("totals", |(): ()| Ok(self.totals()))
            .answer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsource::projector::testing::ProjectorTest;
    use jetsource::projector::{ProjectorErrorKind, QueryErrorCode};
    use serde_json::json;

    fn placed(total: u64) -> OrderEvent {
        OrderEvent::OrderPlaced {
            customer: "ada".into(),
            total,
        }
    }

    fn paid(order: &str, amount: u64) -> PaymentEvent {
        PaymentEvent::PaymentReceived {
            order: order.into(),
            amount,
        }
    }

    #[test]
    fn orders_and_their_payments_meet_in_one_view() {
        let test = ProjectorTest::new(Desk::default())
            // A payment before its order: the streams have no order between them.
            .given::<Payment>("pay1", paid("o1", 10))
            .given::<Order>("o1", placed(30))
            .given::<Payment>("pay2", paid("o1", 20))
            .given::<Order>("o2", placed(5))
            .given::<Payment>("pay3", PaymentEvent::PaymentRefused { order: "o2".into() })
            .given::<Order>("o3", placed(7))
            .given::<Order>(
                "o3",
                OrderEvent::OrderCancelled {
                    reason: "changed my mind".into(),
                },
            );
        assert_eq!(test.last_seq("order"), 4);
        assert_eq!(test.last_seq("payment"), 3);
        let o1 = test.projector().get("o1").expect("o1");
        assert_eq!((o1.paid, o1.standing), (30, Standing::Paid));
        assert_eq!(o1.payments, ["pay1", "pay2"]);
        test.then_expect_answer(
            "get.o2",
            json!({"id":"o2","customer":"ada","total":5,"paid":0,"payments":[],"standing":"owing"}),
        );
        test.then_expect_answer(
            "totals",
            json!({"orders":3,"ordered":35,"paid":30,"owing":1}),
        );
        test.then_expect_query_error("get.o9", QueryErrorCode::NotFound);
        test.then_expect_query_error("totals.x", QueryErrorCode::BadRequest);
        let page = test
            .query_with("list", json!({"limit": 2}))
            .expect("a page");
        assert_eq!(page["next"], "o2");
    }

    #[test]
    fn an_event_off_its_shape_is_refused_and_the_desk_stays_as_it_was() {
        let mut test = ProjectorTest::new(Desk::default()).given::<Order>("o1", placed(30));
        let refused = test
            .when_stored("payment", "pay1", "PaymentReceived", 1, r#"{"order":"o1"}"#)
            .expect_err("no amount");
        assert_eq!(refused.kind(), ProjectorErrorKind::Invalid);
        assert_eq!(test.projector().get("o1").map(|o| o.paid), Some(0));
    }
}
