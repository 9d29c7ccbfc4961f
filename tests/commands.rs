//! The command path end to end against real nats-servers: accepted and
//! rejected replies, concurrency, idempotency, atomicity, bad input.

mod common;

use common::*;
use jetsource::client::SendOptions;
use jetsource::handlers::store::{AppendErrorKind, AppendMeta, StreamSettings};
use jetsource::schemas::{CommandReply, RejectionCode};
use jetsource::RuntimeConfig;
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test]
async fn accepted_command_is_stored_with_its_metadata() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    let options = SendOptions {
        command_id: Some("cmd-1".into()),
        correlation_id: Some("flow-7".into()),
        causation_id: Some("click-3".into()),
        expected_seq: None,
        traceparent: None,
    };
    let reply = send_with(
        &client,
        "p1",
        "create",
        r#"{"title":" Hello ","body":"text"}"#,
        &options,
    )
    .await;
    let accepted = accepted(reply);
    assert_eq!(accepted.command_id, "cmd-1");
    assert_eq!(
        (
            accepted.aggregate_type.as_str(),
            accepted.aggregate_id.as_str()
        ),
        ("blogpost", "p1")
    );
    assert!(!accepted.duplicate);
    assert_eq!(accepted.events.len(), 1);
    assert_eq!(accepted.events[0].event_type, "BlogPostCreated");
    assert_eq!(accepted.events[0].stream, "EVT_BLOGPOST");

    let stored = js.events_of("p1").await;
    assert_eq!(stored.len(), 1);
    let event = &stored[0];
    assert_eq!(event.seq, accepted.events[0].seq);
    assert_eq!(event.subject, "evt.blogpost.p1.BlogPostCreated");
    let body: serde_json::Value = serde_json::from_slice(&event.payload).expect("json body");
    assert_eq!(
        body,
        serde_json::json!({"title": "Hello", "body": "text", "author": "unknown"})
    );
    let header = |name: &str| event.headers.get(name).map(|v| v.as_str().to_string());
    assert_eq!(header("Command-Id").as_deref(), Some("cmd-1"));
    assert_eq!(header("Correlation-Id").as_deref(), Some("flow-7"));
    assert_eq!(header("Causation-Id").as_deref(), Some("click-3"));
    // The blog post's events are at version 2 (version 1, the default a
    // missing Event-Version means, is not written).
    assert_eq!(header("Event-Version").as_deref(), Some("2"));
    // Contract 2: no dedupe id (the expected-sequence check and the
    // Command-Id already make a resend harmless) and no Event-Time (the
    // time JetStream stored the event is its time).
    assert_eq!(header("Nats-Msg-Id"), None);
    assert_eq!(header("Event-Time"), None);
    js.stop().await;
}

#[tokio::test]
async fn every_rejection_code_and_nothing_written() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    let created = create(&client, "p1").await;
    let before = stream_state(&js.client, "EVT_BLOGPOST").await;

    let validation = send(
        &client,
        "p1",
        "create",
        serde_json::json!({"title": "x", "body": ""}),
    )
    .await;
    assert_eq!(rejected(&validation), RejectionCode::Validation);
    let empty_title = send(
        &client,
        "p1",
        "change_title",
        serde_json::json!({"title": "  "}),
    )
    .await;
    assert_eq!(rejected(&empty_title), RejectionCode::Validation);
    let long_title = send(
        &client,
        "p1",
        "change_title",
        serde_json::json!({"title": "x".repeat(201)}),
    )
    .await;
    assert_eq!(rejected(&long_title), RejectionCode::Validation);
    let not_found = send(&client, "nobody", "publish", serde_json::json!({})).await;
    assert_eq!(rejected(&not_found), RejectionCode::NotFound);
    let unknown_command = send(&client, "p1", "delete", serde_json::json!({})).await;
    assert_eq!(rejected(&unknown_command), RejectionCode::BadRequest);
    let unknown_field = send(
        &client,
        "p1",
        "change_title",
        serde_json::json!({"title": "a", "x": 1}),
    )
    .await;
    assert_eq!(rejected(&unknown_field), RejectionCode::BadRequest);
    let malformed = send_with(
        &client,
        "p1",
        "change_title",
        "{not json",
        &SendOptions::default(),
    )
    .await;
    assert_eq!(rejected(&malformed), RejectionCode::BadRequest);
    let unknown_type = send_to(
        &client,
        "invoice",
        "i1",
        "create",
        "{}",
        &SendOptions::default(),
    )
    .await;
    assert_eq!(rejected(&unknown_type), RejectionCode::BadRequest);
    let stale = send_with(
        &client,
        "p1",
        "publish",
        "{}",
        &SendOptions {
            expected_seq: Some(created.events[0].seq + 10),
            ..SendOptions::default()
        },
    )
    .await;
    assert_eq!(rejected(&stale), RejectionCode::Conflict);

    assert_eq!(
        stream_state(&js.client, "EVT_BLOGPOST").await,
        before,
        "rejections wrote nothing"
    );
    js.stop().await;
}

#[tokio::test]
async fn a_full_stream_answers_unavailable_and_state_does_not_advance() {
    let server = NatsServer::new();
    let mut config = RuntimeConfig {
        streams: StreamSettings {
            max_bytes: Some(600),
            ..StreamSettings::default()
        },
        ..RuntimeConfig::default()
    };
    config.handler.retry_backoff = Duration::from_millis(5);
    let js = Jetsource::start_with(&server.client_url(), config).await;
    let client = commands(&server.client_url()).await;
    create(&client, "p1").await;
    let big = "x".repeat(190);
    let mut last = None;
    for _ in 0..10 {
        let reply = send(
            &client,
            "p1",
            "change_title",
            serde_json::json!({"title": big.clone()}),
        )
        .await;
        if !reply.is_accepted() {
            last = Some(reply);
            break;
        }
        // Alternate titles so every command decides an event.
        let reply = send(
            &client,
            "p1",
            "change_title",
            serde_json::json!({"title": "short"}),
        )
        .await;
        if !reply.is_accepted() {
            last = Some(reply);
            break;
        }
    }
    let reply = last.expect("the stream filled up");
    assert_eq!(rejected(&reply), RejectionCode::Unavailable);
    let before = stream_state(&js.client, "EVT_BLOGPOST").await;
    // The handler's state did not advance: the aggregate's stored last
    // sequence still matches what an Expected-Seq check sees.
    let stored = js.events_of("p1").await;
    let last_seq = stored.last().expect("events").seq;
    // A title no earlier command set, so the command decides an event as
    // large as the one the full stream refused.
    let other_big = serde_json::json!({"title": "y".repeat(190)}).to_string();
    let next = send_with(
        &client,
        "p1",
        "change_title",
        other_big,
        &SendOptions {
            expected_seq: Some(last_seq),
            ..SendOptions::default()
        },
    )
    .await;
    assert_eq!(
        rejected(&next),
        RejectionCode::Unavailable,
        "checked against the real last sequence, then refused by the full stream"
    );
    assert_eq!(stream_state(&js.client, "EVT_BLOGPOST").await, before);
    js.stop().await;
}

#[tokio::test]
async fn an_event_that_no_longer_decodes_is_internal() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    // Someone bypassed jetsource and stored garbage on an aggregate's subject.
    let jetstream = async_nats::jetstream::new(js.client.clone());
    publish_by_hand(
        &jetstream,
        "evt.blogpost.broken.BlogPostCreated",
        "not json",
    )
    .await;
    let reply = send(&client, "broken", "publish", serde_json::json!({})).await;
    assert_eq!(rejected(&reply), RejectionCode::Internal);
    // Other aggregates are unaffected.
    create(&client, "fine").await;
    js.stop().await;
}

#[tokio::test]
async fn an_undecodable_event_deep_in_a_long_history_is_internal_every_time() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    create(&client, "deep").await;
    let title = serde_json::json!({"title": "Again"});
    accepted(send(&client, "deep", "change_title", title.clone()).await);
    let stored = js.events_of("deep").await;
    let changed = stored[1].payload.clone();
    // Far past the first direct-get batch, so a cold load reads through a
    // consumer and meets the broken event in the middle of its deliveries,
    // folding each event as it comes.
    let jetstream = async_nats::jetstream::new(js.client.clone());
    let subject = "evt.blogpost.deep.BlogPostTitleChanged";
    for i in 0..1_200 {
        let body = if i == 700 {
            "not json".into()
        } else {
            changed.clone()
        };
        publish_by_hand(&jetstream, subject, body).await;
    }
    js.stop().await;
    let js = Jetsource::start(&server.client_url()).await;
    // Refused each time: a load that stopped at the broken event leaves no
    // half-built state for the next command to decide on.
    for _ in 0..2 {
        let reply = send(&client, "deep", "change_title", title.clone()).await;
        assert_eq!(rejected(&reply), RejectionCode::Internal, "{reply:?}");
    }
    create(&client, "fine").await;
    js.stop().await;
}

#[tokio::test]
async fn commands_that_decide_nothing_are_accepted_with_no_events() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    create(&client, "p1").await;
    let same = accepted(
        send(
            &client,
            "p1",
            "change_title",
            serde_json::json!({"title": "Hello"}),
        )
        .await,
    );
    assert!(same.events.is_empty());
    js.stop().await;
}

#[tokio::test]
async fn create_with_publish_is_one_atomic_append() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    let reply = accepted(
        send(
            &client,
            "p1",
            "create",
            serde_json::json!({"title": "T", "body": "B", "publish": true}),
        )
        .await,
    );
    let types: Vec<_> = reply.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["BlogPostCreated", "BlogPostPublished"]);
    assert_eq!(reply.events[1].seq, reply.events[0].seq + 1);
    let stored = js.events_of("p1").await;
    assert_eq!(
        stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [reply.events[0].seq, reply.events[1].seq]
    );
    js.stop().await;
}

#[tokio::test]
async fn event_version_is_written_only_when_not_1() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let event =
        |title: &str| new_event("BlogPostTitleChanged", format!(r#"{{"title":"{title}"}}"#));
    let first = js
        .store
        .append("blogpost", "v", 0, &[event("a")], &meta("v-1"))
        .await
        .expect("append at version 1");
    let version_2 = AppendMeta {
        event_version: 2,
        traceparent: None,
        ..meta("v-2")
    };
    js.store
        .append("blogpost", "v", first[0], &[event("b")], &version_2)
        .await
        .expect("append at version 2");
    let stored = js.events_of("v").await;
    let versions: Vec<_> = stored
        .iter()
        .map(|e| {
            e.headers
                .get("Event-Version")
                .map(|v| v.as_str().to_string())
        })
        .collect();
    assert_eq!(versions, [None, Some("2".to_string())]);
    js.stop().await;
}

#[tokio::test]
async fn a_load_larger_than_one_batch_reads_every_event_in_order() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    // 96 events of 100 KB alternate between two types: 4.8 MB of each,
    // more than one direct-get batch may bring, so every load here takes
    // several requests.
    let filler = "x".repeat(100 * 1024);
    let types = ["BlogPostTitleChanged", "BlogPostPublished"];
    let mut last = 0;
    let mut seqs = Vec::new();
    for i in 0..96 {
        let event = new_event(
            types[i % 2],
            format!(r#"{{"title":"{i}","filler":"{filler}"}}"#),
        );
        last = js
            .store
            .append(
                "blogpost",
                "big",
                last,
                &[event],
                &meta(&format!("big-{i}")),
            )
            .await
            .expect("append")[0];
        seqs.push(last);
    }
    assert!(48 * filler.len() > jetsource::handlers::store::LOAD_BATCH_BYTES);
    let read = |events: &[jetsource::handlers::store::StoredEvent]| {
        events.iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    let all = js.events_of("big").await;
    assert_eq!(read(&all), seqs);
    let by_type = js
        .store
        .load_types("blogpost", "big", 0, &types)
        .await
        .expect("load by type");
    assert_eq!(read(&by_type), seqs);
    let tail = js
        .store
        .load("blogpost", "big", seqs[29])
        .await
        .expect("tail");
    assert_eq!(read(&tail), seqs[30..]);
    js.stop().await;
}

#[tokio::test]
async fn a_multi_event_append_whose_check_fails_stores_nothing() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    create(&client, "p1").await;
    let before = stream_state(&js.client, "EVT_BLOGPOST").await;
    let events = vec![
        new_event("BlogPostTitleChanged", r#"{"title":"a"}"#),
        new_event("BlogPostPublished", "{}"),
    ];
    // Expected 0, but the post already has an event.
    let err = js
        .store
        .append("blogpost", "p1", 0, &events, &meta("stale-writer"))
        .await
        .expect_err("conflict");
    assert_eq!(err.kind(), AppendErrorKind::Conflict);
    assert_eq!(
        stream_state(&js.client, "EVT_BLOGPOST").await,
        before,
        "no partial write"
    );
    assert_eq!(js.events_of("p1").await.len(), 1);
    js.stop().await;
}

#[tokio::test]
async fn expected_seq_is_honoured() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    let seq = create(&client, "p1").await.events[0].seq;
    let at = |seq| SendOptions {
        expected_seq: Some(seq),
        ..SendOptions::default()
    };
    let first = send_with(
        &client,
        "p1",
        "change_title",
        r#"{"title":"Second"}"#,
        &at(seq),
    )
    .await;
    assert!(first.is_accepted());
    let second = send_with(
        &client,
        "p1",
        "change_title",
        r#"{"title":"Third"}"#,
        &at(seq),
    )
    .await;
    assert_eq!(rejected(&second), RejectionCode::Conflict);
    let new = send_with(
        &client,
        "new-post",
        "create",
        r#"{"title":"t","body":""}"#,
        &at(0),
    )
    .await;
    assert!(
        new.is_accepted(),
        "Expected-Seq 0 means the aggregate is new"
    );
    js.stop().await;
}

#[tokio::test]
async fn thirty_two_concurrent_commands_on_one_aggregate_are_all_stored_in_reply_order() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    create(&client, "p1").await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let title = format!("title {i}");
            let reply = send(
                &client,
                "p1",
                "change_title",
                serde_json::json!({"title": title}),
            )
            .await;
            (title, accepted(reply))
        }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("task"));
    }
    replies.sort_by_key(|(_, a)| a.events[0].seq);
    let stored = js.events_of("p1").await;
    assert_eq!(stored.len(), 33);
    for ((title, reply), event) in replies.iter().zip(&stored[1..]) {
        assert_eq!(reply.events[0].seq, event.seq, "contiguous, in reply order");
        let body: serde_json::Value = serde_json::from_slice(&event.payload).expect("json");
        assert_eq!(body["new_title"], title.as_str());
    }
    js.stop().await;
}

#[tokio::test]
async fn sixteen_concurrent_publishes_exactly_one_wins() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    create(&client, "p1").await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            send(&client, "p1", "publish", serde_json::json!({})).await
        }));
    }
    let mut accepted_count = 0;
    for task in tasks {
        match task.await.expect("task") {
            CommandReply::Accepted(_) => accepted_count += 1,
            rejection => assert_eq!(rejected(&rejection), RejectionCode::Validation),
        }
    }
    assert_eq!(accepted_count, 1);
    let stored = js.events_of("p1").await;
    assert_eq!(
        stored
            .iter()
            .filter(|e| e.event_type() == "BlogPostPublished")
            .count(),
        1
    );
    js.stop().await;
}

#[tokio::test]
async fn two_runtimes_on_the_same_subjects_resolve_conflicts_by_retry() {
    let server = NatsServer::new();
    let a = Jetsource::start(&server.client_url()).await;
    let b = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    create(&client, "shared").await;
    // Both runtimes cache the aggregate; from now on each one's view goes stale
    // whenever the other appends.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            send(
                &client,
                "shared",
                "change_title",
                serde_json::json!({"title": format!("t{i}")}),
            )
            .await
        }));
    }
    let mut seqs = HashSet::new();
    for task in tasks {
        let reply = accepted(task.await.expect("task"));
        assert!(
            seqs.insert(reply.events[0].seq),
            "each command has its own event"
        );
    }
    let stored = a.events_of("shared").await;
    assert_eq!(stored.len(), 41);
    let ids: HashSet<_> = stored
        .iter()
        .filter_map(|e| e.command_id().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 41, "no command stored twice");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_resent_command_id_is_answered_from_the_first_try() {
    let server = NatsServer::with(|o| {
        o.extra_config = String::new();
    });
    let mut config = RuntimeConfig::default();
    // A short dedupe window: idempotency must not depend on it.
    config.streams.duplicate_window = Duration::from_millis(500);
    let js = Jetsource::start_with(&server.client_url(), config.clone()).await;
    let client = commands(&server.client_url()).await;
    let body = r#"{"title":"Hello","body":"text"}"#;
    let first = accepted(send_with(&client, "p1", "create", body, &with_id("c-1")).await);
    let again = accepted(send_with(&client, "p1", "create", body, &with_id("c-1")).await);
    assert!(again.duplicate, "a resent create is not a validation error");
    assert_eq!(again.events, first.events);

    // After the dedupe window and with a fresh runtime (empty cache).
    tokio::time::sleep(Duration::from_millis(800)).await;
    js.stop().await;
    let js = Jetsource::start_with(&server.client_url(), config).await;
    let later = accepted(send_with(&client, "p1", "create", body, &with_id("c-1")).await);
    assert!(later.duplicate);
    assert_eq!(later.events, first.events);
    assert_eq!(js.events_of("p1").await.len(), 1);
    js.stop().await;
}

#[tokio::test]
async fn idempotency_survives_a_server_restart() {
    let mut server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::start(&url).await;
    let client = commands(&url).await;
    let body = r#"{"title":"a","body":"b"}"#;
    let first = accepted(send_with(&client, "p1", "create", body, &with_id("c-1")).await);
    server.restart();
    // Clients retry with the same Command-Id until the reconnected runtime answers.
    let answer = eventually("an answer after the restart", DEADLINE, || {
        let client = &client;
        async move {
            client
                .send("blogpost", "p1", "create", body, &with_id("c-1"))
                .await
                .ok()
        }
    })
    .await;
    let again = accepted(answer);
    assert!(again.duplicate);
    assert_eq!(again.events, first.events);
    assert_eq!(js.events_of("p1").await.len(), 1);
    js.stop().await;
}

#[tokio::test]
async fn a_command_id_reused_on_another_aggregate_is_not_a_duplicate() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    let body = r#"{"title":"t","body":"b"}"#;
    let a = accepted(send_with(&client, "a", "create", body, &with_id("same")).await);
    let b = accepted(send_with(&client, "b", "create", body, &with_id("same")).await);
    assert!(!a.duplicate && !b.duplicate);
    assert_ne!(a.events[0].seq, b.events[0].seq);
    assert_eq!(js.events_of("b").await.len(), 1);
    js.stop().await;
}

#[tokio::test]
async fn a_resent_id_whose_first_try_was_rejected_is_decided_again() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    let body = r#"{"title":"New"}"#;
    let first = send_with(&client, "p1", "change_title", body, &with_id("retry-me")).await;
    assert_eq!(rejected(&first), RejectionCode::NotFound);
    create(&client, "p1").await;
    let second =
        accepted(send_with(&client, "p1", "change_title", body, &with_id("retry-me")).await);
    assert!(!second.duplicate);
    js.stop().await;
}

#[tokio::test]
async fn own_write_recognised_in_the_reloaded_tail() {
    // An earlier attempt's append landed but its ack was lost: the retry
    // meets "wrong last sequence", reloads, and finds its own command there.
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    let seq = create(&client, "p1").await.events[0].seq;
    let body = r#"{"title":"Changed"}"#;
    let event = new_event("BlogPostTitleChanged", body);
    let stored = js
        .store
        .append("blogpost", "p1", seq, &[event], &meta("lost-ack"))
        .await
        .expect("append");
    let reply =
        accepted(send_with(&client, "p1", "change_title", body, &with_id("lost-ack")).await);
    assert_eq!(reply.events[0].seq, stored[0]);
    assert_eq!(js.events_of("p1").await.len(), 2, "not appended twice");
    js.stop().await;
}

#[tokio::test]
async fn fire_and_forget_commands_are_processed() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = commands(&server.client_url()).await;
    client
        .publish(
            "blogpost",
            "ff",
            "create",
            r#"{"title":"t","body":"b"}"#,
            &with_id("ff-1"),
        )
        .await
        .expect("publish");
    let stored = eventually("ff stored", DEADLINE, || async {
        let stored = js.events_of("ff").await;
        (!stored.is_empty()).then_some(stored)
    })
    .await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].command_id(), Some("ff-1"));
    js.stop().await;
}

/// Two processes serve one aggregate type. What one keeps in memory may be
/// behind what the other appended; an answer that appends nothing (a
/// refusal, nothing to do, a wrong `Expected-Seq`) is not checked by the
/// store, so it must be given on the store's latest, never on the stale
/// copy.
#[tokio::test]
async fn an_answer_that_appends_nothing_is_given_on_the_latest_state_not_a_stale_copy() {
    use jetsource::handlers::command::{AggregateHandler, CommandRequest, HandlerConfig};
    use jetsource_reference::blog::BlogPost;

    let server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::start(&url).await;
    let request = |id: &'static str, command: &'static str, body: &'static str| CommandRequest {
        aggregate_id: id,
        command,
        body: body.as_bytes(),
        command_id: uuid::Uuid::new_v4().to_string().into(),
        correlation_id: None,
        causation_id: None,
        expected_seq: None,
        traceparent: None,
    };
    let client = commands(&url).await;
    // The other process: a handler of its own, with its own memory.
    let other = AggregateHandler::<BlogPost>::new(
        event_store(&connect(&url).await).await,
        HandlerConfig::default(),
    );
    for id in ["refused", "nothing", "expected"] {
        create(&client, id).await;
        other.warm(id).await.expect("warm");
    }
    let at = (time::OffsetDateTime::now_utc() + Duration::from_secs(3600))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a time");
    // What `other` holds goes stale: each post moves on through the runtime.
    accepted(
        send(
            &client,
            "refused",
            "schedule_publish",
            serde_json::json!({ "at": at }),
        )
        .await,
    );
    accepted(
        send(
            &client,
            "nothing",
            "change_title",
            serde_json::json!({"title": "Moved"}),
        )
        .await,
    );
    accepted(send(&client, "expected", "publish", serde_json::json!({})).await);

    // Stale, it would refuse: nothing is scheduled in its copy.
    let reply = other
        .process(&request("refused", "unschedule_publish", "{}"))
        .await;
    assert_eq!(accepted(reply).events.len(), 1, "the schedule is withdrawn");
    // Stale, it would do nothing: its copy has that title already.
    let reply = other
        .process(&request("nothing", "change_title", r#"{"title":"Hello"}"#))
        .await;
    assert_eq!(accepted(reply).events.len(), 1, "the title changes back");
    // Stale, it would refuse the right `Expected-Seq` as a conflict.
    let last = stream_state(&js.client, "EVT_BLOGPOST").await.0;
    let events = js.events_of("expected").await;
    let expected_seq = events.last().expect("events").seq;
    assert!(expected_seq <= last);
    let reply = other
        .process(&CommandRequest {
            expected_seq: Some(expected_seq),
            ..request("expected", "change_title", r#"{"title":"After"}"#)
        })
        .await;
    assert_eq!(
        accepted(reply).events.len(),
        1,
        "at the sequence it expected"
    );
    // And a refusal on the latest state still stands.
    let reply = other.process(&request("expected", "publish", "{}")).await;
    assert_eq!(rejected(&reply), RejectionCode::Validation);
    js.stop().await;
}
