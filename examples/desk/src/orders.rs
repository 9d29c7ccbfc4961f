//! The `orders` projection: one document per order, kept in KV (one entry
//! each, so it grows with the orders, not within one message) and served
//! by the built-in document queries:
//!
//! - `query.orders.get.<order_id>`: the order's [`OrderRecord`], or
//!   `not_found`;
//! - `query.orders.list` with `{"limit": n, "after": "<cursor>"}`: one page
//!   of records by order id, `{"items":[…],"next":…}`.
//!
//! Hosted with `App::documents`; it follows the order stream only.

use crate::order::{Order, OrderEvent};
use jetsource::projector::document::{self, DocumentProjector};
use jetsource::projector::{Envelope, ProjectorError, ProjectorErrorKind};
use jetsource::schemas::error::Error;
use serde::{Deserialize, Serialize};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Placed, waiting for its payment.
    #[default]
    Placed,
    /// Paid and confirmed.
    Confirmed,
    /// Cancelled.
    Cancelled,
}

/// One order's document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The order id (the document's key).
    pub id: String,
    /// Who ordered; empty for an order met first by a later event.
    pub customer: String,
    /// What it costs, in cents.
    pub total: u64,
    /// Where it is.
    pub status: Status,
    /// Why it was cancelled, once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was placed (RFC 3339).
    pub placed_at: String,
    /// The stream sequence of its last event applied.
    pub last_seq: u64,
}

/// The orders, one document each.
#[derive(Debug, Clone, Copy, Default)]
pub struct Orders;

impl Orders {
    /// The projection's name.
    pub const NAME: &'static str = "orders";
}

impl DocumentProjector for Orders {
    type Input = Envelope<Order>;
    type Document = OrderRecord;

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn key(&self, input: &Envelope<Order>) -> Option<String> {
        Some(input.meta.aggregate_id.clone())
    }

    fn apply(
        &self,
        record: Option<OrderRecord>,
        input: Envelope<Order>,
    ) -> Result<Option<OrderRecord>, ProjectorError> {
        let meta = input.meta;
        let mut record = record.unwrap_or_else(|| OrderRecord {
            id: meta.aggregate_id.clone(),
            ..OrderRecord::default()
        });
        match input.event {
            OrderEvent::OrderPlaced { customer, total } => {
                record.customer = customer;
                record.total = total;
                record.placed_at = meta.time;
            }
            OrderEvent::OrderConfirmed {} => record.status = Status::Confirmed,
            OrderEvent::OrderCancelled { reason } => {
                record.status = Status::Cancelled;
                record.reason = Some(reason);
            }
        }
        record.last_seq = meta.seq;
        Ok(Some(record))
    }

    /// An order id is an aggregate id: a query naming anything else is
    /// `bad_request`, not `not_found`.
    fn check_key(&self, key: &str) -> Result<(), ProjectorError> {
        document::check_key(key)?;
        jetsource::schemas::token::validate("order id", key)
            .map_err(|e| Error::new(ProjectorErrorKind::BadKey, e.to_string()))
    }

    /// A record names its order: listed as it is.
    fn list_item(&self, _key: &str, record: serde_json::Value) -> serde_json::Value {
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetsource::projector::testing::ProjectorTest;
    use jetsource::projector::QueryErrorCode;
    use serde_json::json;

    fn placed(total: u64) -> OrderEvent {
        OrderEvent::OrderPlaced {
            customer: "ada".into(),
            total,
        }
    }

    #[test]
    fn each_order_is_one_document_through_its_life() {
        let test = ProjectorTest::documents(Orders)
            .at("2026-01-01T10:00:00Z")
            .given::<Order>("o1", placed(30))
            .given::<Order>("o2", placed(20))
            .given::<Order>("o1", OrderEvent::OrderConfirmed {})
            .given::<Order>(
                "o2",
                OrderEvent::OrderCancelled {
                    reason: "payment refused".into(),
                },
            );
        test.then_expect_document(
            "o1",
            Some(OrderRecord {
                id: "o1".into(),
                customer: "ada".into(),
                total: 30,
                status: Status::Confirmed,
                reason: None,
                placed_at: "2026-01-01T10:00:00Z".into(),
                last_seq: 3,
            }),
        );
        test.then_expect_answer(
            "get.o2",
            json!({"id":"o2","customer":"ada","total":20,"status":"cancelled",
                   "reason":"payment refused","placed_at":"2026-01-01T10:00:00Z","last_seq":4}),
        );
        test.then_expect_document("o3", None);
        test.then_expect_query_error("get.o3", QueryErrorCode::NotFound);
        let page = test
            .query_with("list", json!({"limit": 1}))
            .expect("a page");
        assert_eq!(page["items"][0]["id"], "o1");
        assert_eq!(page["next"], "o1");
    }

    #[test]
    fn a_query_naming_no_order_id_is_a_bad_request() {
        let test = ProjectorTest::documents(Orders).given::<Order>("o1", placed(30));
        let long = "x".repeat(jetsource::schemas::token::MAX_TOKEN_LEN + 1);
        for path in ["get", "get.a.b", "nope", &format!("get.{long}")] {
            test.then_expect_query_error(path, QueryErrorCode::BadRequest);
        }
    }

    #[test]
    fn an_event_that_does_not_read_is_refused_and_changes_nothing() {
        let mut test = ProjectorTest::documents(Orders).given::<Order>("o1", placed(30));
        for (event_type, body) in [("OrderPlaced", r#"{"customer":7}"#), ("OrderShipped", "{}")] {
            let refused = test
                .when_stored("order", "o1", event_type, 1, body)
                .expect_err("refused");
            assert_eq!(refused.kind(), ProjectorErrorKind::Invalid, "{event_type}");
        }
        assert_eq!(test.document("o1").map(|r| r.total), Some(30));
    }
}
