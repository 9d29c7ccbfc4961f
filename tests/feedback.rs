//! Feedback beyond the reply, against real nats-servers: rejection notices,
//! the error cache (by id, by aggregate, expiry, memory bound, instances
//! started later), command status (also after a restart), and the notice
//! queue that never holds the command path up.
//!
//! An "instance" here is what `jetsource run` starts: a command runtime and
//! the feedback role, on its own NATS connection.

use futures::StreamExt;
use jetsource::client::{CommandClient, SendOptions};
use jetsource::feedback::{Feedback, FeedbackConfig};
use jetsource::App;
use jetsource_handlers::runtime::RunningRuntime;
use jetsource_handlers::RuntimeConfig;
use jetsource_reference::blog::BlogPost;
use jetsource_schemas::feedback::{
    self as contract, FeedbackAnswer, RejectionList, COMMAND_INDEX_BUCKET,
};
use jetsource_schemas::{CommandReply, RejectionCode};
use jetsource_test_server::NatsServer;
use std::collections::BTreeMap;
use std::time::Duration;

/// Long enough for anything this machine does; only reached by a failure.
const DEADLINE: Duration = Duration::from_secs(30);

struct Instance {
    feedback: Feedback,
    running: RunningRuntime,
}

impl Instance {
    /// Runtime and feedback on a new connection; `start_feedback` false
    /// leaves the notice publisher (and the queries) off, so that the queue
    /// fills.
    async fn start(
        url: &str,
        config: FeedbackConfig,
        runtime: RuntimeConfig,
        start_feedback: bool,
    ) -> Instance {
        let client = jetsource::connect(url).await.expect("connect");
        let mut feedback = Feedback::new(client.clone(), config);
        let runtime = App::new()
            .aggregate::<BlogPost>()
            .runtime_builder(client)
            .config(runtime)
            .observe(feedback.observer())
            .build()
            .await
            .expect("runtime");
        if start_feedback {
            feedback
                .start(&runtime.aggregate_types())
                .await
                .expect("feedback starts");
        }
        // Subscribed (and confirmed by the server) when this returns.
        let running = runtime.start().await.expect("runtime starts");
        Instance { feedback, running }
    }

    async fn default(url: &str) -> Instance {
        Self::start(
            url,
            FeedbackConfig::default(),
            RuntimeConfig::default(),
            true,
        )
        .await
    }

    async fn stop(self) {
        self.running
            .shutdown()
            .await
            .expect("runtime stops cleanly");
        self.feedback.shutdown().await;
    }
}

async fn ask<T: serde::de::DeserializeOwned>(client: &async_nats::Client, subject: String) -> T {
    let answer = client
        .request(subject, bytes::Bytes::new())
        .await
        .expect("an answer");
    serde_json::from_slice(&answer.payload).expect("answer parses")
}

/// Asks `subject` until the answer is not `unknown` (a fire-and-forget
/// command is handled, and its notice travels, after the send returns).
async fn eventually(client: &async_nats::Client, subject: String) -> FeedbackAnswer {
    let started = std::time::Instant::now();
    loop {
        let answer: FeedbackAnswer = ask(client, subject.clone()).await;
        if !matches!(answer, FeedbackAnswer::Unknown(_)) || started.elapsed() > DEADLINE {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn with_id(id: &str) -> SendOptions {
    SendOptions {
        command_id: Some(id.into()),
        ..SendOptions::default()
    }
}

fn rejected(answer: &FeedbackAnswer) -> &jetsource_schemas::feedback::RejectionNotice {
    match answer {
        FeedbackAnswer::Rejected(n) => n,
        other => panic!("expected rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rejected_request_and_a_rejected_fire_and_forget_command_are_found_by_id() {
    let server = NatsServer::new();
    let instance = Instance::default(&server.client_url()).await;
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let commands = CommandClient::new(client.clone());

    let reply = commands
        .send(
            "blogpost",
            "ghost",
            "create",
            r#"{"title":"  ","body":"x"}"#,
            &with_id("req-1"),
        )
        .await
        .expect("reply");
    assert_eq!(reply.code(), Some(RejectionCode::Validation));
    commands
        .publish("blogpost", "ghost", "publish", "{}", &with_id("ff-1"))
        .await
        .expect("published");

    let request = eventually(
        &client,
        contract::errors_get_subject("req-1").expect("valid subject"),
    )
    .await;
    let notice = rejected(&request);
    assert_eq!(
        (
            notice.command_id.as_str(),
            notice.aggregate_type.as_str(),
            notice.aggregate_id.as_str(),
            notice.command.as_str(),
            notice.code
        ),
        (
            "req-1",
            "blogpost",
            "ghost",
            "create",
            RejectionCode::Validation
        )
    );
    let fire_and_forget = eventually(
        &client,
        contract::errors_get_subject("ff-1").expect("valid subject"),
    )
    .await;
    assert_eq!(rejected(&fire_and_forget).code, RejectionCode::NotFound);
    // Case 2: the fire-and-forget client asks for the status by id.
    let status: FeedbackAnswer = ask(
        &client,
        contract::status_subject("ff-1").expect("valid subject"),
    )
    .await;
    assert_eq!(status, fire_and_forget);

    let list: RejectionList = ask(
        &client,
        contract::errors_list_subject("blogpost", "ghost").expect("valid subject"),
    )
    .await;
    let ids: Vec<_> = list
        .rejections
        .iter()
        .map(|n| n.command_id.as_str())
        .collect();
    assert_eq!(ids, ["ff-1", "req-1"], "newest first");
    instance.stop().await;
}

#[tokio::test]
async fn unknown_ids_answer_unknown_and_malformed_ids_bad_request() {
    let server = NatsServer::new();
    let instance = Instance::default(&server.client_url()).await;
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    for subject in [
        contract::errors_get_subject("never-sent").expect("valid subject"),
        contract::status_subject("never-sent").expect("valid subject"),
    ] {
        let answer: serde_json::Value = ask(&client, subject).await;
        assert_eq!(
            answer,
            serde_json::json!({"status":"unknown","command_id":"never-sent"})
        );
    }
    let answer: FeedbackAnswer = ask(&client, "errors.get.bad:id".into()).await;
    assert_eq!(answer.status(), "bad_request");
    assert_eq!(answer.command_id(), "", "an invalid id is never echoed");
    let list: RejectionList = ask(&client, "errors.list.blogpost.p:1".into()).await;
    assert!(list.error.is_some() && list.rejections.is_empty());
    instance.stop().await;
}

#[tokio::test]
async fn rejections_expire_after_the_ttl() {
    let server = NatsServer::new();
    let config = FeedbackConfig {
        error_ttl: Duration::from_secs(1),
        ..FeedbackConfig::default()
    };
    let instance =
        Instance::start(&server.client_url(), config, RuntimeConfig::default(), true).await;
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    CommandClient::new(client.clone())
        .publish(
            "blogpost",
            "ghost",
            "publish",
            "{}",
            &with_id("short-lived"),
        )
        .await
        .expect("published");
    let subject = contract::errors_get_subject("short-lived").expect("valid subject");
    rejected(&eventually(&client, subject.clone()).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let answer: FeedbackAnswer = ask(&client, subject).await;
    assert_eq!(answer, FeedbackAnswer::unknown("short-lived"));
    instance.feedback.error_cache().run_pending_tasks();
    assert_eq!(instance.feedback.error_cache().entry_count(), 0);
    instance.stop().await;
}

#[tokio::test]
async fn the_memory_bound_holds_when_far_more_rejections_arrive_than_fit() {
    let server = NatsServer::new();
    let capacity = 64 * 1024;
    let config = FeedbackConfig {
        error_capacity: capacity,
        ..FeedbackConfig::default()
    };
    let instance =
        Instance::start(&server.client_url(), config, RuntimeConfig::default(), true).await;
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let commands = CommandClient::new(client);
    let flood = 3000;
    for i in 0..flood {
        // An unknown aggregate type: rejected before any store access.
        commands
            .publish(
                "nosuch",
                &format!("a{}", i % 7),
                "create",
                "{}",
                &with_id(&format!("f{i}")),
            )
            .await
            .expect("published");
    }
    wait_until("every notice", || {
        instance.feedback.notices_received() >= flood
    })
    .await;
    let cache = instance.feedback.error_cache();
    cache.run_pending_tasks();
    assert!(
        cache.weighted_size() <= capacity,
        "{} bytes held, more than {capacity}",
        cache.weighted_size()
    );
    assert!(cache.entry_count() > 0 && cache.entry_count() < flood);
    instance.stop().await;
}

#[tokio::test]
async fn an_instance_started_after_the_rejections_answers_for_them() {
    let server = NatsServer::new();
    let first = Instance::default(&server.client_url()).await;
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let commands = CommandClient::new(client.clone());
    for id in ["early-1", "early-2", "early-3"] {
        let reply = commands
            .send("blogpost", "ghost", "publish", "{}", &with_id(id))
            .await
            .expect("reply");
        assert_eq!(reply.code(), Some(RejectionCode::NotFound));
        rejected(
            &eventually(
                &client,
                contract::errors_get_subject(id).expect("valid subject"),
            )
            .await,
        );
    }

    let second = Instance::default(&server.client_url()).await;
    assert!(
        second.feedback.error_cache().get("early-2").is_none(),
        "the second instance did not see the notice itself"
    );
    let answer = second.feedback.errors_get("early-2").await;
    assert_eq!(rejected(&answer).command_id, "early-2");
    assert_eq!(
        rejected(&second.feedback.status("early-3").await).code,
        RejectionCode::NotFound
    );
    let list = second.feedback.errors_list("blogpost", "ghost").await;
    let ids: Vec<_> = list
        .rejections
        .iter()
        .map(|n| n.command_id.as_str())
        .collect();
    assert_eq!(ids, ["early-3", "early-2", "early-1"]);
    assert_eq!(
        second.feedback.errors_get("never-sent").await,
        FeedbackAnswer::unknown("never-sent")
    );
    second.stop().await;
    first.stop().await;
}

/// Messages, bytes and last sequence of every stream on the server.
async fn streams(js: &async_nats::jetstream::Context) -> BTreeMap<String, (u64, u64, u64)> {
    let mut list = js.streams();
    let mut all = BTreeMap::new();
    while let Some(info) = list.next().await {
        let info = info.expect("stream info");
        all.insert(
            info.config.name.clone(),
            (
                info.state.messages,
                info.state.bytes,
                info.state.last_sequence,
            ),
        );
    }
    all
}

async fn wait_indexed(js: &async_nats::jetstream::Context, command_id: &str) {
    let kv = js
        .get_key_value(COMMAND_INDEX_BUCKET)
        .await
        .expect("bucket");
    let started = std::time::Instant::now();
    while kv.get(command_id).await.expect("kv get").is_none() {
        assert!(started.elapsed() < DEADLINE, "{command_id} never indexed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn ten_thousand_rejected_commands_change_no_stream() {
    let server = NatsServer::new();
    let instance = Instance::default(&server.client_url()).await;
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let commands = CommandClient::new(client);
    let reply = commands
        .send(
            "blogpost",
            "p1",
            "create",
            r#"{"title":"Hello","body":"x"}"#,
            &with_id("created"),
        )
        .await
        .expect("reply");
    assert!(reply.is_accepted());
    wait_indexed(&js, "created").await;
    let before = streams(&js).await;
    assert!(before.contains_key("EVT_BLOGPOST"));

    let total = 10_000u64;
    let replies: Vec<CommandReply> = futures::stream::iter(0..total)
        .map(|i| {
            let commands = commands.clone();
            async move {
                let (aggregate_type, id, command, body) = match i % 3 {
                    0 => ("blogpost", "p1", "change_title", r#"{"title":" "}"#),
                    1 => ("blogpost", "ghost", "publish", "{}"),
                    _ => ("nosuch", "p1", "create", "{}"),
                };
                commands
                    .send(aggregate_type, id, command, body, &SendOptions::default())
                    .await
                    .expect("reply")
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    assert!(replies.iter().all(|r| !r.is_accepted()));
    // Every notice went out and came back over core NATS meanwhile.
    wait_until("every notice", || {
        instance.feedback.notices_received() >= total
    })
    .await;
    assert_eq!(instance.feedback.dropped(), 0);
    assert_eq!(streams(&js).await, before);
    instance.stop().await;
}

#[tokio::test]
async fn an_accepted_commands_status_reports_its_sequences_also_after_a_restart() {
    let server = NatsServer::new();
    let instance = Instance::default(&server.client_url()).await;
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client.clone());
    let commands = CommandClient::new(client.clone());
    let mut accepted = Vec::new();
    for (id, post) in [("make-1", "p1"), ("make-2", "p2")] {
        let reply = commands
            .send(
                "blogpost",
                post,
                "create",
                // Two events in one atomic append: both must be reported.
                r#"{"title":"Hello","body":"x","publish":true}"#,
                &with_id(id),
            )
            .await
            .expect("reply");
        let CommandReply::Accepted(a) = reply else {
            panic!("not accepted: {reply:?}")
        };
        assert_eq!(a.events.len(), 2);
        accepted.push(a);
    }
    let status_of = |a: &jetsource_schemas::Accepted| {
        serde_json::json!({"status":"accepted","command_id":a.command_id,
            "aggregate_type":"blogpost","aggregate_id":a.aggregate_id,"events":a.events})
    };
    for a in &accepted {
        let answer: serde_json::Value = ask(
            &client,
            contract::status_subject(&a.command_id).expect("valid subject"),
        )
        .await;
        assert_eq!(answer, status_of(a));
        wait_indexed(&js, &a.command_id).await;
    }
    instance.stop().await;

    // A new jetsource on the same server: nothing in memory, no peer.
    let restarted = Instance::default(&server.client_url()).await;
    for a in &accepted {
        let answer: serde_json::Value = ask(
            &client,
            contract::status_subject(&a.command_id).expect("valid subject"),
        )
        .await;
        assert_eq!(answer, status_of(a), "after the restart");
    }
    restarted.stop().await;
}

#[tokio::test]
async fn a_notice_flood_that_overflows_the_queue_is_counted_and_never_blocks_accepted_commands() {
    let server = NatsServer::new();
    let queue = 4;
    let config = FeedbackConfig {
        notices_queue: queue,
        ..FeedbackConfig::default()
    };
    // The publisher is not started yet, so the queue stays full.
    let mut instance = Instance::start(
        &server.client_url(),
        config,
        RuntimeConfig::default(),
        false,
    )
    .await;
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let commands = CommandClient::new(client);
    let rejections = 500u64;
    let creates = 50u64;
    let replies: Vec<(bool, CommandReply)> = futures::stream::iter(0..rejections + creates)
        .map(|i| {
            let commands = commands.clone();
            async move {
                if i < creates {
                    let body = r#"{"title":"Hello","body":"x"}"#;
                    let reply = commands
                        .send(
                            "blogpost",
                            &format!("ok{i}"),
                            "create",
                            body,
                            &SendOptions::default(),
                        )
                        .await
                        .expect("reply");
                    (true, reply)
                } else {
                    let reply = commands
                        .send(
                            "blogpost",
                            "ghost",
                            "publish",
                            "{}",
                            &SendOptions::default(),
                        )
                        .await
                        .expect("reply");
                    (false, reply)
                }
            }
        })
        .buffer_unordered(128)
        .collect()
        .await;
    for (should_accept, reply) in &replies {
        assert_eq!(reply.is_accepted(), *should_accept, "{reply:?}");
    }
    assert_eq!(instance.feedback.dropped(), rejections - queue as u64);

    // Once publishing starts, the queued notices go out.
    instance
        .feedback
        .start(&["blogpost"])
        .await
        .expect("feedback starts");
    wait_until("the queued notices", || {
        instance.feedback.notices_received() >= queue as u64
    })
    .await;
    instance.stop().await;
}

#[tokio::test]
async fn with_replies_off_a_request_gets_no_reply_and_the_status_answers() {
    let server = NatsServer::new();
    let runtime = RuntimeConfig {
        reply: false,
        ..RuntimeConfig::default()
    };
    let instance = Instance::start(
        &server.client_url(),
        FeedbackConfig::default(),
        runtime,
        true,
    )
    .await;
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let commands = CommandClient::new(client.clone()).with_timeout(Duration::from_millis(500));
    let sent = commands
        .send("blogpost", "ghost", "publish", "{}", &with_id("quiet-1"))
        .await;
    assert_eq!(
        sent.expect_err("no reply").kind(),
        jetsource::client::SendErrorKind::NoAnswer
    );
    let answer = eventually(
        &client,
        contract::status_subject("quiet-1").expect("valid subject"),
    )
    .await;
    assert_eq!(rejected(&answer).code, RejectionCode::NotFound);
    instance.stop().await;
}

#[tokio::test]
async fn in_silence_no_notice_leaves_and_the_cache_stays_empty() {
    let server = NatsServer::new();
    let config = FeedbackConfig {
        silence: true,
        ..FeedbackConfig::default()
    };
    let instance =
        Instance::start(&server.client_url(), config, RuntimeConfig::default(), true).await;
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let mut notices = client
        .subscribe("notice.rejected.>")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let commands = CommandClient::new(client.clone());
    let reply = commands
        .send("blogpost", "ghost", "publish", "{}", &with_id("hush-1"))
        .await
        .expect("the reply still comes (case 1)");
    assert_eq!(reply.code(), Some(RejectionCode::NotFound));
    let accepted = commands
        .send(
            "blogpost",
            "p1",
            "create",
            r#"{"title":"t","body":"b"}"#,
            &with_id("hush-2"),
        )
        .await
        .expect("reply");
    assert!(accepted.is_accepted());
    // The feedback service runs: it knows the accepted command.
    let status = eventually(
        &client,
        contract::status_subject("hush-2").expect("subject"),
    )
    .await;
    assert!(matches!(status, FeedbackAnswer::Accepted(_)), "{status:?}");
    // The rejection was never published, so no instance holds it.
    let answer: FeedbackAnswer = ask(
        &client,
        contract::errors_get_subject("hush-1").expect("subject"),
    )
    .await;
    assert!(matches!(answer, FeedbackAnswer::Unknown(_)), "{answer:?}");
    let heard = tokio::time::timeout(Duration::from_millis(300), notices.next()).await;
    assert!(heard.is_err(), "a notice left the process: {heard:?}");
    instance.stop().await;
}
