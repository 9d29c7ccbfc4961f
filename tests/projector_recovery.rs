//! An in-memory projection recovers by itself, and promptly, when its
//! nats-server restarts: its driver notices events it follows beyond what
//! it applied and reopens its consumers after its positions, rather than
//! waiting for the ordered consumer's missed idle heartbeats.

mod common;

use common::*;
use jetsource::projector::{ProjectorConfig, ProjectorRuntime};
use jetsource_reference::blogposts::BlogPosts;
use std::time::{Duration, Instant};

async fn get_after(client: &async_nats::Client, id: &str, seq: u64) -> serde_json::Value {
    let mut h = async_nats::HeaderMap::new();
    h.insert("After-Seq", seq.to_string().as_str());
    let reply = client
        .send_request(
            format!("query.blogposts.get.{id}"),
            async_nats::Request::new()
                .headers(h)
                .timeout(Some(Duration::from_secs(20))),
        )
        .await
        .expect("an answer");
    serde_json::from_slice(&reply.payload).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_projection_catches_up_soon_after_a_server_restart() {
    let mut server = NatsServer::new();
    let url = server.client_url();
    let js = Jetsource::start(&url).await;
    let client = jetsource::connect(&url).await.expect("connect");
    let projectors = ProjectorRuntime::builder(client.clone())
        .config(ProjectorConfig {
            // Below what the ordered consumer needs to notice on its own
            // (missed idle heartbeats: about 12 s on this machine).
            query_wait: Duration::from_secs(9),
            ..ProjectorConfig::default()
        })
        .in_memory(BlogPosts::default())
        .build()
        .await
        .expect("projectors")
        .start()
        .await
        .expect("start");
    let commands = common::commands(&url).await;
    let seq = create(&commands, "p1").await.events[0].seq;
    assert_eq!(
        get_after(&client, "p1", seq).await["result"]["title"],
        "Hello"
    );

    tokio::task::block_in_place(|| server.restart());
    // Commands flow again once everyone has reconnected.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        match commands
            .send(
                "blogpost",
                "p1",
                "change_title",
                r#"{"title":"After the restart"}"#,
                &with_id("after-restart"),
            )
            .await
        {
            Ok(reply) if reply.code() != Some(jetsource::schemas::RejectionCode::Unavailable) => {
                break reply
            }
            _ if Instant::now() > deadline => panic!("no answer after the restart"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let seq = accepted(reply).events[0].seq;
    let answer = get_after(&client, "p1", seq).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["result"]["title"], "After the restart");
    let _ = projectors.stop().await;
    js.stop().await;
}
