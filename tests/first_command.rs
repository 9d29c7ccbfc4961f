//! The first command on an aggregate whose state is not in memory yet: a
//! `create` goes straight to the store with expected sequence 0, so these
//! tests check that the store's answer, not the empty cache, decides.

mod common;

use common::*;
use jetsource::client::SendOptions;
use jetsource::schemas::{CommandReply, RejectionCode};

/// Stored events of post `id`, read on a connection of their own.
async fn stored_count(url: &str, id: &str) -> usize {
    let store = event_store(&connect(url).await).await;
    store.load("blogpost", id, 0).await.expect("load").len()
}

const CREATE: &str = r#"{"title":"Hello","body":"text"}"#;

#[tokio::test]
async fn a_cold_cache_never_hides_existing_history() {
    let server = NatsServer::new();
    let url = server.client_url();
    let client = commands(&url).await;

    let first = Jetsource::start(&url).await;
    let reply = send_with(&client, "p1", "create", CREATE, &with_id("c1")).await;
    assert!(reply.is_accepted(), "{reply:?}");
    first.stop().await;

    // A second runtime starts with nothing in memory.
    let second = Jetsource::start(&url).await;
    // The same create resent: recognised by its Command-Id, nothing new stored.
    let reply = send_with(&client, "p1", "create", CREATE, &with_id("c1")).await;
    let CommandReply::Accepted(accepted) = reply else {
        panic!("resent create not accepted: {reply:?}")
    };
    assert!(accepted.duplicate);
    assert_eq!(accepted.events.len(), 1);
    second.stop().await;

    // Another create with a new id: the post exists, so a validation error.
    let third = Jetsource::start(&url).await;
    let reply = send_with(&client, "p1", "create", CREATE, &with_id("c2")).await;
    assert_eq!(reply.code(), Some(RejectionCode::Validation), "{reply:?}");
    third.stop().await;

    // A title change on a cold cache sees the existing post.
    let fourth = Jetsource::start(&url).await;
    let reply = send_with(
        &client,
        "p1",
        "change_title",
        r#"{"title":"Again"}"#,
        &with_id("c3"),
    )
    .await;
    assert!(reply.is_accepted(), "{reply:?}");
    fourth.stop().await;

    // Expected-Seq 0 on an existing post, cold: a conflict.
    let fifth = Jetsource::start(&url).await;
    let options = SendOptions {
        command_id: Some("c4".into()),
        expected_seq: Some(0),
        ..SendOptions::default()
    };
    let reply = send_with(&client, "p1", "create", CREATE, &options).await;
    assert_eq!(reply.code(), Some(RejectionCode::Conflict), "{reply:?}");
    fifth.stop().await;

    assert_eq!(
        stored_count(&url, "p1").await,
        2,
        "created once, retitled once"
    );
}

#[tokio::test]
async fn a_create_on_a_new_id_is_stored_once_and_then_known() {
    let server = NatsServer::new();
    let url = server.client_url();
    let client = commands(&url).await;
    let hosted = Jetsource::start(&url).await;
    let reply = send_with(&client, "fresh", "create", CREATE, &with_id("n1")).await;
    assert!(reply.is_accepted(), "{reply:?}");
    // Same runtime, warm: a second create is refused from memory.
    let reply = send_with(&client, "fresh", "create", CREATE, &with_id("n2")).await;
    assert_eq!(reply.code(), Some(RejectionCode::Validation), "{reply:?}");
    let reply = send_with(&client, "fresh", "create", CREATE, &with_id("n1")).await;
    assert!(
        matches!(reply, CommandReply::Accepted(ref a) if a.duplicate),
        "{reply:?}"
    );
    hosted.stop().await;
    assert_eq!(stored_count(&url, "fresh").await, 1);
}
