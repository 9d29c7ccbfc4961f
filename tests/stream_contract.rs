//! Event streams carry the contract version in their metadata: a new stream
//! is stamped, a stream stamped with another version is refused and left
//! alone, and a stream without the key, or of version 1, is adopted and
//! stamped. Projectors refuse to attach to a stream of another version and
//! read one without the key, leaving it as it is.

mod common;

use async_nats::jetstream::{self, stream};
use common::*;
use jetsource::handlers::runtime::RuntimeErrorKind;
use jetsource::handlers::store::{EventStore, StreamError, StreamErrorKind, StreamSettings};
use jetsource::projector::document::InMemory;
use jetsource::projector::{ProjectionErrorKind, ProjectorConfig, ProjectorRuntime};
use jetsource::schemas::CommandReply;
use jetsource::schemas::{Namespace, CONTRACT_METADATA_KEY, CONTRACT_VERSION};
use jetsource::Runtime;
use jetsource_reference::blog::BlogPost;
use jetsource_reference::blogposts::BlogPosts;
use std::collections::HashMap;
use std::error::Error as _;
use std::time::Duration;

async fn store(url: &str) -> (EventStore, jetstream::Context) {
    let client = connect(url).await;
    (event_store(&client).await, jetstream::new(client))
}

/// `EVT_BLOGPOST` as someone made it by hand: no deny switches, `metadata`.
async fn hand_made(js: &jetstream::Context, metadata: HashMap<String, String>) {
    hand_made_in(js, &Namespace::default(), metadata).await
}

/// The blog post stream of `namespace` made by hand, holding one event
/// (post `p1` published, sequence 1).
async fn hand_made_in(
    js: &jetstream::Context,
    namespace: &Namespace,
    metadata: HashMap<String, String>,
) {
    js.create_stream(stream::Config {
        name: namespace.stream_name("blogpost"),
        subjects: vec![namespace.type_filter("blogpost").expect("valid")],
        metadata,
        ..Default::default()
    })
    .await
    .expect("create by hand");
    let subject = namespace
        .event_subject("blogpost", "p1", "BlogPostPublished")
        .expect("valid");
    publish_by_hand(js, &subject, "{}").await;
}

async fn info_in(js: &jetstream::Context, namespace: &Namespace) -> stream::Info {
    js.get_stream(namespace.stream_name("blogpost"))
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .clone()
}

async fn config(js: &jetstream::Context) -> stream::Config {
    info_in(js, &Namespace::default()).await.config
}

#[tokio::test]
async fn a_new_stream_names_the_contract_version() {
    let server = NatsServer::new();
    let (store, js) = store(&server.client_url()).await;
    store
        .ensure_stream("blogpost", &StreamSettings::default())
        .await
        .expect("ensure");
    assert_eq!(
        config(&js).await.metadata.get(CONTRACT_METADATA_KEY),
        Some(&CONTRACT_VERSION.to_string())
    );
    // Ensuring again finds it stamped and accepts it.
    store
        .ensure_stream("blogpost", &StreamSettings::default())
        .await
        .expect("ensure again");
}

#[tokio::test]
async fn a_stream_of_another_contract_version_is_refused_and_left_alone() {
    let server = NatsServer::new();
    let (store, js) = store(&server.client_url()).await;
    let other = format!("{CONTRACT_VERSION}-other");
    hand_made(
        &js,
        HashMap::from([(CONTRACT_METADATA_KEY.to_string(), other.clone())]),
    )
    .await;
    let before = config(&js).await;

    let refused = store
        .ensure_stream("blogpost", &StreamSettings::default())
        .await
        .expect_err("another contract version");
    assert_eq!(refused.kind(), StreamErrorKind::ContractMismatch);
    let after = config(&js).await;
    assert_eq!(after, before);
    assert!(!after.deny_delete, "the settings were not applied");

    // The runtime does not start on it either, and says why.
    let client = connect(&server.client_url()).await;
    let Err(refused) = Runtime::builder(client)
        .aggregate::<BlogPost>()
        .build()
        .await
    else {
        panic!("the runtime started on a stream of another contract version");
    };
    assert_eq!(refused.kind(), RuntimeErrorKind::Stream);
    let cause = refused
        .source()
        .and_then(|s| s.downcast_ref::<StreamError>())
        .expect("the stream error as the cause");
    assert_eq!(cause.kind(), StreamErrorKind::ContractMismatch);
}

#[tokio::test]
async fn a_stream_without_a_contract_version_is_adopted_and_stamped() {
    let server = NatsServer::new();
    let (store, js) = store(&server.client_url()).await;
    hand_made(&js, HashMap::new()).await;
    assert_eq!(config(&js).await.metadata.get(CONTRACT_METADATA_KEY), None);

    store
        .ensure_stream("blogpost", &StreamSettings::default())
        .await
        .expect("accepted");
    let after = config(&js).await;
    assert_eq!(
        after.metadata.get(CONTRACT_METADATA_KEY),
        Some(&CONTRACT_VERSION.to_string())
    );
    assert!(after.deny_delete, "the settings were applied as well");
    let info = js
        .get_stream("EVT_BLOGPOST")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .state
        .messages;
    assert_eq!(info, 1, "the events are kept");
}

#[tokio::test]
async fn projectors_refuse_a_stream_of_another_contract_version() {
    let server = NatsServer::new();
    let client = connect(&server.client_url()).await;
    let js = jetstream::new(client.clone());
    let other = format!("{CONTRACT_VERSION}-other");
    for namespace in [
        Namespace::default(),
        Namespace::new("acme.shop").expect("valid"),
    ] {
        hand_made_in(
            &js,
            &namespace,
            HashMap::from([(CONTRACT_METADATA_KEY.to_string(), other.clone())]),
        )
        .await;
        let config = ProjectorConfig {
            namespace: namespace.clone(),
            ..ProjectorConfig::default()
        };
        let in_memory = ProjectorRuntime::builder(client.clone())
            .config(config.clone())
            .in_memory(InMemory::new(BlogPosts))
            .build()
            .await;
        let persisted = ProjectorRuntime::builder(client.clone())
            .config(config)
            .documents(BlogPosts)
            .build()
            .await;
        for built in [in_memory, persisted] {
            let Err(refused) = built else {
                panic!(
                    "{namespace:?}: a projector attached to a stream of another contract version"
                );
            };
            assert_eq!(refused.kind(), ProjectionErrorKind::ContractMismatch);
        }
        // Nothing was attached and the stream is as it was.
        let info = info_in(&js, &namespace).await;
        assert_eq!(info.state.consumer_count, 0, "{namespace:?}");
        assert_eq!(
            info.config.metadata.get(CONTRACT_METADATA_KEY),
            Some(&other)
        );
    }
}

/// `query.blogposts.get.p1` in the default namespace once sequence 1 is
/// applied.
async fn post_p1(client: &async_nats::Client) -> serde_json::Value {
    query(client, "query.blogposts.get.p1", Some("1")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projectors_read_a_stream_without_a_contract_version() {
    let server = NatsServer::new();
    let client = connect(&server.client_url()).await;
    let js = jetstream::new(client.clone());
    hand_made(&js, HashMap::new()).await;
    let settings = ProjectorConfig {
        query_wait: Duration::from_secs(30),
        ..ProjectorConfig::default()
    };
    let in_memory = ProjectorRuntime::builder(client.clone())
        .config(settings.clone())
        .in_memory(InMemory::new(BlogPosts));
    let persisted = ProjectorRuntime::builder(client.clone())
        .config(settings)
        .documents(BlogPosts);
    for builder in [in_memory, persisted] {
        let running = Projectors::start(builder).await;
        let answer = post_p1(&client).await;
        assert_eq!(answer["status"], "ok", "{answer}");
        assert_eq!(answer["result"]["published"], true, "{answer}");
        assert_eq!(answer["result"]["last_seq"], 1, "{answer}");
        running.stop().await.expect("stop");
    }
    // A projector only reads: the key is for the handlers to add.
    assert_eq!(config(&js).await.metadata.get(CONTRACT_METADATA_KEY), None);
}

/// A version 1 stream: events written with `Nats-Msg-Id` and `Event-Time`,
/// which version 2 no longer writes. Projectors read it as it is; the
/// handlers adopt it (re-stamped, so version 1 readers stop at their next
/// start), recognise a resend of a version 1 command by its Command-Id, and
/// append version 2 events after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_stream_is_read_and_adopted() {
    let server = NatsServer::new();
    let client = connect(&server.client_url()).await;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "EVT_BLOGPOST".into(),
        subjects: vec!["evt.blogpost.>".into()],
        metadata: HashMap::from([(CONTRACT_METADATA_KEY.to_string(), "1".to_string())]),
        ..Default::default()
    })
    .await
    .expect("create");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Command-Id", "c1");
    headers.insert("Event-Version", "1");
    headers.insert("Event-Time", "2020-01-02T03:04:05Z");
    headers.insert("Nats-Msg-Id", "p1:c1:0");
    js.publish_with_headers(
        "evt.blogpost.p1.BlogPostCreated",
        headers,
        r#"{"title":"Old","body":"b"}"#.into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");

    // A version 1 stream is readable.
    let projector = Projectors::start(
        ProjectorRuntime::builder(client.clone())
            .config(ProjectorConfig {
                query_wait: Duration::from_secs(30),
                ..ProjectorConfig::default()
            })
            .in_memory(InMemory::new(BlogPosts)),
    )
    .await;
    let answer = post_p1(&client).await;
    assert_eq!(answer["result"]["title"], "Old", "{answer}");
    projector.stop().await.expect("stop");

    // A version 1 stream is adopted.
    let running = Jetsource::start(&server.client_url()).await;
    assert_eq!(
        config(&js).await.metadata.get(CONTRACT_METADATA_KEY),
        Some(&CONTRACT_VERSION.to_string())
    );
    let send = |command: &'static str, id: &'static str, body: &'static str| {
        let client = client.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Command-Id", id);
            let reply = client
                .send_request(
                    format!("cmd.blogpost.p1.{command}"),
                    async_nats::Request::new()
                        .headers(headers)
                        .payload(body.into())
                        .timeout(Some(Duration::from_secs(30))),
                )
                .await
                .expect("a reply");
            serde_json::from_slice::<CommandReply>(&reply.payload).expect("a reply")
        }
    };
    match send("create", "c1", r#"{"title":"Old","body":"b"}"#).await {
        CommandReply::Accepted(accepted) => {
            assert!(accepted.duplicate, "the version 1 command is recognised");
            assert_eq!(accepted.events[0].seq, 1);
        }
        other => panic!("{other:?}"),
    }
    match send("change_title", "c2", r#"{"title":"New"}"#).await {
        CommandReply::Accepted(accepted) => assert_eq!(accepted.events[0].seq, 2),
        other => panic!("{other:?}"),
    }
    running.stop().await;
}
