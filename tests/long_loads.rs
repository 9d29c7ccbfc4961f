//! Loading long histories: past a first direct-get batch the store reads
//! the rest through a short-lived consumer, and by direct get again when it
//! cannot have one. Every load must bring the same events in stream order.

mod common;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use common::*;
use futures::stream::{FuturesUnordered, StreamExt};
use jetsource::handlers::store::{
    EventStore, LoadStats, StoredEvent, StreamSettings, CONSUMER_MIN_PENDING, FIRST_BATCH,
};
use jetsource::schemas::Namespace;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Three of the blog's event types, for histories that interleave them.
const THREE_TYPES: [&str; 3] = [
    "BlogPostTitleChanged",
    "BlogPostPublished",
    "BlogPostUnpublished",
];

/// What a load brought, comparable: sequence, subject, command id, body.
fn seen(events: &[StoredEvent]) -> Vec<(u64, String, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.seq,
                e.subject.clone(),
                e.command_id().unwrap_or_default().to_string(),
                String::from_utf8_lossy(&e.payload).into_owned(),
            )
        })
        .collect()
}

/// Publishes `(subject, body)` with a Command-Id each, many in flight at
/// once, and returns what loads should see of them, in stream order.
async fn publish(
    js: &jetstream::Context,
    events: Vec<(String, String)>,
) -> Vec<(u64, String, String, String)> {
    let mut acks = FuturesUnordered::new();
    let mut stored = Vec::new();
    for (i, (subject, body)) in events.into_iter().enumerate() {
        let mut headers = HeaderMap::new();
        let command_id = format!("cmd-{i}");
        headers.insert("Command-Id", command_id.as_str());
        let ack = js
            .publish_with_headers(subject.clone(), headers, body.clone().into())
            .await
            .expect("publish");
        acks.push(async move {
            let ack = ack.await.expect("ack");
            (ack.sequence, subject, command_id, body)
        });
        if acks.len() >= 256 {
            stored.extend(acks.next().await);
        }
    }
    while let Some(one) = acks.next().await {
        stored.push(one);
    }
    stored.sort_by_key(|e| e.0);
    stored
}

fn stats(stats: &LoadStats) -> (u64, u64, u64, u64) {
    (
        stats.direct_requests.load(Ordering::Relaxed),
        stats.consumer_reads.load(Ordering::Relaxed),
        stats.consumer_pulls.load(Ordering::Relaxed),
        stats.consumer_fallbacks.load(Ordering::Relaxed),
    )
}

/// An event store on `urls` under `namespace`, with the blog stream in
/// `replicas` (retried while a cluster elects its leaders), and a
/// JetStream context on the same connection.
async fn blog_store(
    urls: &str,
    namespace: Namespace,
    replicas: usize,
) -> (jetstream::Context, EventStore) {
    let client = connect(urls).await;
    let store = EventStore::new(client.clone(), Duration::from_secs(10))
        .await
        .expect("store")
        .with_namespace(namespace);
    let settings = StreamSettings {
        replicas,
        ..StreamSettings::default()
    };
    eventually("the blog stream", DEADLINE, || async {
        let ensured = store.ensure_stream("blogpost", &settings).await;
        ensured.map_err(|e| eprintln!("no stream yet: {e}")).ok()
    })
    .await;
    let js = jetstream::new(client);
    // A replicated stream takes publishes once it has a leader and its
    // replicas are current: before that, a publish may find no responder.
    let stream = store.namespace().stream_name("blogpost");
    if replicas > 1 {
        let ready = format!("stream {stream} with a leader and current replicas");
        eventually(ready, DEADLINE, || async {
            replicated_ready(&js, &stream, replicas).await.then_some(())
        })
        .await;
    }
    (js, store)
}

/// True once `stream` has a leader and `replicas - 1` current followers.
async fn replicated_ready(js: &jetstream::Context, stream: &str, replicas: usize) -> bool {
    let Ok(mut found) = js.get_stream(stream).await else {
        return false;
    };
    let cluster = found
        .info()
        .await
        .ok()
        .and_then(|info| info.cluster.clone());
    cluster.is_some_and(|c| {
        c.leader.is_some()
            && c.replicas.len() + 1 == replicas
            && c.replicas.iter().all(|r| r.current)
    })
}

async fn consumer_count(js: &jetstream::Context, stream: &str) -> usize {
    js.get_stream(stream)
        .await
        .expect("stream")
        .info()
        .await
        .expect("stream info")
        .state
        .consumer_count
}

#[tokio::test]
async fn a_long_history_comes_whole_and_in_order_through_a_consumer() {
    let server = NatsServer::new();
    let (js, store) = blog_store(&server.client_url(), Namespace::default(), 1).await;
    // Post `long` has three event types interleaved with another post's
    // events: 3,000 of its own, far past the first batch.
    let types = THREE_TYPES;
    let mut events = Vec::new();
    for i in 0..3_000usize {
        events.push((
            format!("evt.blogpost.long.{}", types[i % 3]),
            format!(r#"{{"n":{i}}}"#),
        ));
        if i % 2 == 0 {
            events.push((
                "evt.blogpost.other.BlogPostTitleChanged".to_string(),
                format!(r#"{{"other":{i}}}"#),
            ));
        }
    }
    let stored = publish(&js, events).await;
    let long: Vec<_> = stored
        .iter()
        .filter(|e| e.1.starts_with("evt.blogpost.long."))
        .cloned()
        .collect();
    assert_eq!(long.len(), 3_000);
    assert!(long.len() as u64 - FIRST_BATCH as u64 >= CONSUMER_MIN_PENDING);
    let counts = store.load_stats();
    let metrics = jetsource::handlers::metrics::global();
    metrics.set_recording(true);
    let (_, before, _) = metrics.load_counts();

    let all = store.load("blogpost", "long", 0).await.expect("load");
    assert_eq!(seen(&all), long);
    // One direct get, then the consumer.
    assert_eq!(stats(&counts), (1, 1, 1, 0));
    // Other tests of this binary may add to the process's counters too.
    assert!(metrics.load_counts().1 > before);

    // By literal subjects: only the types asked for, merged in order.
    let two = &types[..2];
    let by_type = store
        .load_types("blogpost", "long", 0, two)
        .await
        .expect("load by type");
    let expected: Vec<_> = long
        .iter()
        .filter(|e| !e.1.ends_with("Unpublished"))
        .cloned()
        .collect();
    assert_eq!(seen(&by_type), expected);
    assert_eq!(stats(&counts), (3, 2, 2, 0));

    // From the middle on.
    let after = long[999].0;
    let tail = store.load("blogpost", "long", after).await.expect("tail");
    assert_eq!(seen(&tail), long[1_000..]);
    assert_eq!(stats(&counts), (4, 3, 3, 0));

    // A short tail is read by direct get alone.
    let after = long[2_899].0;
    let short = store.load("blogpost", "long", after).await.expect("short");
    assert_eq!(seen(&short), long[2_900..]);
    assert_eq!(stats(&counts), (5, 3, 3, 0));

    // Each load deleted its consumer (the server would only remove an
    // abandoned one 30 s after its last pull).
    eventually(
        "the load consumers' removal",
        Duration::from_secs(10),
        || async { (consumer_count(&js, "EVT_BLOGPOST").await == 0).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn large_events_come_in_several_pulls() {
    let server = NatsServer::new();
    let (js, store) = blog_store(&server.client_url(), Namespace::default(), 1).await;
    // 1,200 events of 16 KB: the first batch stops at its byte cap, and
    // each pull is sized to bring about as much.
    let filler = "x".repeat(16 * 1024);
    let events = (0..1_200)
        .map(|i| {
            (
                "evt.blogpost.big.BlogPostTitleChanged".to_string(),
                format!(r#"{{"n":{i},"filler":"{filler}"}}"#),
            )
        })
        .collect();
    let stored = publish(&js, events).await;
    let counts = store.load_stats();
    let all = store.load("blogpost", "big", 0).await.expect("load");
    assert_eq!(seen(&all), stored);
    let (direct, reads, pulls, fallbacks) = stats(&counts);
    assert_eq!((direct, reads, fallbacks), (1, 1, 0));
    assert!(pulls >= 4, "{pulls} pulls for ~19 MB");
}

#[tokio::test]
async fn a_refused_consumer_leaves_the_load_to_direct_gets() {
    let server = NatsServer::new();
    let client = connect(&server.client_url()).await;
    let js = jetstream::new(client.clone());
    // A stream that allows one consumer, which it already has.
    let stream = js
        .create_stream(stream::Config {
            name: "EVT_BLOGPOST".into(),
            subjects: vec!["evt.blogpost.>".into()],
            max_consumers: 1,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .expect("stream");
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("the_only_one".into()),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let events = (0..2_000)
        .map(|i| {
            (
                "evt.blogpost.p.BlogPostTitleChanged".to_string(),
                format!(r#"{{"n":{i}}}"#),
            )
        })
        .collect();
    let stored = publish(&js, events).await;
    let store = EventStore::new(client.clone(), Duration::from_secs(10))
        .await
        .expect("store");
    let counts = store.load_stats();
    let metrics = jetsource::handlers::metrics::global();
    metrics.set_recording(true);
    let (_, _, fallbacks_before) = metrics.load_counts();
    let all = store.load("blogpost", "p", 0).await.expect("load");
    assert_eq!(seen(&all), stored);
    let (direct, reads, _, fallbacks) = stats(&counts);
    assert_eq!((reads, fallbacks), (0, 1));
    assert_eq!(direct, 2, "the first batch, then the rest in one");
    assert!(metrics.load_counts().2 > fallbacks_before);
    // For a while, long loads of that stream do not try again.
    let again = store.load("blogpost", "p", 0).await.expect("load");
    assert_eq!(seen(&again), stored);
    let (direct, reads, _, fallbacks) = stats(&counts);
    assert_eq!((direct, reads, fallbacks), (4, 0, 1));
    assert_eq!(counts.consumer_skips.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_long_load_on_a_replicated_stream_reads_through_a_consumer() {
    let cluster = NatsCluster::new(3);
    let (js, store) = blog_store(&cluster.client_urls(), Namespace::default(), 3).await;
    let events = (0..1_000)
        .map(|i| {
            (
                "evt.blogpost.r3.BlogPostTitleChanged".to_string(),
                format!(r#"{{"n":{i}}}"#),
            )
        })
        .collect();
    let stored = publish(&js, events).await;
    let counts = store.load_stats();
    let all = store.load("blogpost", "r3", 0).await.expect("load");
    assert_eq!(seen(&all), stored);
    let (_, reads, _, fallbacks) = stats(&counts);
    assert_eq!((reads, fallbacks), (1, 0));
}

#[tokio::test]
async fn a_long_load_under_a_subject_prefix_reads_the_prefixed_subjects() {
    let server = NatsServer::new();
    let namespace = Namespace::new("acme.shop").expect("prefix");
    let (js, store) = blog_store(&server.client_url(), namespace, 1).await;
    let types = ["BlogPostTitleChanged", "BlogPostPublished"];
    // 1,000 of each type: past the first batch of either by more than
    // CONSUMER_MIN_PENDING.
    let events = (0..2_000usize)
        .map(|i| {
            (
                format!("acme.shop.evt.blogpost.p.{}", types[i % 2]),
                format!(r#"{{"n":{i}}}"#),
            )
        })
        .collect();
    let stored = publish(&js, events).await;
    let counts = store.load_stats();
    let all = store.load("blogpost", "p", 0).await.expect("load");
    assert_eq!(seen(&all), stored);
    let published = store
        .load_types("blogpost", "p", 0, &types[1..])
        .await
        .expect("load by type");
    let expected: Vec<_> = stored
        .iter()
        .filter(|e| e.1.ends_with("Published"))
        .cloned()
        .collect();
    assert_eq!(seen(&published), expected);
    let (_, reads, _, fallbacks) = stats(&counts);
    assert_eq!((reads, fallbacks), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_lost_mid_read_leaves_the_rest_to_direct_gets_without_gaps_or_repeats() {
    let server = NatsServer::new();
    let (js, store) = blog_store(&server.client_url(), Namespace::default(), 1).await;
    // Events of 16 KB, so the consumer's read takes several pulls; three
    // types, two of them asked for, so the first batches of both subjects
    // run past where the consumer starts.
    let types = THREE_TYPES;
    let filler = "x".repeat(16 * 1024);
    let events = (0..1_500usize)
        .map(|i| {
            (
                format!("evt.blogpost.cut.{}", types[i % 3]),
                format!(r#"{{"n":{i},"filler":"{filler}"}}"#),
            )
        })
        .collect();
    let stored = publish(&js, events).await;
    let expected: Vec<_> = stored
        .iter()
        .filter(|e| !e.1.ends_with("Unpublished"))
        .cloned()
        .collect();

    // Once the load has handed on 300 events, its consumer is deleted (and
    // the load waits for that), so the pulls after fail.
    let (cut_tx, mut cut_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deleter = {
        let js = js.clone();
        let cut = cut.clone();
        tokio::spawn(async move {
            if cut_rx.recv().await.is_none() {
                return;
            }
            let stream = js.get_stream("EVT_BLOGPOST").await.expect("stream");
            let names: Vec<String> = stream
                .consumer_names()
                .map(|n| n.expect("name"))
                .collect()
                .await;
            assert_eq!(names.len(), 1, "the load's consumer: {names:?}");
            stream.delete_consumer(&names[0]).await.expect("delete");
            cut.store(true, Ordering::SeqCst);
        })
    };
    let counts = store.load_stats();
    let mut handed = Vec::new();
    store
        .load_each(
            "blogpost",
            "cut",
            &types[..2],
            || async { None },
            &mut |event| {
                handed.push(event);
                if handed.len() == 300 {
                    cut_tx.send(()).expect("deleter");
                    let deleted = || cut.load(Ordering::SeqCst).then_some(());
                    eventually_blocking(
                        "the consumer's deletion",
                        Duration::from_secs(10),
                        deleted,
                    );
                }
                std::ops::ControlFlow::Continue(())
            },
        )
        .await
        .expect("load");
    deleter.await.expect("deleter");
    // Compared without the 16 KB bodies, then the bodies on their own.
    let (handed, expected) = (seen(&handed), expected);
    let places = |events: &[(u64, String, String, String)]| {
        events
            .iter()
            .map(|e| (e.0, e.1.clone(), e.2.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(places(&handed), places(&expected));
    assert!(handed.iter().zip(&expected).all(|(a, b)| a.3 == b.3));
    let (_, reads, pulls, fallbacks) = stats(&counts);
    assert_eq!((reads, fallbacks), (0, 1));
    assert!(pulls >= 2, "{pulls} pulls");
}
