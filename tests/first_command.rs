//! The first command on an aggregate whose state is not in memory yet: a
//! `create` goes straight to the store with expected sequence 0, so these
//! tests check that the store's answer, not the empty cache, decides.

use jetsource::client::{CommandClient, SendOptions};
use jetsource::handlers::store::EventStore;
use jetsource::schemas::{CommandReply, RejectionCode};
use jetsource::{App, RuntimeConfig};
use jetsource_reference::blog::BlogPost;
use jetsource_test_server::NatsServer;
use std::time::Duration;
use tokio::sync::oneshot;

/// A runtime with its own (empty) state cache, stopped on `stop`.
struct Hosted {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Hosted {
    async fn start(url: &str) -> Self {
        let client = jetsource::connect(url).await.expect("connect");
        let runtime = App::new()
            .aggregate::<BlogPost>()
            .runtime_builder(client.clone())
            .config(RuntimeConfig::default())
            .build()
            .await
            .expect("build");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            runtime
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("run");
        });
        // Wait until the subscription answers.
        let probe = CommandClient::new(client).with_timeout(Duration::from_millis(500));
        for _ in 0..40 {
            if probe
                .send(
                    "blogpost",
                    "probe",
                    "publish",
                    "{}",
                    &SendOptions::default(),
                )
                .await
                .is_ok()
            {
                break;
            }
        }
        Hosted { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("runtime task");
    }
}

fn with_id(id: &str) -> SendOptions {
    SendOptions {
        command_id: Some(id.into()),
        ..SendOptions::default()
    }
}

async fn events_of(url: &str, id: &str) -> usize {
    let client = jetsource::connect(url).await.expect("connect");
    let store = EventStore::new(client, Duration::from_secs(5))
        .await
        .expect("store");
    store.load("blogpost", id, 0).await.expect("load").len()
}

const CREATE: &str = r#"{"title":"Hello","body":"text"}"#;

#[tokio::test]
async fn a_cold_cache_never_hides_existing_history() {
    let server = NatsServer::new();
    let url = server.client_url();
    let client = CommandClient::new(jetsource::connect(&url).await.expect("connect"));

    let first = Hosted::start(&url).await;
    let reply = client
        .send("blogpost", "p1", "create", CREATE, &with_id("c1"))
        .await
        .expect("reply");
    assert!(reply.is_accepted(), "{reply:?}");
    first.stop().await;

    // A second runtime starts with nothing in memory.
    let second = Hosted::start(&url).await;
    // The same create resent: recognised by its Command-Id, nothing new stored.
    let reply = client
        .send("blogpost", "p1", "create", CREATE, &with_id("c1"))
        .await
        .expect("reply");
    let CommandReply::Accepted(accepted) = reply else {
        panic!("resent create not accepted: {reply:?}")
    };
    assert!(accepted.duplicate);
    assert_eq!(accepted.events.len(), 1);
    second.stop().await;

    // Another create with a new id: the post exists, so a validation error.
    let third = Hosted::start(&url).await;
    let reply = client
        .send("blogpost", "p1", "create", CREATE, &with_id("c2"))
        .await
        .expect("reply");
    assert_eq!(reply.code(), Some(RejectionCode::Validation), "{reply:?}");
    third.stop().await;

    // A title change on a cold cache sees the existing post.
    let fourth = Hosted::start(&url).await;
    let reply = client
        .send(
            "blogpost",
            "p1",
            "change_title",
            r#"{"title":"Again"}"#,
            &with_id("c3"),
        )
        .await
        .expect("reply");
    assert!(reply.is_accepted(), "{reply:?}");
    fourth.stop().await;

    // Expected-Seq 0 on an existing post, cold: a conflict.
    let fifth = Hosted::start(&url).await;
    let options = SendOptions {
        command_id: Some("c4".into()),
        expected_seq: Some(0),
        ..SendOptions::default()
    };
    let reply = client
        .send("blogpost", "p1", "create", CREATE, &options)
        .await
        .expect("reply");
    assert_eq!(reply.code(), Some(RejectionCode::Conflict), "{reply:?}");
    fifth.stop().await;

    assert_eq!(
        events_of(&url, "p1").await,
        2,
        "created once, retitled once"
    );
}

#[tokio::test]
async fn a_create_on_a_new_id_is_stored_once_and_then_known() {
    let server = NatsServer::new();
    let url = server.client_url();
    let client = CommandClient::new(jetsource::connect(&url).await.expect("connect"));
    let hosted = Hosted::start(&url).await;
    let reply = client
        .send("blogpost", "fresh", "create", CREATE, &with_id("n1"))
        .await
        .expect("reply");
    assert!(reply.is_accepted(), "{reply:?}");
    // Same runtime, warm: a second create is refused from memory.
    let reply = client
        .send("blogpost", "fresh", "create", CREATE, &with_id("n2"))
        .await
        .expect("reply");
    assert_eq!(reply.code(), Some(RejectionCode::Validation), "{reply:?}");
    let reply = client
        .send("blogpost", "fresh", "create", CREATE, &with_id("n1"))
        .await
        .expect("reply");
    assert!(
        matches!(reply, CommandReply::Accepted(ref a) if a.duplicate),
        "{reply:?}"
    );
    hosted.stop().await;
    assert_eq!(events_of(&url, "fresh").await, 1);
}
