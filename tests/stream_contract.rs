//! Event streams carry the contract version in their metadata: a new stream
//! is stamped, a stream stamped with another version is refused and left
//! alone, and a stream without the key is adopted and stamped.

use async_nats::jetstream::{self, stream};
use jetsource::blog::BlogPost;
use jetsource::handlers::runtime::RuntimeErrorKind;
use jetsource::handlers::store::{EventStore, StreamError, StreamErrorKind, StreamSettings};
use jetsource::schemas::{CONTRACT_METADATA_KEY, CONTRACT_VERSION};
use jetsource::Runtime;
use jetsource_test_server::NatsServer;
use std::collections::HashMap;
use std::error::Error as _;
use std::time::Duration;

async fn store(url: &str) -> (EventStore, jetstream::Context) {
    let client = jetsource::connect(url).await.expect("connect");
    let js = jetstream::new(client.clone());
    let store = EventStore::new(client, Duration::from_secs(5))
        .await
        .expect("store");
    (store, js)
}

/// `EVT_BLOGPOST` as someone made it by hand: no deny switches, `metadata`.
async fn hand_made(js: &jetstream::Context, metadata: HashMap<String, String>) {
    js.create_stream(stream::Config {
        name: "EVT_BLOGPOST".into(),
        subjects: vec!["evt.blogpost.>".into()],
        metadata,
        ..Default::default()
    })
    .await
    .expect("create by hand");
    js.publish("evt.blogpost.p1.BlogPostPublished", "{}".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
}

async fn config(js: &jetstream::Context) -> stream::Config {
    js.get_stream("EVT_BLOGPOST")
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .config
        .clone()
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
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
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
