//! Every answer fits: lists read page by page visit each item once even
//! beside an item near the largest body, and an answer larger than the
//! server's `max_payload` is replied `too_large`, for projections and
//! feedback alike, against real nats-servers.

mod common;

use common::*;
use jetsource::feedback::FeedbackConfig;
use jetsource::projector::document::InMemory;
use jetsource::projector::ProjectorRuntime;
use jetsource::schemas::answer::Unsent;
use jetsource::RuntimeConfig;
use jetsource_reference::blog::BlogPostEvent;
use jetsource_reference::blogposts::BlogPosts;
use std::collections::BTreeSet;

/// Creates post `id` with `title` and `body`, by hand; its sequence.
async fn post(
    store: &jetsource::handlers::store::EventStore,
    id: &str,
    title: &str,
    body: &str,
) -> u64 {
    let created = encoded(&BlogPostEvent::BlogPostCreated {
        title: title.to_string(),
        body: body.to_string(),
        author: "unknown".into(),
    });
    let seqs = store
        .append("blogpost", id, 0, &[created], &meta(&format!("{id}-c")))
        .await
        .expect("append");
    *seqs.last().expect("appended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_visits_every_post_once_page_by_page_beside_a_post_near_the_largest_body() {
    let server = NatsServer::new();
    let f = Jetsource::start(&server.client_url()).await;
    let max_payload = f.client.server_info().max_payload;
    let max_body = RuntimeConfig::default().max_body_bytes;
    // The body of the largest create command the runtime accepts.
    let big_body = "x".repeat(max_body - r#"{"title":"big","body":""}"#.len());
    let mut last = 0;
    for i in 0..300 {
        let id = format!("p{i:03}");
        let body = match i {
            150 => big_body.clone(),
            // 150 of these take more than what a page has beside the big one.
            _ => format!("body of {id} {}", "z".repeat(500)),
        };
        last = last.max(post(&f.store, &id, &format!("title of {id}"), &body).await);
    }
    let running = Projectors::start(
        ProjectorRuntime::builder(f.client.clone()).in_memory(InMemory::new(BlogPosts)),
    )
    .await;
    running
        .wait_applied(BlogPosts::NAME, "EVT_BLOGPOST", last)
        .await;

    for limit in [None, Some(1000), Some(7)] {
        let (items, pages) = list_all(&f.client, "query.blogposts.list", limit, None).await;
        let ids: Vec<&str> = items.iter().filter_map(|p| p["id"].as_str()).collect();
        let expected: Vec<String> = (0..300).map(|i| format!("p{i:03}")).collect();
        assert_eq!(ids, expected, "every post once, in order (limit {limit:?})");
        let most = limit.unwrap_or(100) as usize;
        assert!(
            pages.iter().all(|n| (1..=most).contains(n)),
            "{limit:?}: {pages:?}"
        );
    }
    // The page before the big post ends where it would not fit; it starts
    // the next page.
    let first = page(&f.client, "query.blogposts.list", Some(1000), None, None).await;
    assert_eq!(first["result"]["items"].as_array().map(Vec::len), Some(150));
    assert_eq!(first["result"]["next"], "p149");
    let reply = f
        .client
        .request(
            "query.blogposts.list".to_string(),
            r#"{"limit":1000,"after":"p149"}"#.into(),
        )
        .await
        .expect("an answer");
    assert!(reply.payload.len() <= max_payload);
    let second: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(second["status"], "ok");
    assert_eq!(second["result"]["items"][0]["id"], "p150");
    assert_eq!(
        second["result"]["items"][0]["body"].as_str().map(str::len),
        Some(big_body.len())
    );
    running.stop().await.expect("stop");
    f.stop().await;
}

/// A server whose messages may have at most `max_payload` bytes.
fn small_server(max_payload: usize) -> NatsServer {
    NatsServer::with(|o| o.extra_config = format!("max_payload: {max_payload}\n"))
}

/// What a command runtime may take on a server of that `max_payload`.
fn small_config(max_payload: usize) -> RuntimeConfig {
    RuntimeConfig {
        max_body_bytes: max_payload / 2,
        ..RuntimeConfig::default()
    }
}

fn too_large(answer: &[u8], max_payload: usize) -> u64 {
    assert!(answer.len() < 1024, "a small reply: {} bytes", answer.len());
    match serde_json::from_slice::<Unsent>(answer).expect("an unsent reply") {
        Unsent::TooLarge {
            size,
            max_payload: told,
            ..
        } => {
            assert_eq!(told, max_payload as u64);
            assert!(size > told, "{size} bytes");
            size
        }
        other => panic!("expected too_large, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_larger_than_a_message_is_too_large_and_the_list_says_so_at_it() {
    let max_payload = 16 * 1024;
    let server = small_server(max_payload);
    let f = Jetsource::start_with(&server.client_url(), small_config(max_payload)).await;
    assert_eq!(f.client.server_info().max_payload, max_payload);
    // Each event fits in a message; the post they fold into does not.
    let half = "y".repeat(max_payload * 5 / 8);
    post(&f.store, "a", "small", "small").await;
    post(&f.store, "b", "long", &half).await;
    let retitled = encoded(&BlogPostEvent::BlogPostTitleChanged {
        new_title: half.clone(),
    });
    let seqs = f
        .store
        .append("blogpost", "b", 2, &[retitled], &meta("b-t"))
        .await
        .expect("append");
    let last = *seqs.last().expect("appended");
    let running = Projectors::start(
        ProjectorRuntime::builder(f.client.clone()).in_memory(InMemory::new(BlogPosts)),
    )
    .await;
    running
        .wait_applied(BlogPosts::NAME, "EVT_BLOGPOST", last)
        .await;

    let get = f
        .client
        .request("query.blogposts.get.b".to_string(), "".into())
        .await
        .expect("an answer, not silence");
    let size = too_large(&get.payload, max_payload);
    assert!(size as usize > 2 * half.len(), "{size}");
    // The page before it holds what fits; the one starting at it is too large.
    let first = page(&f.client, "query.blogposts.list", None, None, None).await;
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first["result"]["items"][0]["id"], "a");
    assert_eq!(first["result"]["next"], "a");
    let at_it = f
        .client
        .request(
            "query.blogposts.list".to_string(),
            r#"{"after":"a"}"#.into(),
        )
        .await
        .expect("an answer, not silence");
    too_large(&at_it.payload, max_payload);
    // A small answer still is one.
    let small = query(&f.client, "query.blogposts.get.a", None).await;
    assert_eq!(small["status"], "ok");
    running.stop().await.expect("stop");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feedback_answer_larger_than_a_message_is_too_large() {
    let max_payload = 8 * 1024;
    let server = small_server(max_payload);
    let url = server.client_url();
    let f = Jetsource::with_feedback(
        &url,
        FeedbackConfig::default(),
        small_config(max_payload),
        true,
    )
    .await;
    let client = commands(&url).await;
    // One command id accepted on many posts: its status lists them all.
    let posts: BTreeSet<String> = (0..200).map(|i| format!("post-{i:03}")).collect();
    for id in &posts {
        let reply = send_with(
            &client,
            id,
            "create",
            r#"{"title":"T","body":"b"}"#,
            &with_id("shared"),
        )
        .await;
        accepted(reply);
    }
    let answer = f
        .client
        .request("status.shared".to_string(), "".into())
        .await
        .expect("an answer, not silence");
    too_large(&answer.payload, max_payload);
    // Rejections of one post: their list is read a page at a time, each fits.
    for n in 0..60 {
        let reply = send_with(
            &client,
            "post-000",
            "create",
            r#"{"title":"T","body":"b"}"#,
            &with_id(&format!("again-{n:02}")),
        )
        .await;
        assert!(matches!(
            reply,
            jetsource::schemas::CommandReply::Rejected(_)
        ));
    }
    // Notices travel after the reply.
    for n in 0..60 {
        known(&f.client, &format!("errors.get.again-{n:02}")).await;
    }
    let mut seen = BTreeSet::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let body = match &after {
            Some(a) => serde_json::json!({ "limit": 1000, "after": a }),
            None => serde_json::json!({ "limit": 1000 }),
        };
        let reply = f
            .client
            .request(
                "errors.list.blogpost.post-000".to_string(),
                body.to_string().into(),
            )
            .await
            .expect("an answer");
        assert!(reply.payload.len() <= max_payload);
        let list: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON");
        let rejections = list["rejections"].as_array().expect("a list").clone();
        assert!(!rejections.is_empty() || pages == 0, "{list}");
        for r in &rejections {
            assert!(
                seen.insert(r["command_id"].as_str().expect("an id").to_string()),
                "{r} twice"
            );
        }
        pages += 1;
        match &list["next"] {
            serde_json::Value::String(next) => after = Some(next.clone()),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 60);
    assert!(
        pages > 1,
        "60 rejections do not fit in one page of {max_payload} bytes"
    );
    f.stop().await;
}
