//! Process managers against a real nats-server and command runtime:
//! scheduled publishing (the reference) publishes each post once at its
//! deadline, never one published first, after a crash of the process too;
//! a trigger reacted to again (its record lost, as after a crash between
//! sending and recording) sends no command twice.

mod common;

use async_nats::jetstream::{self, kv, stream};
use common::*;
use futures::StreamExt;
use jetsource::process::command_id::{command_id, command_id_at, Cause};
use jetsource::process::{
    Command, ProcessConfig, ProcessManager, Reaction, Refusal, Refused, RunningProcessManager,
    Trigger,
};
use jetsource::projector::Envelope;
use jetsource_reference::account::{Account, AccountEvent};
use jetsource_reference::blog::BlogPost;
use jetsource_reference::publishing::ScheduledPublishing;
use std::time::Duration;

/// Long enough that a post's instance is surely recorded before its
/// deadline comes, short enough for a test.
const DELAY: Duration = Duration::from_secs(3);

async fn start<M: ProcessManager>(url: &str, manager: M) -> RunningProcessManager {
    jetsource::process::start(connect(url).await, ProcessConfig::default(), manager)
        .await
        .expect("the process manager starts")
}

fn publishing() -> ScheduledPublishing {
    ScheduledPublishing { delay: DELAY }
}

/// How many of post `id`'s events are of `event_type`, and the
/// `Command-Id` of the last.
async fn events_of_type(runtime: &Jetsource, id: &str, event_type: &str) -> (usize, String) {
    let events = runtime.events_of(id).await;
    let of_type: Vec<_> = events
        .iter()
        .filter(|e| e.event_type() == event_type)
        .collect();
    let id = of_type
        .last()
        .and_then(|e| e.headers.get("Command-Id"))
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    (of_type.len(), id)
}

/// True when instance `key` of manager `name` has an entry.
async fn has_instance(js: &jetstream::Context, name: &str, key: &str) -> bool {
    let bucket = js
        .get_key_value(format!("pm_{name}"))
        .await
        .expect("the bucket");
    matches!(
        bucket.entry(key).await.expect("read"),
        Some(entry) if entry.operation == kv::Operation::Put
    )
}

/// How many messages `stream` holds on the subjects `filter` matches.
async fn count(js: &jetstream::Context, stream: &str, filter: &str) -> u64 {
    let stream: stream::Stream = js.get_stream(stream).await.expect("the stream");
    let mut subjects = stream.info_with_subjects(filter).await.expect("info");
    let mut total = 0;
    while let Some(subject) = subjects.next().await {
        total += subject.expect("a subject's count").1 as u64;
    }
    total
}

const DEADLINES: &str = "pm_publishing_deadlines";

#[tokio::test]
async fn posts_are_published_once_at_their_deadline_and_never_one_published_first() {
    let server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start(&url).await;
    let client = commands(&url).await;
    let js = jetstream::new(connect(&url).await);
    // Two processes running the same manager share its consumers.
    let one = start(&url, publishing()).await;
    let two = start(&url, publishing()).await;

    create(&client, "by-hand").await;
    accepted(
        send_with(
            &client,
            "by-hand",
            "publish",
            "{}".to_string(),
            &with_id("hand"),
        )
        .await,
    );
    let posts: Vec<String> = (0..10).map(|i| format!("post-{i}")).collect();
    for post in &posts {
        create(&client, post).await;
    }

    for post in &posts {
        eventually(format!("{post} is published"), DEADLINE, || async {
            (events_of_type(&runtime, post, "BlogPostPublished").await.0 > 0).then_some(())
        })
        .await;
    }
    for post in posts.iter().map(String::as_str).chain(["by-hand"]) {
        eventually(
            format!("{post}'s instance is removed"),
            DEADLINE,
            || async { (!has_instance(&js, "publishing", post).await).then_some(()) },
        )
        .await;
    }
    for post in &posts {
        let (published, id) = events_of_type(&runtime, post, "BlogPostPublished").await;
        assert_eq!(published, 1, "{post} is published once");
        assert!(id.starts_with("pm-"), "by the process manager: {id}");
    }
    // Its deadline came before the last post's: cancelled, it never fired.
    let (published, id) = events_of_type(&runtime, "by-hand", "BlogPostPublished").await;
    assert_eq!((published, id.as_str()), (1, "hand"));
    assert_eq!(
        count(&js, DEADLINES, "pm.publishing.fired.by-hand.publish").await,
        0,
        "a cancelled deadline never fires"
    );
    assert_eq!(
        count(&js, DEADLINES, "pm.publishing.deadline.>").await,
        0,
        "no deadline is left held"
    );
    one.stop().await;
    two.stop().await;
    runtime.stop().await;
}

#[tokio::test]
async fn a_deadline_already_due_when_set_fires_at_once() {
    let server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start(&url).await;
    let client = commands(&url).await;
    let js = jetstream::new(connect(&url).await);
    // Due as it is set: it fires before the instance recording it is
    // written, which must not make it look cancelled.
    let manager = start(
        &url,
        ScheduledPublishing {
            delay: Duration::ZERO,
        },
    )
    .await;

    let posts: Vec<String> = (0..10).map(|i| format!("post-{i}")).collect();
    for post in &posts {
        create(&client, post).await;
    }
    for post in &posts {
        eventually(
            format!("{post} is published and ends"),
            DEADLINE,
            || async {
                let published = events_of_type(&runtime, post, "BlogPostPublished").await.0 > 0;
                (published && !has_instance(&js, "publishing", post).await).then_some(())
            },
        )
        .await;
        let (published, _) = events_of_type(&runtime, post, "BlogPostPublished").await;
        assert_eq!(published, 1, "{post} is published once");
    }
    manager.stop().await;
    runtime.stop().await;
}

#[tokio::test]
async fn a_deadline_set_before_a_crash_fires_once_after_the_restart() {
    let server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start(&url).await;
    let client = commands(&url).await;
    let js = jetstream::new(connect(&url).await);
    let manager = start(&url, publishing()).await;

    let posts: Vec<String> = (0..20).map(|i| format!("post-{i}")).collect();
    for post in &posts {
        create(&client, post).await;
    }
    for post in &posts {
        eventually(
            format!("{post}'s instance is recorded"),
            DEADLINE,
            || async { has_instance(&js, "publishing", post).await.then_some(()) },
        )
        .await;
    }
    // Down, as after a kill: nothing is finished in hand.
    manager.abort();
    runtime.stop().await;

    // The deadlines come while no process runs.
    eventually("every deadline fires", DEADLINE, || async {
        (count(&js, DEADLINES, "pm.publishing.fired.>").await == posts.len() as u64).then_some(())
    })
    .await;
    for post in &posts {
        assert!(
            has_instance(&js, "publishing", post).await,
            "{post} still waits"
        );
    }

    let runtime = Jetsource::start(&url).await;
    let manager = start(&url, publishing()).await;
    for post in &posts {
        eventually(
            format!("{post} is published and ends"),
            DEADLINE,
            || async { (!has_instance(&js, "publishing", post).await).then_some(()) },
        )
        .await;
        let (published, _) = events_of_type(&runtime, post, "BlogPostPublished").await;
        assert_eq!(published, 1, "{post} is published once");
    }
    manager.stop().await;
    runtime.stop().await;
}

#[tokio::test]
async fn a_deadline_due_while_nats_server_is_down_fires_once_after_its_restart() {
    let mut server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start(&url).await;
    let client = commands(&url).await;
    let js = jetstream::new(connect(&url).await);
    let manager = start(&url, publishing()).await;

    let posts: Vec<String> = (0..10).map(|i| format!("post-{i}")).collect();
    for post in &posts {
        create(&client, post).await;
    }
    for post in &posts {
        eventually(
            format!("{post}'s instance is recorded"),
            DEADLINE,
            || async { has_instance(&js, "publishing", post).await.then_some(()) },
        )
        .await;
    }
    // Killed (SIGKILL, its store kept) and down past every deadline.
    server.kill();
    tokio::time::sleep(DELAY).await;
    server.restart();

    // jetsource and the manager reconnect on their own.
    for post in &posts {
        eventually(format!("{post} is published and ends"), HANG, || async {
            (!has_instance(&js, "publishing", post).await).then_some(())
        })
        .await;
        let (published, _) = events_of_type(&runtime, post, "BlogPostPublished").await;
        assert_eq!(published, 1, "{post} is published once");
    }
    manager.stop().await;
    runtime.stop().await;
}

/// Gives every account opened a welcome bonus: a manager whose command,
/// sent twice under two ids, would show twice (each deposit appends).
struct WelcomeBonus;

impl ProcessManager for WelcomeBonus {
    type Input = Envelope<Account>;
    type State = ();

    fn name(&self) -> &'static str {
        "bonus"
    }

    fn key(&self, input: &Envelope<Account>) -> Option<String> {
        Some(input.meta.aggregate_id.clone())
    }

    fn react(&self, _: Option<()>, trigger: Trigger<Envelope<Account>>) -> Reaction<()> {
        match trigger {
            Trigger::Event(Envelope {
                event: AccountEvent::AccountOpened { .. },
                meta,
            }) => Reaction::end().send(
                Command::to::<Account>(
                    meta.aggregate_id.clone(),
                    "deposit",
                    serde_json::json!({"amount": 10}),
                )
                .correlated(format!("welcome-{}", meta.aggregate_id)),
            ),
            _ => Reaction::end(),
        }
    }
}

#[tokio::test]
async fn a_trigger_reacted_to_again_sends_no_command_twice() {
    let server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start_app(
        &url,
        &jetsource::App::new().aggregate::<Account>(),
        Default::default(),
    )
    .await;
    let client = commands(&url).await;
    let js = jetstream::new(connect(&url).await);
    let manager = start(&url, WelcomeBonus).await;

    let accounts = ["a1", "a2", "a3"];
    for account in accounts {
        accepted(send_account(&client, account, "open", r#"{"owner":"Ada"}"#).await);
    }
    let header = |e: &jetsource::handlers::store::StoredEvent, name: &str| {
        e.headers.get(name).map(|v| v.as_str().to_string())
    };
    let deposits = |account: &'static str| {
        let store = runtime.store.clone();
        async move {
            let events = store.load("account", account, 0).await.expect("load");
            let opened = events
                .iter()
                .find(|e| e.event_type() == "AccountOpened")
                .map(|e| e.seq);
            let lineage: Vec<_> = events
                .iter()
                .filter(|e| e.event_type() == "MoneyDeposited")
                .map(|e| (header(e, "Causation-Id"), header(e, "Correlation-Id")))
                .collect();
            let opened_by = events
                .iter()
                .find(|e| e.event_type() == "AccountOpened")
                .and_then(|e| header(e, "Command-Id"));
            assert!(
                lineage
                    .iter()
                    .all(|l| *l == (opened_by.clone(), Some(format!("welcome-{account}")))),
                "caused by the command that opened it, correlated as the manager says: {lineage:?}"
            );
            let ids: Vec<String> = events
                .iter()
                .filter(|e| e.event_type() == "MoneyDeposited")
                .filter_map(|e| e.headers.get("Command-Id").map(|v| v.as_str().to_string()))
                .collect();
            (opened, ids)
        }
    };
    for account in accounts {
        eventually(format!("{account} gets its bonus"), DEADLINE, || async {
            (!deposits(account).await.1.is_empty()).then_some(())
        })
        .await;
    }
    // Every trigger is delivered again, with nothing recorded of it: what
    // a crash between sending a command and recording it leaves.
    manager.abort();
    let events = js.get_stream("EVT_ACCOUNT").await.expect("the stream");
    events
        .delete_consumer("pm_bonus")
        .await
        .expect("the consumer is reset");
    let manager = start(&url, WelcomeBonus).await;
    let consumer: jetstream::consumer::PullConsumer =
        events.get_consumer("pm_bonus").await.expect("the consumer");
    // Nothing is deleted from an event stream: its last sequence is its
    // count of messages.
    let last = stream_state(&runtime.client, "EVT_ACCOUNT").await.0;
    eventually("every event is reacted to again", DEADLINE, || {
        let mut consumer = consumer.clone();
        async move {
            let info = consumer.info().await.ok()?;
            (info.num_pending == 0
                && info.num_ack_pending == 0
                && info.delivered.stream_sequence >= last)
                .then_some(())
        }
    })
    .await;

    for account in accounts {
        let (opened, ids) = deposits(account).await;
        let cause = Cause::Event {
            stream: "EVT_ACCOUNT",
            seq: opened.expect("opened"),
            part: 0,
        };
        assert_eq!(
            ids,
            [command_id("bonus", account, &cause, 0)],
            "{account} gets one bonus, under the id of its trigger"
        );
    }
    manager.stop().await;
    runtime.stop().await;
}

/// Withdraws more than every account opened holds, and makes up for the
/// refusal with a deposit: a refused command is an input of `react`.
struct Overdraw;

impl ProcessManager for Overdraw {
    type Input = Envelope<Account>;
    type State = ();

    fn name(&self) -> &'static str {
        "overdraw"
    }

    fn key(&self, input: &Envelope<Account>) -> Option<String> {
        Some(input.meta.aggregate_id.clone())
    }

    fn react(&self, _: Option<()>, trigger: Trigger<Envelope<Account>>) -> Reaction<()> {
        match trigger {
            Trigger::Event(Envelope {
                event: AccountEvent::AccountOpened { .. },
                meta,
            }) => Reaction::end().send(Command::to::<Account>(
                meta.aggregate_id,
                "withdraw",
                serde_json::json!({"amount": 1000}),
            )),
            Trigger::Refused(Refused {
                command,
                refusal: Refusal::Validation,
                ..
            }) if command.command == "withdraw" => Reaction::end().send(Command::to::<Account>(
                command.aggregate_id,
                "deposit",
                serde_json::json!({"amount": 1}),
            )),
            _ => Reaction::end(),
        }
    }
}

#[tokio::test]
async fn a_refused_command_is_reacted_to() {
    let server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start_app(
        &url,
        &jetsource::App::new().aggregate::<Account>(),
        Default::default(),
    )
    .await;
    let client = commands(&url).await;
    let manager = start(&url, Overdraw).await;

    accepted(send_account(&client, "a1", "open", r#"{"owner":"Ada"}"#).await);
    let events = eventually("the refusal is made up for", DEADLINE, || async {
        let events = runtime.store.load("account", "a1", 0).await.expect("load");
        events
            .iter()
            .any(|e| e.event_type() == "MoneyDeposited")
            .then_some(events)
    })
    .await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
    assert_eq!(
        types,
        ["AccountOpened", "MoneyDeposited"],
        "nothing withdrawn"
    );
    let cause = Cause::Event {
        stream: "EVT_ACCOUNT",
        seq: events[0].seq,
        part: 0,
    };
    assert_eq!(
        events[1].headers.get("Command-Id").map(|v| v.as_str()),
        Some(command_id_at("overdraw", "a1", &cause, &[0, 0]).as_str()),
        "the deposit is named as the first command of the refusal's reaction"
    );
    manager.stop().await;
    runtime.stop().await;
}

#[tokio::test]
async fn jetsource_run_hosts_a_process_manager_under_the_subject_prefix() {
    let server = NatsServer::new();
    let url = server.client_url();
    let mut config = jetsource::config::Config::default();
    config.nats.subject_prefix = "acme.shop".to_string();
    let namespace = config.namespace().expect("a valid prefix");
    let app = jetsource::App::new()
        .aggregate::<BlogPost>()
        .process_manager(|| ScheduledPublishing {
            delay: Duration::from_secs(1),
        });
    let serving = InProcessRun::spawn(app, config, Some(&url));
    let client = commands(&url).await.with_namespace(namespace);
    let js = jetstream::new(connect(&url).await);
    eventually("jetsource run answers", DEADLINE, || async {
        client
            .send(
                "blogpost",
                "p1",
                "create",
                r#"{"title":"Hello","body":"text"}"#,
                &Default::default(),
            )
            .await
            .ok()
    })
    .await;

    eventually("the post is published", DEADLINE, || async {
        let published = count(
            &js,
            "acme_shop_EVT_BLOGPOST",
            "acme.shop.evt.blogpost.p1.BlogPostPublished",
        )
        .await;
        (published == 1).then_some(())
    })
    .await;
    assert_eq!(
        count(
            &js,
            "ACME_SHOP_pm_publishing_deadlines",
            "acme.shop.pm.publishing.fired.p1.publish"
        )
        .await,
        1,
        "its deadline, under the prefix"
    );
    serving.stop().await.expect("a clean stop");
}
