//! An in-memory projection recovers by itself, and promptly, when its
//! nats-server restarts: its driver notices events it follows beyond what
//! it applied and reopens its consumers after its positions, rather than
//! waiting for the ordered consumer's missed idle heartbeats.

mod common;

use common::*;
use jetsource::projector::document::InMemory;
use jetsource::projector::{ProjectorConfig, ProjectorRuntime};
use jetsource::schemas::RejectionCode;
use jetsource_reference::blogposts::BlogPosts;
use std::time::Duration;

async fn get_after(client: &async_nats::Client, id: &str, seq: u64) -> serde_json::Value {
    let subject = format!("query.blogposts.get.{id}");
    query(client, &subject, Some(&seq.to_string())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_projection_catches_up_soon_after_a_server_restart() {
    let mut server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::start(&url).await;
    let client = connect(&url).await;
    let projectors = Projectors::start(
        ProjectorRuntime::builder(client.clone())
            .config(ProjectorConfig {
                // Below what the ordered consumer needs to notice on its own
                // (missed idle heartbeats: about 12 s on this machine).
                query_wait: Duration::from_secs(9),
                ..ProjectorConfig::default()
            })
            .in_memory(InMemory::new(BlogPosts)),
    )
    .await;
    let commands = common::commands(&url).await;
    let seq = create(&commands, "p1").await.events[0].seq;
    assert_eq!(
        get_after(&client, "p1", seq).await["result"]["title"],
        "Hello"
    );

    tokio::task::block_in_place(|| server.restart());
    // Commands flow again once everyone has reconnected.
    let reply = eventually("an answer after the restart", DEADLINE, || async {
        let sent = commands
            .send(
                "blogpost",
                "p1",
                "change_title",
                r#"{"title":"After the restart"}"#,
                &with_id("after-restart"),
            )
            .await;
        sent.ok()
            .filter(|reply| reply.code() != Some(RejectionCode::Unavailable))
    })
    .await;
    let seq = accepted(reply).events[0].seq;
    let answer = get_after(&client, "p1", seq).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["result"]["title"], "After the restart");
    let _ = projectors.stop().await;
    js.stop().await;
}
