//! Process managers against a real nats-server and command runtime:
//! scheduled publishing (the reference) publishes each post once at the
//! time scheduled for it, never one unscheduled or published first, a
//! rescheduled one once at its latest time, after a crash of the process
//! or of nats-server too; a trigger reacted to again (its record lost, as
//! after a crash between sending and recording) sends no command twice.

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
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Long enough ahead that a post's instance is surely recorded before its
/// time comes, short enough for a test.
const DELAY: Duration = Duration::from_secs(3);

async fn start<M: ProcessManager>(url: &str, manager: M) -> RunningProcessManager {
    jetsource::process::start(connect(url).await, ProcessConfig::default(), manager)
        .await
        .expect("the process manager starts")
}

/// `delay` from now, RFC 3339.
fn from_now(delay: Duration) -> (OffsetDateTime, String) {
    let at = OffsetDateTime::now_utc() + delay;
    (at, at.format(&Rfc3339).expect("a time"))
}

/// Creates post `id` and schedules its publication `delay` from now;
/// returns the time.
async fn create_scheduled(
    client: &jetsource::client::CommandClient,
    id: &str,
    delay: Duration,
) -> OffsetDateTime {
    create(client, id).await;
    schedule(client, id, delay).await
}

/// Schedules post `id`'s publication `delay` from now; returns the time.
async fn schedule(
    client: &jetsource::client::CommandClient,
    id: &str,
    delay: Duration,
) -> OffsetDateTime {
    let (at, text) = from_now(delay);
    accepted(
        send(
            client,
            id,
            "schedule_publish",
            serde_json::json!({ "at": text }),
        )
        .await,
    );
    at
}

async fn unschedule(client: &jetsource::client::CommandClient, id: &str) {
    accepted(send(client, id, "unschedule_publish", serde_json::json!({})).await);
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

/// When the server stored post `id`'s `BlogPostPublished`.
async fn published_at(js: &jetstream::Context, id: &str) -> OffsetDateTime {
    let stream: stream::Stream = js.get_stream("EVT_BLOGPOST").await.expect("the stream");
    stream
        .direct_get_last_for_subject(format!("evt.blogpost.{id}.BlogPostPublished"))
        .await
        .expect("published")
        .time
}

const DEADLINES: &str = "pm_publishing_deadlines";

/// Waits until the publishing manager has reacted to every deadline that
/// fired.
async fn every_fired_deadline_reacted_to(js: &jetstream::Context) {
    let deadlines = js.get_stream(DEADLINES).await.expect("the deadlines");
    let fired: jetstream::consumer::PullConsumer = deadlines
        .get_consumer("pm_publishing")
        .await
        .expect("the consumer");
    eventually("every fired deadline is reacted to", DEADLINE, || {
        let mut fired = fired.clone();
        async move {
            let info = fired.info().await.ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn posts_are_published_once_at_their_time_and_never_one_unscheduled() {
    let server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start(&url).await;
    let client = commands(&url).await;
    let js = jetstream::new(connect(&url).await);
    // Two processes running the same manager share its consumers.
    let one = start(&url, ScheduledPublishing).await;
    let two = start(&url, ScheduledPublishing).await;

    // Published by hand before its time; withdrawn; moved to a later time.
    create_scheduled(&client, "by-hand", DELAY).await;
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
    create_scheduled(&client, "withdrawn", DELAY).await;
    unschedule(&client, "withdrawn").await;
    create_scheduled(&client, "moved", DELAY).await;
    let moved_to = schedule(&client, "moved", DELAY * 2).await;
    let posts: Vec<String> = (0..10).map(|i| format!("post-{i}")).collect();
    for post in &posts {
        create_scheduled(&client, post, DELAY).await;
    }

    let ended = posts
        .iter()
        .map(String::as_str)
        .chain(["by-hand", "withdrawn", "moved"]);
    for post in ended {
        eventually(
            format!("{post}'s instance is removed"),
            DEADLINE,
            || async { (!has_instance(&js, "publishing", post).await).then_some(()) },
        )
        .await;
    }
    for post in posts.iter().map(String::as_str).chain(["moved"]) {
        let (published, id) = events_of_type(&runtime, post, "BlogPostPublished").await;
        assert_eq!(published, 1, "{post} is published once");
        assert!(id.starts_with("pm-"), "by the process manager: {id}");
    }
    assert!(
        published_at(&js, "moved").await >= moved_to,
        "a moved schedule publishes at its latest time"
    );
    let (published, id) = events_of_type(&runtime, "by-hand", "BlogPostPublished").await;
    assert_eq!(
        (published, id.as_str()),
        (1, "hand"),
        "published by hand only"
    );
    // Their deadlines were cancelled: they never fired.
    for post in ["by-hand", "withdrawn"] {
        assert_eq!(
            count(
                &js,
                DEADLINES,
                &format!("pm.publishing.fired.{post}.publish")
            )
            .await,
            0,
            "{post}'s cancelled deadline never fires"
        );
    }
    assert_eq!(
        events_of_type(&runtime, "withdrawn", "BlogPostPublished")
            .await
            .0,
        0,
        "a withdrawn schedule never publishes"
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
    let posts: Vec<String> = (0..10).map(|i| format!("post-{i}")).collect();
    let mut last = OffsetDateTime::now_utc();
    for post in &posts {
        last = create_scheduled(&client, post, Duration::from_secs(1)).await;
    }
    // The manager starts after every time has passed: each deadline is due
    // as it is set, and fires before the instance recording it is written,
    // which must not make it look cancelled.
    while OffsetDateTime::now_utc() <= last {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let manager = start(&url, ScheduledPublishing).await;
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

/// Posts `0..n`, each created and scheduled `delay` from now, every tenth
/// withdrawn again; returns (scheduled, withdrawn) and the latest time.
async fn schedule_posts(
    client: &jetsource::client::CommandClient,
    n: usize,
    delay: Duration,
) -> (Vec<String>, Vec<String>, OffsetDateTime) {
    let (mut scheduled, mut withdrawn) = (Vec::new(), Vec::new());
    let mut last = OffsetDateTime::now_utc();
    for i in 0..n {
        let post = format!("post-{i}");
        last = create_scheduled(client, &post, delay).await;
        if i % 10 == 9 {
            unschedule(client, &post).await;
            withdrawn.push(post);
        } else {
            scheduled.push(post);
        }
    }
    (scheduled, withdrawn, last)
}

/// Every post of `scheduled` published once and ended, none of
/// `withdrawn` published, no deadline left held.
async fn assert_published_once(
    url: &str,
    js: &jetstream::Context,
    scheduled: &[String],
    withdrawn: &[String],
) {
    let store = event_store(&connect(url).await).await;
    let published = |post: &str| {
        let store = store.clone();
        let post = post.to_string();
        async move {
            let events = store.load("blogpost", &post, 0).await.expect("load");
            events
                .iter()
                .filter(|e| e.event_type() == "BlogPostPublished")
                .count()
        }
    };
    for post in scheduled {
        eventually(format!("{post} is published and ends"), HANG, || async {
            (published(post).await > 0 && !has_instance(js, "publishing", post).await).then_some(())
        })
        .await;
    }
    for post in scheduled {
        assert_eq!(published(post).await, 1, "{post} is published once");
    }
    for post in withdrawn {
        assert_eq!(published(post).await, 0, "{post} was withdrawn");
        assert!(!has_instance(js, "publishing", post).await, "{post} ended");
    }
    assert_eq!(
        count(js, DEADLINES, "pm.publishing.deadline.>").await,
        0,
        "no deadline is left held"
    );
}

/// Waits until `at` has passed.
async fn wait_past(at: OffsetDateTime) {
    while OffsetDateTime::now_utc() <= at + Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn two_jetsource_runs_killed_before_the_time_publish_each_post_once_after_a_restart() {
    let server = NatsServer::new();
    let url = server.client_url();
    let js = jetstream::new(connect(&url).await);
    let (one_dir, two_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    // The shipped binary, every role on: both host the manager.
    let mut one = JetsourceProcess::start(&url, one_dir.path());
    let mut two = JetsourceProcess::start(&url, two_dir.path());
    let client = commands(&url).await;

    let (scheduled, withdrawn, last) = schedule_posts(&client, 200, Duration::from_secs(8)).await;
    for post in &scheduled {
        eventually(
            format!("{post}'s instance is recorded"),
            DEADLINE,
            || async { has_instance(&js, "publishing", post).await.then_some(()) },
        )
        .await;
    }
    // SIGKILL before the time: nothing is finished in hand.
    assert!(
        OffsetDateTime::now_utc() < last - Duration::from_secs(1),
        "the posts were scheduled too slowly for the test to mean anything"
    );
    one.kill();
    two.kill();

    // The deadlines come while no jetsource runs.
    wait_past(last).await;
    let _one = JetsourceProcess::start(&url, one_dir.path());
    let _two = JetsourceProcess::start(&url, two_dir.path());
    assert_published_once(&url, &js, &scheduled, &withdrawn).await;
}

#[tokio::test]
async fn a_deadline_due_while_nats_server_is_down_fires_once_after_its_restart() {
    let mut server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start(&url).await;
    let client = commands(&url).await;
    let js = jetstream::new(connect(&url).await);
    let manager = start(&url, ScheduledPublishing).await;

    let (scheduled, withdrawn, last) = schedule_posts(&client, 200, Duration::from_secs(8)).await;
    for post in &scheduled {
        eventually(
            format!("{post}'s instance is recorded"),
            DEADLINE,
            || async { has_instance(&js, "publishing", post).await.then_some(()) },
        )
        .await;
    }
    // Killed (SIGKILL, its store kept) and down past every time.
    server.kill();
    wait_past(last).await;
    server.restart();

    // jetsource and the manager reconnect on their own.
    assert_published_once(&url, &js, &scheduled, &withdrawn).await;
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
        .process_manager(|| ScheduledPublishing);
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
    let (_, at) = from_now(Duration::from_secs(1));
    accepted(
        client
            .send(
                "blogpost",
                "p1",
                "schedule_publish",
                serde_json::json!({ "at": at }).to_string(),
                &Default::default(),
            )
            .await
            .expect("an answer"),
    );

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

/// `jetsource process <args>` as JSON.
fn process_cli(url: &str, args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("dir");
    let mut all = vec!["process"];
    all.extend_from_slice(args);
    let out = run_jetsource(dir.path(), url, &all);
    assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test]
async fn status_shows_instances_and_deadlines_and_a_poison_event_is_parked_not_dropped() {
    let server = NatsServer::new();
    let url = server.client_url();
    let js = jetstream::new(connect(&url).await);

    // Never run: nothing to show but that.
    let report = process_cli(&url, &["status"]);
    assert_eq!(report["process_managers"][0]["name"], "publishing");
    assert_eq!(report["process_managers"][0]["phase"], "waiting");

    let dir = tempfile::tempdir().expect("dir");
    let _run = JetsourceProcess::start(&url, dir.path());
    let client = commands(&url).await;
    for post in ["p1", "p2", "p3"] {
        create_scheduled(&client, post, Duration::from_secs(3600)).await;
    }
    unschedule(&client, "p3").await;
    // An event no release of the blog post wrote: it cannot be decoded.
    let poison = publish_by_hand(&js, "evt.blogpost.p9.BlogPostPublishScheduled", "not json").await;
    // After it, a trigger as usual: the consumer went on past the poison.
    create_scheduled(&client, "p4", Duration::from_secs(3600)).await;
    eventually("p4's instance is recorded", DEADLINE, || async {
        has_instance(&js, "publishing", "p4").await.then_some(())
    })
    .await;

    let last = stream_state(&connect(&url).await, "EVT_BLOGPOST").await.0;
    let status = eventually("the manager is live", DEADLINE, || async {
        let report = process_cli(&url, &["status"]);
        let status = report["process_managers"][0].clone();
        (status["phase"] == "live").then_some(status)
    })
    .await;
    assert_eq!(status["instances"], 3, "p1, p2, p4: {status}");
    assert_eq!(status["pending_deadlines"], 3, "{status}");
    assert_eq!(status["parked"], 1, "{status}");
    let events = &status["consumers"][0];
    assert_eq!(events["stream"], "EVT_BLOGPOST");
    assert_eq!(events["applied_seq"], last, "{status}");
    assert_eq!(events["stream_last_seq"], last);
    assert_eq!(events["pending"], 0);
    assert_eq!(status["consumers"][1]["stream"], DEADLINES);

    let parked = process_cli(&url, &["parked", "publishing"]);
    let parked = parked["parked"].as_array().expect("a list").clone();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0]["seq"], poison);
    assert_eq!(parked[0]["stream"], "EVT_BLOGPOST");
    assert_eq!(parked[0]["body"], "not json");
    assert!(parked[0]["error"].as_str().is_some_and(|e| !e.is_empty()));

    // A name the application does not host is refused, not answered empty.
    let out = run_jetsource(dir.path(), &url, &["process", "parked", "nosuch"]);
    assert_exit(&out, 2);
}

#[tokio::test]
async fn a_manager_stopped_while_retrying_holds_no_trigger_back_from_the_next_process() {
    let server = NatsServer::new();
    let url = server.client_url();
    let app = jetsource::App::new().aggregate::<Account>();
    let runtime = Jetsource::start_app(&url, &app, Default::default()).await;
    runtime.stop().await;
    // An ack wait longer than the test: a trigger held by a process that
    // stopped would reach the next only after it.
    let config = ProcessConfig {
        ack_wait: Duration::from_secs(600),
        command_timeout: Duration::from_millis(200),
        ..ProcessConfig::default()
    };
    let start = || async {
        jetsource::process::start(connect(&url).await, config.clone(), WelcomeBonus)
            .await
            .expect("the process manager starts")
    };
    let js = jetstream::new(connect(&url).await);
    let first = start().await;
    // With no command runtime up, its deposit is never answered: the
    // manager retries the trigger, holding it.
    publish_by_hand(&js, "evt.account.a1.AccountOpened", r#"{"owner":"Ada"}"#).await;
    let stream = js.get_stream("EVT_ACCOUNT").await.expect("the stream");
    eventually("the trigger is in hand", DEADLINE, || async {
        let info = stream.consumer_info("pm_bonus").await.ok()?;
        (info.num_ack_pending == 1).then_some(())
    })
    .await;
    // Stopped mid-retry, it hands the trigger back (nak): the next process
    // gets it at once, where one held would reach it after the ack wait.
    first.stop().await;

    let runtime = Jetsource::start_app(&url, &app, Default::default()).await;
    let second = start().await;
    eventually(
        "a1 gets its bonus from the next process",
        DEADLINE,
        || async {
            let events = runtime.store.load("account", "a1", 0).await.ok()?;
            events
                .iter()
                .any(|e| e.event_type() == "MoneyDeposited")
                .then_some(())
        },
    )
    .await;
    second.stop().await;
    runtime.stop().await;
}

#[tokio::test]
async fn events_redelivered_after_an_instance_ended_do_not_start_it_again() {
    let server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start(&url).await;
    let client = commands(&url).await;
    let js = jetstream::new(connect(&url).await);
    let manager = start(&url, ScheduledPublishing).await;

    let at = create_scheduled(&client, "withdrawn", Duration::from_secs(1)).await;
    unschedule(&client, "withdrawn").await;
    // Ended: its entry is a purge marker.
    eventually("the instance ends", DEADLINE, || async {
        let bucket = js.get_key_value("pm_publishing").await.ok()?;
        let entry = bucket.entry("withdrawn").await.ok()??;
        (entry.operation != kv::Operation::Put).then_some(())
    })
    .await;
    wait_past(at).await;

    // Every event is delivered again, as from a consumer that went back
    // (a server's crash can lose its latest acks): reacting to the
    // schedule afresh would set a deadline already due, which fires at
    // once, before the withdrawal is reacted to again.
    manager.abort();
    let events = js.get_stream("EVT_BLOGPOST").await.expect("the stream");
    events
        .delete_consumer("pm_publishing")
        .await
        .expect("the consumer is reset");
    let manager = start(&url, ScheduledPublishing).await;
    let last = stream_state(&runtime.client, "EVT_BLOGPOST").await.0;
    let consumer: jetstream::consumer::PullConsumer = events
        .get_consumer("pm_publishing")
        .await
        .expect("the consumer");
    eventually("every event is delivered again", DEADLINE, || {
        let mut consumer = consumer.clone();
        async move {
            let info = consumer.info().await.ok()?;
            (info.num_pending == 0
                && info.num_ack_pending == 0
                && info.ack_floor.stream_sequence >= last)
                .then_some(())
        }
    })
    .await;
    every_fired_deadline_reacted_to(&js).await;
    assert_eq!(
        events_of_type(&runtime, "withdrawn", "BlogPostPublished")
            .await
            .0,
        0,
        "a withdrawn post is never published"
    );
    assert_eq!(
        count(&js, DEADLINES, "pm.publishing.>").await,
        0,
        "no deadline was set again"
    );
    manager.stop().await;
    runtime.stop().await;
}

#[tokio::test]
async fn a_withdrawal_stored_before_the_time_wins_over_a_deadline_that_came_while_down() {
    let server = NatsServer::new();
    let url = server.client_url();
    let runtime = Jetsource::start(&url).await;
    let client = commands(&url).await;
    let js = jetstream::new(connect(&url).await);
    let manager = start(&url, ScheduledPublishing).await;
    let posts: Vec<String> = (0..20).map(|i| format!("post-{i}")).collect();
    let mut last = OffsetDateTime::now_utc();
    for post in &posts {
        last = create_scheduled(&client, post, Duration::from_secs(2)).await;
    }
    for post in &posts {
        eventually(format!("{post} waits"), DEADLINE, || async {
            has_instance(&js, "publishing", post).await.then_some(())
        })
        .await;
    }
    // Down before the withdrawals; their deadlines come while it is down.
    manager.abort();
    for post in &posts {
        unschedule(&client, post).await;
    }
    wait_past(last).await;

    // Back, it finds both the deadlines and the withdrawals stored before
    // them: the withdrawals are reacted to first.
    let manager = start(&url, ScheduledPublishing).await;
    for post in &posts {
        eventually(format!("{post} ends"), DEADLINE, || async {
            (!has_instance(&js, "publishing", post).await).then_some(())
        })
        .await;
    }
    every_fired_deadline_reacted_to(&js).await;
    for post in &posts {
        assert_eq!(
            events_of_type(&runtime, post, "BlogPostPublished").await.0,
            0,
            "{post} was withdrawn before its time"
        );
    }
    manager.stop().await;
    runtime.stop().await;
}
