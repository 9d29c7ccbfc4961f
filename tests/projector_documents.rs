//! Document projections against real nats-servers: one KV entry per
//! document at production size, `get` and paged `list`, deletes that stay
//! deleted, a store that refuses writes (`failing`, `/readyz`, After-Seq
//! answered at once), a crash mid-batch, and an old one-value checkpoint
//! replaced by a rebuild.

mod common;

use common::*;
use jetsource::observability::{router, serve, Probes};
use jetsource::projector::control::generation_bucket;
use jetsource::projector::document::DocumentProjector;
use jetsource::projector::persisted::consumer_name;
use jetsource::projector::persisted::CHECKPOINT_KEY;
use jetsource::projector::store::DOCUMENT_CHECKPOINT_KEY;
use jetsource::projector::{
    Event, Follows, Meta, PersistedProjector, Phase, Projector, ProjectorConfig, ProjectorError,
    ProjectorErrorKind, ProjectorRuntime, Query, QueryError, RunningProjectors,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

// ---- the test projection -----------------------------------------------------

const STREAM: &str = "EVT_ITEM";

/// An item event: `ItemAdded {"n":…,"pad":…}`, `ItemTouched {}`,
/// `ItemRemoved {}`, on `evt.item.<id>.<type>`.
#[derive(Debug)]
struct ItemEvent {
    meta: Meta,
    n: u64,
    pad: String,
}

impl Follows for ItemEvent {
    fn aggregate_types() -> Vec<&'static str> {
        vec!["item"]
    }
    fn decode(event: &Event) -> Result<Option<Self>, ProjectorError> {
        let body: Value = event
            .json()
            .map_err(|e| ProjectorError::with_source(ProjectorErrorKind::Invalid, e))?;
        Ok(Some(ItemEvent {
            meta: Meta::of(event),
            n: body["n"].as_u64().unwrap_or(0),
            pad: body["pad"].as_str().unwrap_or("").to_string(),
        }))
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Item {
    n: u64,
    touched: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pad: String,
}

struct Items(&'static str);

impl DocumentProjector for Items {
    type Input = ItemEvent;
    type Document = Item;
    fn name(&self) -> &'static str {
        self.0
    }
    fn key(&self, input: &ItemEvent) -> Option<String> {
        Some(input.meta.aggregate_id.clone())
    }
    fn apply(&self, doc: Option<Item>, input: ItemEvent) -> Result<Option<Item>, ProjectorError> {
        match (input.meta.event_type.as_str(), doc) {
            ("ItemAdded", _) => Ok(Some(Item {
                n: input.n,
                touched: 0,
                pad: input.pad,
            })),
            ("ItemTouched", Some(item)) => Ok(Some(Item {
                touched: item.touched + 1,
                ..item
            })),
            ("ItemRemoved", Some(_)) => Ok(None),
            (other, _) => Err(ProjectorError::new(
                ProjectorErrorKind::Invalid,
                format!("{other} on a missing item"),
            )),
        }
    }
}

// ---- the scene ---------------------------------------------------------------

async fn scene() -> (
    NatsServer,
    async_nats::Client,
    async_nats::jetstream::Context,
) {
    let server = NatsServer::new();
    let client = connect(&server.client_url()).await;
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["evt.item.>".into()],
        // The events are the scene here, not what is measured.
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .expect("stream");
    (server, client, js)
}

/// Publishes `events` (`(id, type, body)`) straight to the stream, as
/// plain messages the stream captures (no ack each), a chunk at a time,
/// each chunk waited for until the stream holds it (which also keeps the
/// server's intake from overflowing); returns the last sequence. A message
/// the server dropped leaves the count short and the wait fails.
async fn publish(js: &async_nats::jetstream::Context, events: Vec<(String, &str, Value)>) -> u64 {
    let client = js.client();
    let mut stream = js.get_stream(STREAM).await.expect("stream");
    let mut want = stream.info().await.expect("info").state.last_sequence;
    for chunk in events.chunks(1000) {
        for (id, kind, body) in chunk {
            client
                .publish(format!("evt.item.{id}.{kind}"), body.to_string().into())
                .await
                .expect("publish");
        }
        client.flush().await.expect("flush");
        want += chunk.len() as u64;
        let target = want;
        eventually(format!("{STREAM} holding #{target}"), DEADLINE, || {
            let mut stream = stream.clone();
            async move {
                let last = stream.info().await.expect("info").state.last_sequence;
                (last >= target).then_some(())
            }
        })
        .await;
    }
    want
}

fn config() -> ProjectorConfig {
    ProjectorConfig {
        batch: 1000,
        max_ack_pending: 4000,
        lease_ttl: Duration::from_secs(1),
        ..ProjectorConfig::default()
    }
}

async fn start(
    client: &async_nats::Client,
    name: &'static str,
    config: ProjectorConfig,
) -> Projectors {
    Projectors::start(
        ProjectorRuntime::builder(client.clone())
            .config(config)
            .documents(Items(name)),
    )
    .await
}

/// Every document, read page by page; asserts each page's order.
async fn list_all(
    client: &async_nats::Client,
    name: &str,
    limit: u64,
) -> (Vec<(String, Item)>, usize) {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let body = match &after {
            Some(a) => json!({"limit": limit, "after": a}),
            None => json!({"limit": limit}),
        };
        let reply = client
            .request(format!("query.{name}.list"), body.to_string().into())
            .await
            .expect("an answer");
        assert!(reply.payload.len() <= client.server_info().max_payload);
        let answer: Value = serde_json::from_slice(&reply.payload).expect("JSON");
        assert_eq!(answer["status"], "ok", "{answer}");
        pages += 1;
        for item in answer["result"]["items"].as_array().expect("items") {
            let key = item["key"].as_str().expect("a key").to_string();
            let doc: Item = serde_json::from_value(item["document"].clone()).expect("an item");
            all.push((key, doc));
        }
        match answer["result"]["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    (all, pages)
}

async fn get(client: &async_nats::Client, name: &str, key: &str) -> Value {
    query(client, &format!("query.{name}.get.{key}"), None).await
}

// ---- tests -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_documents_are_stored_one_entry_each_and_listed_once() {
    const DOCS: u64 = 100_000;
    let (_server, client, js) = scene().await;
    let mut events: Vec<(String, &str, Value)> = (0..DOCS)
        .map(|i| (format!("i{i:06}"), "ItemAdded", json!({"n": i})))
        .collect();
    // Every tenth item touched once more.
    events.extend(
        (0..DOCS)
            .step_by(10)
            .map(|i| (format!("i{i:06}"), "ItemTouched", json!({}))),
    );
    let started = Instant::now();
    let head = publish(&js, events).await;
    let published = started.elapsed();
    let projectors = start(&client, "items", config()).await;
    projectors.wait_applied("items", STREAM, head).await;
    let projected = started.elapsed() - published;

    assert_eq!(
        get(&client, "items", "i000010").await["result"],
        json!({"n": 10, "touched": 1})
    );
    assert_eq!(
        get(&client, "items", "i000011").await["result"],
        json!({"n": 11, "touched": 0})
    );
    assert_eq!(
        get(&client, "items", "nothing").await["status"],
        "not_found"
    );
    assert_eq!(
        get(&client, "items", "_checkpoint").await["status"],
        "bad_request"
    );
    let bucket = js
        .get_key_value(generation_bucket("items", 0))
        .await
        .expect("bucket");
    let status = bucket.status().await.expect("bucket status");
    assert_eq!(
        status.values(),
        DOCS + 1,
        "one entry per document and a checkpoint"
    );

    // A restart resumes from the checkpoint: nothing applied again.
    projectors.stop().await.expect("stop");
    let projectors = start(&client, "items", config()).await;
    let more = publish(&js, vec![("i000011".into(), "ItemTouched", json!({}))]).await;
    let after = format!("{more}");
    let answer = query(&client, "query.items.get.i000011", Some(&after)).await;
    assert_eq!(answer["result"], json!({"n": 11, "touched": 1}), "{answer}");
    assert_eq!(
        get(&client, "items", "i000010").await["result"],
        json!({"n": 10, "touched": 1})
    );

    let listing = Instant::now();
    let (all, pages) = list_all(&client, "items", 50_000).await;
    let listed = listing.elapsed();
    assert_eq!(all.len() as u64, DOCS);
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "key order, each once"
    );
    for (key, item) in &all {
        let i: u64 = key[1..].parse().expect("a number");
        let touched = u64::from(i.is_multiple_of(10)) + u64::from(i == 11);
        assert_eq!((item.n, item.touched), (i, touched), "{key}");
    }
    let bad = client
        .request("query.items.list", r#"{"after":"..x"}"#.into())
        .await
        .expect("an answer");
    let bad: Value = serde_json::from_slice(&bad.payload).expect("JSON");
    assert_eq!(bad["status"], "bad_request");
    let page: Value = query(&client, "query.items.list", None).await;
    assert_eq!(page["result"]["items"].as_array().map(Vec::len), Some(100));
    assert_eq!(page["result"]["next"], "i000099");
    eprintln!(
        "{DOCS} documents ({head} events): published in {published:?}, projected in {projected:?}, \
         listed in {pages} pages in {listed:?}"
    );
    projectors.stop().await.expect("stop");
}

/// Puts generation 0 of `name` back to an empty checkpoint and a new
/// consumer, as if every event after its documents were written had been
/// lost before the checkpoint: the whole stream is delivered again.
async fn rewind(js: &async_nats::jetstream::Context, name: &str) {
    let stream = js.get_stream(STREAM).await.expect("stream");
    stream
        .delete_consumer(&consumer_name(name))
        .await
        .expect("consumer deleted");
    let bucket = js
        .get_key_value(generation_bucket(name, 0))
        .await
        .expect("bucket");
    bucket
        .put(
            DOCUMENT_CHECKPOINT_KEY,
            json!({"positions": {}, "state": null, "lease": 0})
                .to_string()
                .into(),
        )
        .await
        .expect("checkpoint rewound");
}

async fn keys(client: &async_nats::Client, name: &str) -> Vec<String> {
    list_all(client, name, 100)
        .await
        .0
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_document_is_not_listed_not_found_and_not_brought_back() {
    let (_server, client, js) = scene().await;
    let head = publish(
        &js,
        vec![
            ("a".into(), "ItemAdded", json!({"n": 1})),
            ("b".into(), "ItemAdded", json!({"n": 2})),
            ("c".into(), "ItemAdded", json!({"n": 3})),
            ("a".into(), "ItemRemoved", json!({})),
            ("c".into(), "ItemTouched", json!({})),
        ],
    )
    .await;
    let projectors = start(&client, "deletes", config()).await;
    projectors.wait_applied("deletes", STREAM, head).await;
    assert_eq!(get(&client, "deletes", "a").await["status"], "not_found");
    assert_eq!(keys(&client, "deletes").await, ["b", "c"]);
    projectors.stop().await.expect("stop");

    // Every event delivered again: the tombstone keeps `a` deleted, and no
    // document takes an event twice.
    rewind(&js, "deletes").await;
    let projectors = start(&client, "deletes", config()).await;
    projectors.wait_applied("deletes", STREAM, head).await;
    assert_eq!(get(&client, "deletes", "a").await["status"], "not_found");
    assert_eq!(keys(&client, "deletes").await, ["b", "c"]);
    assert_eq!(
        get(&client, "deletes", "c").await["result"],
        json!({"n": 3, "touched": 1})
    );
    projectors.stop().await.expect("stop");
}

async fn phase_of(running: &RunningProjectors, name: &str) -> (Phase, Option<String>) {
    let report = running.status().await;
    let p = report
        .projectors
        .into_iter()
        .find(|p| p.name == name)
        .expect("registered");
    (p.phase, p.error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_refusing_writes_is_failing_not_ready_and_answers_after_seq_at_once() {
    let (_server, client, js) = scene().await;
    // An operator's limit on the bucket: no value over 256 bytes.
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: generation_bucket("big", 0),
        history: 1,
        max_value_size: 256,
        ..Default::default()
    })
    .await
    .expect("bucket");
    publish(&js, vec![("s".into(), "ItemAdded", json!({"n": 1}))]).await;
    let head = publish(
        &js,
        vec![(
            "x".into(),
            "ItemAdded",
            json!({"n": 2, "pad": "p".repeat(1000)}),
        )],
    )
    .await;
    let config = ProjectorConfig {
        // Were an After-Seq query to wait, it would outlast the request.
        query_wait: Duration::from_secs(120),
        ..config()
    };
    let running = ProjectorRuntime::builder(client.clone())
        .config(config)
        .documents(Items("big"))
        .build()
        .await
        .expect("built")
        .start()
        .await
        .expect("started");
    let running = Arc::new(Mutex::new(Some(running)));
    let failing = eventually("the projection failing", HANG, || async {
        let guard = running.lock().await;
        let (phase, error) = phase_of(guard.as_ref().expect("running"), "big").await;
        (phase == Phase::Failing).then_some(error)
    })
    .await;
    assert!(failing.is_some(), "failing says why");

    let answer = query(&client, "query.big.get.x", Some(&head.to_string())).await;
    assert_eq!(answer["status"], "failing", "{answer}");
    assert!(answer["positions"].is_object());
    assert!(answer["reason"].is_string());
    // What is stored still answers.
    assert_eq!(
        get(&client, "big", "s").await["result"],
        json!({"n": 1, "touched": 0})
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("an address").to_string();
    let probes = Arc::new(Probes {
        client: client.clone(),
        streams: vec![STREAM.into()],
        feedback: None,
        projectors: Some(running.clone()),
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(serve(listener, router(probes), stopped));
    let (status, body) = http_get(&addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("projector big"), "{body}");
    let (_, metrics) = http_get(&addr, "/metrics").await;
    assert_eq!(
        sample(
            &metrics,
            "jetsource_projector_failing",
            &[("projector", "big")]
        ),
        1.0
    );

    // The limit lifted: the retries get through and it is live again.
    let mut kv_stream = js
        .get_stream(format!("KV_{}", generation_bucket("big", 0)))
        .await
        .expect("the bucket's stream");
    let mut stream_config = kv_stream.info().await.expect("info").config.clone();
    stream_config.max_message_size = -1;
    js.update_stream(stream_config).await.expect("limit lifted");
    eventually("the projection live again", HANG, || async {
        let guard = running.lock().await;
        let (phase, _) = phase_of(guard.as_ref().expect("running"), "big").await;
        (phase == Phase::Live).then_some(())
    })
    .await;
    let answer = query(&client, "query.big.get.x", Some(&head.to_string())).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(http_get(&addr, "/readyz").await.0, 200);

    let _ = stop.send(true);
    let _ = serving.await;
    let running = running.lock().await.take().expect("running");
    running.stop().await.expect("stop");
}

/// A one-value projection whose state grows by a large string per event.
#[derive(Clone, Default)]
struct Blob {
    state: Vec<String>,
}

impl Projector for Blob {
    fn name(&self) -> &'static str {
        "blob"
    }
    fn subjects(&self) -> Vec<String> {
        vec!["evt.item.>".into()]
    }
    fn apply(&mut self, event: &Event) -> Result<(), ProjectorError> {
        let body = event
            .json()
            .map_err(|e| ProjectorError::with_source(ProjectorErrorKind::Invalid, e))?;
        self.state
            .push(body["pad"].as_str().unwrap_or_default().to_string());
        Ok(())
    }
    fn query(&self, _: &Query) -> Result<Value, QueryError> {
        Ok(json!(self.state.len()))
    }
}

impl PersistedProjector for Blob {
    type State = Vec<String>;
    fn state(&self) -> &Vec<String> {
        &self.state
    }
    fn restore(&mut self, state: Vec<String>) {
        self.state = state;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_value_projection_outgrowing_max_payload_is_failing() {
    let (_server, client, js) = scene().await;
    let max = client.server_info().max_payload;
    let pad = "p".repeat(max / 3);
    let events = (0..4)
        .map(|i| (format!("b{i}"), "ItemAdded", json!({"n": i, "pad": pad})))
        .collect();
    let head = publish(&js, events).await;
    let projectors = Projectors::start(
        ProjectorRuntime::builder(client.clone())
            .config(config())
            .persisted(Blob::default()),
    )
    .await;
    let error = eventually("the projection failing", HANG, || async {
        let report = projectors.status().await;
        let p = &report.projectors[0];
        (p.phase == Phase::Failing).then(|| (p.error.clone(), p.streams[0].clone()))
    })
    .await;
    assert!(error.0.is_some(), "failing says why");
    assert!(
        error.1.applied_seq < head && error.1.lag > 0,
        "{:?}",
        error.1
    );
    let answer = query(&client, "query.blob.count", Some(&head.to_string())).await;
    assert_eq!(answer["status"], "failing", "{answer}");
    projectors.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_equal_the_fold_after_crashes_mid_batch() {
    const DOCS: u64 = 3_000;
    const TOUCHES: u64 = 3;
    let (_server, client, js) = scene().await;
    let mut events: Vec<(String, &str, Value)> = (0..DOCS)
        .map(|i| (format!("k{i:05}"), "ItemAdded", json!({"n": i})))
        .collect();
    for _ in 0..TOUCHES {
        events.extend((0..DOCS).map(|i| (format!("k{i:05}"), "ItemTouched", json!({}))));
    }
    let head = publish(&js, events).await;
    let small = ProjectorConfig {
        batch: 300,
        ..config()
    };
    // In-process crashes: the runtime is dropped while it writes a batch,
    // its lease left to run out.
    for crash in 1..=3u64 {
        let projectors = start(&client, "crashy", small.clone()).await;
        let mut applied = projectors.applied("crashy");
        let at = head * crash / 4;
        within(
            "progress",
            HANG,
            applied.wait_for(|p| p.get(STREAM).copied().unwrap_or(0) >= at),
        )
        .await
        .expect("running");
        projectors.abort();
    }
    let projectors = start(&client, "crashy", small).await;
    projectors.wait_applied("crashy", STREAM, head).await;
    let (all, _) = list_all(&client, "crashy", 10_000).await;
    assert_eq!(all.len() as u64, DOCS);
    for (key, item) in all {
        assert_eq!(
            item.touched, TOUCHES,
            "{key} took an event twice or missed one"
        );
    }
    projectors.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_one_value_checkpoint_is_not_misread_but_rebuilt_from_sequence_1() {
    let (_server, client, js) = scene().await;
    let head = publish(
        &js,
        (0..3)
            .map(|i| (format!("o{i}"), "ItemAdded", json!({"n": i})))
            .collect(),
    )
    .await;
    // What a one-value projection of the same name left: its record, and
    // a consumer that acknowledged everything.
    let bucket = js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: generation_bucket("old", 0),
            history: 1,
            ..Default::default()
        })
        .await
        .expect("bucket");
    bucket
        .put(
            CHECKPOINT_KEY,
            json!({"positions": {STREAM: head}, "state": {"count": 3}, "lease": 0})
                .to_string()
                .into(),
        )
        .await
        .expect("old record");
    let projectors = start(&client, "old", config()).await;
    projectors.wait_applied("old", STREAM, head).await;
    assert_eq!(keys(&client, "old").await, ["o0", "o1", "o2"]);
    let bucket = js
        .get_key_value(generation_bucket("old", 0))
        .await
        .expect("bucket");
    assert!(bucket.get(CHECKPOINT_KEY).await.expect("read").is_none());
    projectors.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_too_large_for_a_message_parks_its_event_and_the_others_go_on() {
    let (_server, client, js) = scene().await;
    let max = client.server_info().max_payload;
    // The event fits in a message; the document it makes, with its entry's
    // sequences, does not fit beside the KV headers.
    let big = "p".repeat(max - 200);
    let head = publish(
        &js,
        vec![
            ("small".into(), "ItemAdded", json!({"n": 1})),
            ("big".into(), "ItemAdded", json!({"n": 1})),
            ("big".into(), "ItemAdded", json!({"n": 2, "pad": big})),
            ("after".into(), "ItemAdded", json!({"n": 3})),
            ("big".into(), "ItemTouched", json!({})),
        ],
    )
    .await;
    let projectors = start(
        &client,
        "sized",
        ProjectorConfig {
            max_deliveries: 2,
            on_poison: jetsource::projector::OnPoison::Skip,
            ack_wait: Duration::from_secs(2),
            retry_backoff: Duration::from_millis(10),
            ..config()
        },
    )
    .await;
    projectors.wait_applied("sized", STREAM, head).await;
    let parked = jetsource::projector::parked::list(&client, "sized")
        .await
        .expect("list");
    assert_eq!(
        parked
            .iter()
            .map(|p| (p.seq, p.subject.as_str()))
            .collect::<Vec<_>>(),
        [(head - 2, "evt.item.big.ItemAdded")]
    );
    assert!(parked[0].error.contains("bytes"), "{}", parked[0].error);
    // Its record keeps the start of the body: a whole one would not fit.
    assert!(parked[0].body.len() < max / 2, "{}", parked[0].body.len());
    // The big document stays as it was before, and goes on from there.
    assert_eq!(
        get(&client, "sized", "big").await["result"],
        json!({"n": 1, "touched": 1}),
        "the document as it was, then touched"
    );
    assert_eq!(get(&client, "sized", "after").await["result"]["n"], 3);
    assert_eq!(get(&client, "sized", "small").await["result"]["n"], 1);
    let report = projectors.status().await;
    assert_ne!(report.projectors[0].phase, Phase::Failing);
    projectors.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_documents_larger_than_one_read_is_read_whole() {
    let (_server, client, js) = scene().await;
    // Eight documents of 600 KiB: more than one batched read brings.
    let pad = "q".repeat(600 * 1024);
    let added = (0..8)
        .map(|i| (format!("w{i}"), "ItemAdded", json!({"n": i, "pad": pad})))
        .collect();
    let head = publish(&js, added).await;
    let projectors = start(&client, "wide", config()).await;
    projectors.wait_applied("wide", STREAM, head).await;
    // One batch touching all eight reads them all back.
    let touched = (0..8)
        .map(|i| (format!("w{i}"), "ItemTouched", json!({})))
        .collect();
    let head = publish(&js, touched).await;
    projectors.wait_applied("wide", STREAM, head).await;
    for i in 0..8 {
        let doc = get(&client, "wide", &format!("w{i}")).await;
        assert_eq!(
            (&doc["result"]["n"], &doc["result"]["touched"]),
            (&i.into(), &1.into()),
            "w{i}"
        );
        assert_eq!(doc["result"]["pad"].as_str().map(str::len), Some(pad.len()));
    }
    projectors.stop().await.expect("stop");
}
