//! The whole desk against a real nats-server, hosted as `jetsource run`
//! hosts it: both aggregates, the `orders` documents in KV and the
//! `settlement` process manager confirming and cancelling orders by
//! sending commands of its own; sent and asked from Rust typed
//! (`send_command`, `QueryClient::ask`).

use jetsource::client::{
    After, CommandClient, QueryClient, QueryErrorKind, SendOptions, TypedReply,
};
use jetsource::handlers::runtime::RunningRuntime;
use jetsource::process::{ProcessConfig, RunningProcessManager};
use jetsource::projector::RunningProjectors;
use jetsource::schemas::{CommandReply, RejectionCode};
use jetsource::time::Duration as Window;
use jetsource::Aggregate;
use jetsource_example_desk::app_with;
use jetsource_example_desk::order::{Order, OrderCommand, OrderEvent};
use jetsource_example_desk::orders::{OrderRecord, Status};
use jetsource_example_desk::payment::{Payment, PaymentCommand};
use jetsource_example_desk::settlement::{Settlement, OVERDUE, REFUSED};
use jetsource_test_server::NatsServer;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The runtimes of one desk process, and its clients.
struct Desk {
    commands: CommandClient,
    queries: QueryClient,
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
            queries: QueryClient::new(nats),
            runtime,
            projectors,
            managers,
        }
    }

    /// Sends a command that must be accepted; returns where its events
    /// are.
    async fn send<A>(&self, id: &str, command: A::Command) -> After
    where
        A: Aggregate,
        A::Command: serde::Serialize + std::fmt::Debug,
        A::Event: std::fmt::Debug,
    {
        let reply = self
            .commands
            .send_command::<A>(id, &command, &SendOptions::default())
            .await
            .expect("a reply");
        match reply {
            TypedReply::Accepted(accepted) => After::reply(&accepted.reply),
            TypedReply::Rejected(r) => panic!("{command:?} on {} {id}: {r:?}", A::TYPE),
        }
    }

    /// The order's record once it is no longer waiting: the settlement
    /// decides asynchronously, after the events it follows. The bound only
    /// keeps a broken settlement from hanging the test.
    async fn settled(&self, id: &str) -> OrderRecord {
        let bound = Instant::now() + Duration::from_secs(120);
        loop {
            let record: Result<OrderRecord, _> = self
                .queries
                .ask("orders", &["get", id], Value::Null, &After::nothing())
                .await;
            match record {
                Ok(record) if record.status != Status::Placed => return record,
                Ok(_) => {}
                Err(e) if e.kind() == QueryErrorKind::NotFound => {}
                Err(e) => panic!("orders get {id}: {e}"),
            }
            assert!(Instant::now() < bound, "order {id} never settled");
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

fn place(customer: &str, total: u64) -> OrderCommand {
    OrderCommand::Place {
        customer: customer.into(),
        total,
    }
}

fn pay(order: &str, amount: u64) -> PaymentCommand {
    PaymentCommand::Pay {
        order: order.into(),
        amount,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_confirmed_when_paid_and_cancelled_when_refused() {
    let server = NatsServer::new();
    // A window no test run comes near: only payments settle these.
    let desk = Desk::start(&server.client_url(), Window::hours(1)).await;

    let placed = desk.send::<Order>("o1", place("ada", 30)).await;
    desk.send::<Payment>("pay1", pay("o1", 10)).await;
    desk.send::<Payment>("pay2", pay("o1", 20)).await;
    desk.send::<Order>("o2", place("bob", 20)).await;
    let refuse = PaymentCommand::Refuse { order: "o2".into() };
    desk.send::<Payment>("pay3", refuse).await;
    // Paid before it is placed: confirmed once it is.
    desk.send::<Payment>("pay4", pay("o3", 5)).await;
    desk.send::<Order>("o3", place("cy", 5)).await;

    // Asked after the placing: answered once the projection applied it.
    let record: OrderRecord = desk
        .queries
        .ask("orders", &["get", "o1"], Value::Null, &placed)
        .await
        .expect("o1's record");
    assert_eq!((record.customer.as_str(), record.total), ("ada", 30));

    let o1 = desk.settled("o1").await;
    assert_eq!(o1.status, Status::Confirmed, "{o1:?}");
    let o2 = desk.settled("o2").await;
    assert_eq!(o2.status, Status::Cancelled, "{o2:?}");
    assert_eq!(o2.reason.as_deref(), Some(REFUSED));
    let o3 = desk.settled("o3").await;
    assert_eq!(o3.status, Status::Confirmed, "{o3:?}");

    // Settled once: confirming again is refused by the order itself.
    let again = desk
        .commands
        .send_command::<Order>("o1", &OrderCommand::Confirm {}, &SendOptions::default())
        .await
        .expect("a reply");
    match again {
        TypedReply::Rejected(r) => assert_eq!(r.code, RejectionCode::Validation, "{r:?}"),
        TypedReply::Accepted(a) => panic!("confirmed twice: {a:?}"),
    }

    // A typed reply's events are the stored ones, read back and decoded.
    let accepted = desk
        .commands
        .send_command::<Order>("o4", &place("dee", 7), &SendOptions::default())
        .await
        .expect("a reply")
        .into_result()
        .expect("accepted");
    let events: Vec<&OrderEvent> = accepted.events.iter().map(|(_, e)| e).collect();
    assert_eq!(
        events,
        [&OrderEvent::OrderPlaced {
            customer: "dee".into(),
            total: 7,
        }]
    );
    assert_eq!(accepted.events[0].0, accepted.reply.events[0]);
    // The untyped send names the same command by its wire name.
    let raw = desk
        .commands
        .send(
            "order",
            "o4",
            "cancel",
            r#"{"reason":"by hand"}"#,
            &SendOptions::default(),
        )
        .await
        .expect("a reply");
    assert!(matches!(raw, CommandReply::Accepted(_)), "{raw:?}");

    let missing = desk
        .queries
        .ask::<OrderRecord>("orders", &["get", "o9"], Value::Null, &After::nothing())
        .await
        .expect_err("no o9");
    assert_eq!(missing.kind(), QueryErrorKind::NotFound);
    let bad = desk
        .queries
        .ask::<OrderRecord>("orders", &["get", "a", "b"], Value::Null, &After::nothing())
        .await
        .expect_err("no such query");
    assert_eq!(bad.kind(), QueryErrorKind::BadRequest);
    let refused = desk
        .commands
        .send_command::<Order>("o.1", &place("ada", 1), &SendOptions::default())
        .await
        .expect_err("not an id");
    assert_eq!(
        refused.kind(),
        jetsource::client::TypedSendErrorKind::InvalidInput
    );
    desk.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_not_paid_in_time_is_cancelled() {
    let server = NatsServer::new();
    let desk = Desk::start(&server.client_url(), Window::seconds(1)).await;
    desk.send::<Order>("late", place("ada", 30)).await;
    let late = desk.settled("late").await;
    assert_eq!(late.status, Status::Cancelled, "{late:?}");
    assert_eq!(late.reason.as_deref(), Some(OVERDUE));
    desk.stop().await;
}
