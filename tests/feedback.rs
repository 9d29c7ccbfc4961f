//! Feedback beyond the reply, against real nats-servers: rejection notices,
//! the error cache (by id, by aggregate, expiry, memory bound, instances
//! started later), command status (also after a restart), and the notice
//! queue that never holds the command path up.
//!
//! An "instance" here is what `jetsource run` starts: a command runtime and
//! the feedback role, on its own NATS connection.

mod common;

use common::*;
use futures::StreamExt;
use jetsource::client::{CommandClient, SendOptions};
use jetsource::feedback::FeedbackConfig;
use jetsource_handlers::RuntimeConfig;
use jetsource_schemas::feedback::{
    self as contract, FeedbackAnswer, RejectionList, RejectionNotice, COMMAND_INDEX_BUCKET,
};
use jetsource_schemas::{CommandReply, RejectionCode};
use std::collections::BTreeMap;
use std::time::Duration;

/// The runtime and the feedback role with default settings.
async fn start_instance(url: &str) -> Jetsource {
    Jetsource::with_feedback(
        url,
        FeedbackConfig::default(),
        RuntimeConfig::default(),
        true,
    )
    .await
}

fn rejection(answer: &FeedbackAnswer) -> &RejectionNotice {
    match answer {
        FeedbackAnswer::Rejected(n) => n,
        other => panic!("expected rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rejected_request_and_a_rejected_fire_and_forget_command_are_found_by_id() {
    let server = NatsServer::new();
    let instance = start_instance(&server.client_url()).await;
    let client = connect(&server.client_url()).await;
    let commands = CommandClient::new(client.clone());

    let reply = send_with(
        &commands,
        "ghost",
        "create",
        r#"{"title":"  ","body":"x"}"#,
        &with_id("req-1"),
    )
    .await;
    assert_eq!(reply.code(), Some(RejectionCode::Validation));
    commands
        .publish("blogpost", "ghost", "publish", "{}", &with_id("ff-1"))
        .await
        .expect("published");

    let request = known(
        &client,
        &contract::errors_get_subject("req-1").expect("valid subject"),
    )
    .await;
    let notice = rejection(&request);
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
    let fire_and_forget = known(
        &client,
        &contract::errors_get_subject("ff-1").expect("valid subject"),
    )
    .await;
    assert_eq!(rejection(&fire_and_forget).code, RejectionCode::NotFound);
    // Case 2: the fire-and-forget client asks for the status by id.
    let status: FeedbackAnswer = ask(
        &client,
        &contract::status_subject("ff-1").expect("valid subject"),
    )
    .await;
    assert_eq!(status, fire_and_forget);

    let list: RejectionList = ask(
        &client,
        &contract::errors_list_subject("blogpost", "ghost").expect("valid subject"),
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
    let instance = start_instance(&server.client_url()).await;
    let client = connect(&server.client_url()).await;
    for subject in [
        contract::errors_get_subject("never-sent").expect("valid subject"),
        contract::status_subject("never-sent").expect("valid subject"),
    ] {
        let answer: serde_json::Value = ask(&client, &subject).await;
        assert_eq!(
            answer,
            serde_json::json!({"status":"unknown","command_id":"never-sent"})
        );
    }
    let answer: FeedbackAnswer = ask(&client, "errors.get.bad:id").await;
    assert_eq!(answer.status(), "bad_request");
    assert_eq!(answer.command_id(), "", "an invalid id is never echoed");
    let answer: FeedbackAnswer = ask(&client, "errors.list.blogpost.p:1").await;
    assert_eq!(answer.status(), "bad_request");
    assert_eq!(answer.command_id(), "", "an invalid id is never echoed");
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
        Jetsource::with_feedback(&server.client_url(), config, RuntimeConfig::default(), true)
            .await;
    let client = connect(&server.client_url()).await;
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
    rejection(&known(&client, &subject).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let answer: FeedbackAnswer = ask(&client, &subject).await;
    assert_eq!(answer, FeedbackAnswer::unknown("short-lived"));
    instance.feedback().error_cache().run_pending_tasks();
    assert_eq!(instance.feedback().error_cache().entry_count(), 0);
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
        Jetsource::with_feedback(&server.client_url(), config, RuntimeConfig::default(), true)
            .await;
    let client = connect(&server.client_url()).await;
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
    wait_until("every notice", DEADLINE, || {
        instance.feedback().notices_received() >= flood
    })
    .await;
    let cache = instance.feedback().error_cache();
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
    let first = start_instance(&server.client_url()).await;
    let client = connect(&server.client_url()).await;
    let commands = CommandClient::new(client.clone());
    for id in ["early-1", "early-2", "early-3"] {
        let reply = send_with(&commands, "ghost", "publish", "{}", &with_id(id)).await;
        assert_eq!(reply.code(), Some(RejectionCode::NotFound));
        rejection(
            &known(
                &client,
                &contract::errors_get_subject(id).expect("valid subject"),
            )
            .await,
        );
    }

    let second = start_instance(&server.client_url()).await;
    assert!(
        second.feedback().error_cache().get("early-2").is_none(),
        "the second instance did not see the notice itself"
    );
    let answer = second.feedback().errors_get("early-2").await;
    assert_eq!(rejection(&answer).command_id, "early-2");
    assert_eq!(
        rejection(&second.feedback().status("early-3").await).code,
        RejectionCode::NotFound
    );
    let list = second
        .feedback()
        .errors_list("blogpost", "ghost", &Default::default())
        .await
        .expect("a list");
    let ids: Vec<_> = list
        .rejections
        .iter()
        .map(|n| n.command_id.as_str())
        .collect();
    assert_eq!(ids, ["early-3", "early-2", "early-1"]);
    assert_eq!(
        second.feedback().errors_get("never-sent").await,
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
    eventually(format!("{command_id} indexed"), DEADLINE, || {
        let kv = &kv;
        async move { kv.get(command_id).await.expect("kv get").map(|_| ()) }
    })
    .await;
}

#[tokio::test]
async fn ten_thousand_rejected_commands_change_no_stream() {
    let server = NatsServer::new();
    let instance = start_instance(&server.client_url()).await;
    let client = connect(&server.client_url()).await;
    let js = async_nats::jetstream::new(client.clone());
    let commands = CommandClient::new(client);
    let reply = send_with(
        &commands,
        "p1",
        "create",
        r#"{"title":"Hello","body":"x"}"#,
        &with_id("created"),
    )
    .await;
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
                send_to(
                    &commands,
                    aggregate_type,
                    id,
                    command,
                    body,
                    &SendOptions::default(),
                )
                .await
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    assert!(replies.iter().all(|r| !r.is_accepted()));
    // Every notice went out and came back over core NATS meanwhile.
    wait_until("every notice", DEADLINE, || {
        instance.feedback().notices_received() >= total
    })
    .await;
    assert_eq!(instance.feedback().dropped(), 0);
    assert_eq!(streams(&js).await, before);
    instance.stop().await;
}

#[tokio::test]
async fn an_accepted_commands_status_reports_its_sequences_also_after_a_restart() {
    let server = NatsServer::new();
    let instance = start_instance(&server.client_url()).await;
    let client = connect(&server.client_url()).await;
    let js = async_nats::jetstream::new(client.clone());
    let commands = CommandClient::new(client.clone());
    let mut accepted = Vec::new();
    for (id, post) in [("make-1", "p1"), ("make-2", "p2")] {
        // Two events in one atomic append: both must be reported.
        let body = r#"{"title":"Hello","body":"x","publish":true}"#;
        let reply = send_with(&commands, post, "create", body, &with_id(id)).await;
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
            &contract::status_subject(&a.command_id).expect("valid subject"),
        )
        .await;
        assert_eq!(answer, status_of(a));
        wait_indexed(&js, &a.command_id).await;
    }
    instance.stop().await;

    // A new jetsource on the same server: nothing in memory, no peer.
    let restarted = start_instance(&server.client_url()).await;
    for a in &accepted {
        let answer: serde_json::Value = ask(
            &client,
            &contract::status_subject(&a.command_id).expect("valid subject"),
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
    let mut instance = Jetsource::with_feedback(
        &server.client_url(),
        config,
        RuntimeConfig::default(),
        false,
    )
    .await;
    let client = connect(&server.client_url()).await;
    let commands = CommandClient::new(client);
    let rejections = 500u64;
    let creates = 50u64;
    let replies: Vec<(bool, CommandReply)> = futures::stream::iter(0..rejections + creates)
        .map(|i| {
            let commands = commands.clone();
            async move {
                if i < creates {
                    let body = r#"{"title":"Hello","body":"x"}"#;
                    let reply = send_with(
                        &commands,
                        &format!("ok{i}"),
                        "create",
                        body,
                        &SendOptions::default(),
                    )
                    .await;
                    (true, reply)
                } else {
                    let reply =
                        send_with(&commands, "ghost", "publish", "{}", &SendOptions::default())
                            .await;
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
    assert_eq!(instance.feedback().dropped(), rejections - queue as u64);

    // Once publishing starts, the queued notices go out.
    instance
        .feedback_mut()
        .start(&["blogpost"])
        .await
        .expect("feedback starts");
    wait_until("the queued notices", DEADLINE, || {
        instance.feedback().notices_received() >= queue as u64
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
    let instance = Jetsource::with_feedback(
        &server.client_url(),
        FeedbackConfig::default(),
        runtime,
        true,
    )
    .await;
    let client = connect(&server.client_url()).await;
    let commands = CommandClient::new(client.clone()).with_timeout(Duration::from_millis(500));
    let sent = commands
        .send("blogpost", "ghost", "publish", "{}", &with_id("quiet-1"))
        .await;
    assert_eq!(
        sent.expect_err("no reply").kind(),
        jetsource::client::SendErrorKind::NoAnswer
    );
    let answer = known(
        &client,
        &contract::status_subject("quiet-1").expect("valid subject"),
    )
    .await;
    assert_eq!(rejection(&answer).code, RejectionCode::NotFound);
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
        Jetsource::with_feedback(&server.client_url(), config, RuntimeConfig::default(), true)
            .await;
    let client = connect(&server.client_url()).await;
    let mut notices = client
        .subscribe("notice.rejected.>")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let commands = CommandClient::new(client.clone());
    let reply = send_with(&commands, "ghost", "publish", "{}", &with_id("hush-1")).await;
    assert_eq!(reply.code(), Some(RejectionCode::NotFound));
    let accepted = send_with(
        &commands,
        "p1",
        "create",
        r#"{"title":"t","body":"b"}"#,
        &with_id("hush-2"),
    )
    .await;
    assert!(accepted.is_accepted());
    // The feedback service runs: it knows the accepted command.
    let status = known(
        &client,
        &contract::status_subject("hush-2").expect("subject"),
    )
    .await;
    assert!(matches!(status, FeedbackAnswer::Accepted(_)), "{status:?}");
    // The rejection was never published, so no instance holds it.
    let answer: FeedbackAnswer = ask(
        &client,
        &contract::errors_get_subject("hush-1").expect("subject"),
    )
    .await;
    assert!(matches!(answer, FeedbackAnswer::Unknown(_)), "{answer:?}");
    let heard = tokio::time::timeout(Duration::from_millis(300), notices.next()).await;
    assert!(heard.is_err(), "a notice left the process: {heard:?}");
    instance.stop().await;
}

/// Sends `count` two-event creates (`<prefix>-<i>` on post `<prefix>-p<i>`)
/// 64 at a time, then waits until every one is in the index with both its
/// events and the index consumer holds nothing unacknowledged.
async fn every_command_indexed(url: &str, prefix: &str, count: usize) {
    let client = connect(url).await;
    let js = async_nats::jetstream::new(client.clone());
    let commands = CommandClient::new(client);
    let body = r#"{"title":"Hello","body":"x","publish":true}"#;
    let accepted = futures::stream::iter(0..count)
        .map(|i| {
            let commands = commands.clone();
            async move {
                let id = format!("{prefix}-{i}");
                let post = format!("{prefix}-p{i}");
                send_with(&commands, &post, "create", body, &with_id(&id)).await
            }
        })
        .buffer_unordered(64)
        .filter(|reply| std::future::ready(reply.is_accepted()))
        .count()
        .await;
    assert_eq!(accepted, count);
    let kv = js
        .get_key_value(COMMAND_INDEX_BUCKET)
        .await
        .expect("bucket");
    for i in 0..count {
        let id = format!("{prefix}-{i}");
        let entry = eventually(format!("{id} indexed with both events"), DEADLINE, || {
            let (kv, id) = (&kv, &id);
            async move {
                let value = kv.get(id).await.expect("kv get")?;
                let entry: contract::CommandIndexEntry =
                    serde_json::from_slice(&value).expect("an index entry");
                (entry.events.len() == 2).then_some(entry)
            }
        })
        .await;
        assert_eq!(entry.aggregate_id, format!("{prefix}-p{i}"));
        assert!(entry.others.is_empty());
    }
    let stream = js.get_stream("EVT_BLOGPOST").await.expect("stream");
    eventually("nothing unacknowledged", DEADLINE, || {
        let stream = &stream;
        async move {
            let info = stream
                .consumer_info(contract::COMMAND_INDEX_CONSUMER)
                .await
                .expect("consumer info");
            (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn the_index_acknowledges_cumulatively_and_still_follows_a_consumer_with_explicit_acks() {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};

    // A fresh deployment: the index consumer acks cumulatively.
    let server = NatsServer::new();
    let instance = start_instance(&server.client_url()).await;
    every_command_indexed(&server.client_url(), "all", 600).await;
    let js = async_nats::jetstream::new(connect(&server.client_url()).await);
    let stream = js.get_stream("EVT_BLOGPOST").await.expect("stream");
    let info = stream
        .consumer_info(contract::COMMAND_INDEX_CONSUMER)
        .await
        .expect("consumer info");
    assert_eq!(info.config.ack_policy, AckPolicy::All);
    instance.stop().await;

    // A deployment whose index consumer an earlier version created with
    // explicit acks: JetStream cannot change a consumer's ack policy, so
    // each event is acknowledged.
    let server = NatsServer::new();
    let first = start_instance(&server.client_url()).await;
    first.stop().await;
    let js = async_nats::jetstream::new(connect(&server.client_url()).await);
    let stream = js.get_stream("EVT_BLOGPOST").await.expect("stream");
    stream
        .delete_consumer(contract::COMMAND_INDEX_CONSUMER)
        .await
        .expect("deleted");
    stream
        .create_consumer(pull::Config {
            durable_name: Some(contract::COMMAND_INDEX_CONSUMER.into()),
            filter_subject: "evt.blogpost.>".into(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("an explicit-ack consumer");
    let instance = start_instance(&server.client_url()).await;
    every_command_indexed(&server.client_url(), "each", 600).await;
    instance.stop().await;
}
