//! The desk against a real nats-server: commands on both aggregates, the
//! typed projection folding both streams, its typed queries over the wire,
//! and an event that does not decode halting it.

use jetsource::client::{CommandClient, SendOptions};
use jetsource::schemas::CommandReply;
use jetsource_example_desk::app;
use jetsource_test_server::NatsServer;
use serde_json::{json, Value};
use std::time::Duration;

/// Sends a command and returns the `seq` of its last event.
async fn send(
    client: &CommandClient,
    aggregate: &str,
    id: &str,
    command: &str,
    body: Value,
) -> u64 {
    match client
        .send(
            aggregate,
            id,
            command,
            body.to_string(),
            &SendOptions::default(),
        )
        .await
        .expect("a reply")
    {
        CommandReply::Accepted(a) => a.events.last().expect("an event").seq,
        CommandReply::Rejected(r) => panic!("{command} on {aggregate} {id}: {r:?}"),
    }
}

/// `query.desk.<path>` with `body`, once both positions are applied.
async fn ask(nats: &async_nats::Client, path: &str, body: Value, after: (u64, u64)) -> Value {
    let mut headers = async_nats::HeaderMap::new();
    let after_seq = format!("EVT_ORDER:{},EVT_PAYMENT:{}", after.0, after.1);
    headers.insert("After-Seq", after_seq.as_str());
    let body = match body {
        Value::Null => bytes::Bytes::new(),
        other => other.to_string().into(),
    };
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(body)
        .timeout(Some(Duration::from_secs(30)));
    let reply = nats
        .send_request(format!("query.desk.{path}"), request)
        .await
        .expect("an answer");
    serde_json::from_slice(&reply.payload).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_folds_orders_and_payments_and_answers_typed_queries() {
    let server = NatsServer::new();
    let url = server.client_url();
    let nats = jetsource::connect(&url).await.expect("connect");
    let app = app();
    let runtime = app
        .runtime_builder(nats.clone())
        .build()
        .await
        .expect("the runtime builds")
        .start()
        .await
        .expect("the runtime starts");
    let commands = CommandClient::new(jetsource::connect(&url).await.expect("connect"));

    // A payment before its order: the streams have no order between them.
    let mut paid = send(
        &commands,
        "payment",
        "pay-0",
        "pay",
        json!({"order":"o2","amount":5}),
    )
    .await;
    let mut placed = 0;
    for (id, total) in [("o1", 30), ("o2", 20), ("o3", 10)] {
        placed = send(
            &commands,
            "order",
            id,
            "place",
            json!({"customer":"ada","total":total}),
        )
        .await;
    }
    // Started after some events: it replays them, then follows the tail.
    let projectors = app
        .projector_builder(nats.clone())
        .build()
        .await
        .expect("the projectors build")
        .start()
        .await
        .expect("the projectors start");
    for (n, (order, amount)) in [("o1", 30), ("o2", 15), ("o4", 1)].into_iter().enumerate() {
        let payment = format!("pay-{}", n + 1);
        paid = send(
            &commands,
            "payment",
            &payment,
            "pay",
            json!({"order":order,"amount":amount}),
        )
        .await;
    }
    placed = placed.max(
        send(
            &commands,
            "order",
            "o3",
            "cancel",
            json!({"reason":"changed my mind"}),
        )
        .await,
    );

    let o2 = ask(&nats, "get.o2", Value::Null, (placed, paid)).await;
    assert_eq!(o2["status"], "ok", "{o2}");
    assert_eq!(
        o2["result"],
        json!({"id":"o2","customer":"ada","total":20,"paid":20,"payments":["pay-0","pay-2"],"standing":"paid"})
    );
    let o4 = ask(&nats, "get.o4", Value::Null, (placed, paid)).await;
    assert_eq!(o4["result"]["standing"], "unplaced", "{o4}");
    let o3 = ask(&nats, "get.o3", Value::Null, (placed, paid)).await;
    assert_eq!(o3["result"]["standing"], "cancelled", "{o3}");
    let totals = ask(&nats, "totals", Value::Null, (placed, paid)).await;
    assert_eq!(
        totals["result"],
        json!({"orders":3,"ordered":50,"paid":51,"owing":0})
    );

    let first = ask(&nats, "list", json!({"limit":3}), (placed, paid)).await;
    let ids = |page: &Value| -> Vec<String> {
        page["result"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|o| o["id"].as_str().expect("an id").to_string())
            .collect()
    };
    assert_eq!(ids(&first), ["o1", "o2", "o3"]);
    assert_eq!(first["result"]["next"], "o3");
    let last = ask(
        &nats,
        "list",
        json!({"limit":3,"after":"o3"}),
        (placed, paid),
    )
    .await;
    assert_eq!(ids(&last), ["o4"]);
    assert_eq!(last["result"]["next"], Value::Null);

    let missing = ask(&nats, "get.o9", Value::Null, (placed, paid)).await;
    assert_eq!(missing["status"], "not_found");
    for (path, body) in [
        ("get.a.b", Value::Null),
        ("list", json!({"limit":0})),
        ("totals.x", Value::Null),
        ("nope", Value::Null),
    ] {
        let answer = ask(&nats, path, body, (placed, paid)).await;
        assert_eq!(answer["status"], "bad_request", "{path}: {answer}");
    }

    // An order event whose body does not decode halts the projection there.
    let js = async_nats::jetstream::new(nats.clone());
    let bad = js
        .publish("evt.order.o5.OrderPlaced", r#"{"customer":7}"#.into())
        .await
        .expect("publish")
        .await
        .expect("stored")
        .sequence;
    let halted = loop {
        let report = projectors.status().await;
        let desk = report
            .projectors
            .iter()
            .find(|p| p.name == "desk")
            .expect("desk");
        if desk.phase == jetsource::projector::Phase::Halted {
            break desk.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let error = halted.error.unwrap_or_default();
    assert!(error.contains(&format!("#{bad}")), "{error}");
    let applied = projectors.applied("desk").expect("desk").borrow().clone();
    assert_eq!(applied.get("EVT_ORDER").copied(), Some(bad - 1));

    projectors.stop().await.expect("stop");
    runtime.shutdown().await.expect("shutdown");
}
