//! The whole desk against a real nats-server, hosted as `jetsource run`
//! hosts it: both aggregates, the `orders` documents in KV and the
//! `settlement` process manager confirming and cancelling orders by
//! sending commands of its own.

use jetsource::client::{CommandClient, SendOptions};
use jetsource::handlers::runtime::RunningRuntime;
use jetsource::process::{ProcessConfig, RunningProcessManager};
use jetsource::projector::RunningProjectors;
use jetsource::schemas::CommandReply;
use jetsource::time::Duration as Window;
use jetsource_example_desk::app_with;
use jetsource_example_desk::settlement::{Settlement, OVERDUE, REFUSED};
use jetsource_test_server::NatsServer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The runtimes of one desk process.
struct Desk {
    nats: jetsource::async_nats::Client,
    commands: CommandClient,
    runtime: RunningRuntime,
    projectors: RunningProjectors,
    managers: Vec<RunningProcessManager>,
}

impl Desk {
    /// Every role of the desk on the server at `url`, settling within
    /// `window`.
    async fn start(url: &str, window: Window) -> Desk {
        let app = app_with(Settlement { window });
        let nats = jetsource::connect(url).await.expect("connect");
        let runtime = app
            .runtime_builder(nats.clone())
            .build()
            .await
            .expect("the runtime builds")
            .start()
            .await
            .expect("the runtime starts");
        let projectors = app
            .projector_builder(nats.clone())
            .build()
            .await
            .expect("the projectors build")
            .start()
            .await
            .expect("the projectors start");
        let managers = app
            .start_process_managers(&nats, &ProcessConfig::default())
            .await
            .expect("the settlement starts");
        Desk {
            commands: CommandClient::new(nats.clone()),
            nats,
            runtime,
            projectors,
            managers,
        }
    }

    /// Sends a command that must be accepted.
    async fn send(&self, aggregate: &str, id: &str, command: &str, body: Value) {
        let reply = self
            .commands
            .send(
                aggregate,
                id,
                command,
                body.to_string(),
                &SendOptions::default(),
            )
            .await
            .expect("a reply");
        if let CommandReply::Rejected(r) = reply {
            panic!("{command} on {aggregate} {id}: {r:?}");
        }
    }

    /// `query.orders.get.<id>`'s answer.
    async fn record(&self, id: &str) -> Value {
        let reply = self
            .nats
            .request(format!("query.orders.get.{id}"), bytes::Bytes::new())
            .await
            .expect("an answer");
        serde_json::from_slice(&reply.payload).expect("JSON")
    }

    /// The order's record once it is no longer waiting: the settlement
    /// decides asynchronously, after the events it follows. The bound only
    /// keeps a broken settlement from hanging the test.
    async fn settled(&self, id: &str) -> Value {
        let bound = Instant::now() + Duration::from_secs(120);
        loop {
            let answer = self.record(id).await;
            let status = &answer["result"]["status"];
            if status != "placed" && !status.is_null() {
                return answer["result"].clone();
            }
            assert!(Instant::now() < bound, "order {id} never settled: {answer}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        for manager in self.managers {
            manager.stop().await;
        }
        self.projectors.stop().await.expect("the projectors stop");
        self.runtime.shutdown().await.expect("the runtime stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_confirmed_when_paid_and_cancelled_when_refused() {
    let server = NatsServer::new();
    // A window no test run comes near: only payments settle these.
    let desk = Desk::start(&server.client_url(), Window::hours(1)).await;

    desk.send("order", "o1", "place", json!({"customer":"ada","total":30}))
        .await;
    desk.send("payment", "pay1", "pay", json!({"order":"o1","amount":10}))
        .await;
    desk.send("payment", "pay2", "pay", json!({"order":"o1","amount":20}))
        .await;
    desk.send("order", "o2", "place", json!({"customer":"bob","total":20}))
        .await;
    desk.send("payment", "pay3", "refuse", json!({"order":"o2"}))
        .await;
    // Paid before it is placed: confirmed once it is.
    desk.send("payment", "pay4", "pay", json!({"order":"o3","amount":5}))
        .await;
    desk.send("order", "o3", "place", json!({"customer":"cy","total":5}))
        .await;

    let o1 = desk.settled("o1").await;
    assert_eq!(o1["status"], "confirmed", "{o1}");
    let o2 = desk.settled("o2").await;
    assert_eq!(o2["status"], "cancelled", "{o2}");
    assert_eq!(o2["reason"], REFUSED);
    let o3 = desk.settled("o3").await;
    assert_eq!(o3["status"], "confirmed", "{o3}");

    // Settled once: confirming again is refused by the order itself.
    let again = desk
        .commands
        .send("order", "o1", "confirm", "{}", &SendOptions::default())
        .await
        .expect("a reply");
    assert!(matches!(again, CommandReply::Rejected(_)), "{again:?}");
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_not_paid_in_time_is_cancelled() {
    let server = NatsServer::new();
    let desk = Desk::start(&server.client_url(), Window::seconds(1)).await;
    desk.send(
        "order",
        "late",
        "place",
        json!({"customer":"ada","total":30}),
    )
    .await;
    let late = desk.settled("late").await;
    assert_eq!(late["status"], "cancelled", "{late}");
    assert_eq!(late["reason"], OVERDUE);
    desk.stop().await;
}
