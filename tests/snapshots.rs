//! Snapshots of long-lived aggregates: written every N events, read by a
//! process meeting a long history, and never used unless all of one reads
//! back and matches the stream.

mod common;

use common::*;
use jetsource::schemas::CommandReply;
use jetsource::RuntimeConfig;
use std::time::Duration;

/// Events the seeded post has: past the first direct-get batch by more
/// than `CONSUMER_MIN_PENDING`, so a cold load asks for a snapshot.
const HISTORY: u64 = 700;

fn config(every: u64) -> RuntimeConfig {
    let mut config = RuntimeConfig::default();
    config.handler.snapshots.every = every;
    config
}

/// Snapshots every `every` events with `per_chunk` commands a chunk.
fn chunked(every: u64, per_chunk: usize) -> RuntimeConfig {
    let mut config = config(every);
    config.handler.snapshots.commands_per_chunk = per_chunk;
    config
}

/// Appends a post's history straight to the store: `create` as
/// `seed-0`, then title changes `seed-1` … Returns the last sequence.
async fn seed(js: &Jetsource, id: &str) -> u64 {
    let mut last = 0;
    for i in 0..HISTORY {
        let (event_type, body) = if i == 0 {
            (
                "BlogPostCreated",
                r#"{"title":"t0","body":"b"}"#.to_string(),
            )
        } else {
            ("BlogPostTitleChanged", format!(r#"{{"title":"t{i}"}}"#))
        };
        let command_id = format!("seed-{i}");
        let event = new_event(event_type, body);
        last = js
            .store
            .append("blogpost", id, last, &[event], &meta(&command_id))
            .await
            .expect("append")[0];
    }
    last
}

async fn bucket(client: &async_nats::Client) -> async_nats::jetstream::kv::Store {
    let js = &async_nats::jetstream::new(client.clone());
    eventually(
        "the snapshot bucket",
        Duration::from_secs(10),
        || async move { js.get_key_value("jetsource_snapshots_blogpost").await.ok() },
    )
    .await
}

/// The snapshot of post `id` once one at `seq` or later is stored.
async fn snapshot_at(js: &Jetsource, id: &str, seq: u64) -> serde_json::Value {
    let kv = &bucket(&js.client).await;
    let stored = format!("a snapshot of {id} at {seq}");
    eventually(stored, Duration::from_secs(10), || async move {
        let bytes = kv.get(id).await.ok()??;
        let record: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        (record["seq"].as_u64() >= Some(seq)).then_some(record)
    })
    .await
}

async fn change_title(
    client: &jetsource::client::CommandClient,
    id: &str,
    command_id: &str,
    title: &str,
) -> CommandReply {
    let body = serde_json::json!({ "title": title }).to_string();
    send_with(client, id, "change_title", body, &with_id(command_id)).await
}

#[tokio::test]
async fn a_long_history_gets_a_snapshot_that_a_new_process_starts_from() {
    let server = NatsServer::new();
    let url = server.client_url();
    let first = Jetsource::start_with(&url, config(100)).await;
    let last = seed(&first, "long").await;
    let client = commands(&url).await;
    // The first command loads the whole history, 700 events past any
    // snapshot: once accepted, the post's snapshot is written.
    let reply = accepted(change_title(&client, "long", "c-1", "after seeding").await);
    let seq = reply.events[0].seq;
    assert_eq!(seq, last + 1);
    let record = snapshot_at(&first, "long", seq).await;
    assert_eq!(record["version"], 1);
    // Folded from events read at today's version (the seeded ones were
    // stored at version 1 and upcast).
    assert_eq!(record["event_version"], 2);
    assert_eq!(record["seq"], seq);
    assert_eq!(
        record["state"],
        serde_json::json!({"exists": true, "title": "after seeding", "published": false})
    );
    // The whole idempotency record: every seeded command and c-1.
    let commands = record["commands"].as_array().expect("commands");
    assert_eq!(commands.len() as u64, HISTORY + 1);
    assert!(commands.contains(&serde_json::json!(["seed-0", 1, "BlogPostCreated"])));
    first.stop().await;

    // A command id only the snapshot knows proves a new process read it.
    let admin = async_nats::connect(&url).await.expect("connect");
    let kv = bucket(&admin).await;
    let mut tampered = record.clone();
    let known = tampered["commands"].as_array_mut().expect("commands");
    known.push(serde_json::json!(["ghost", 2, "BlogPostTitleChanged"]));
    known.push(serde_json::json!(["ghost-create", 1, "BlogPostCreated"]));
    kv.put("long", tampered.to_string().into())
        .await
        .expect("put");
    let second = Jetsource::start_with(&url, config(100)).await;
    let ghost = accepted(change_title(&client, "long", "ghost", "ghost title").await);
    assert!(ghost.duplicate, "the snapshot's record answers the resend");
    assert_eq!(ghost.events[0].seq, 2);
    // A command from before the snapshot is known too, and the state goes
    // on from the snapshot's sequence.
    let resent = accepted(
        send_with(
            &client,
            "long",
            "create",
            r#"{"title":"t0","body":"b"}"#.to_string(),
            &with_id("seed-0"),
        )
        .await,
    );
    assert!(resent.duplicate);
    let next = accepted(change_title(&client, "long", "c-2", "from the snapshot on").await);
    assert_eq!(next.events[0].seq, seq + 1);
    second.stop().await;

    // A `create` is appended without a load first; its conflict then loads
    // the post as a cold load does, from the snapshot too.
    let third = Jetsource::start_with(&url, config(100)).await;
    let create = send_with(
        &client,
        "long",
        "create",
        r#"{"title":"again","body":"b"}"#.to_string(),
        &with_id("ghost-create"),
    )
    .await;
    assert!(accepted(create).duplicate);
    third.stop().await;
}

/// Chunk `n` of post `id`'s record at 64 commands a chunk, when stored.
async fn chunk(
    kv: &async_nats::jetstream::kv::Store,
    id: &str,
    n: usize,
) -> Option<serde_json::Value> {
    let bytes = kv
        .get(format!("{id}.commands.64.{n}"))
        .await
        .expect("get")?;
    Some(serde_json::from_slice(&bytes).expect("json"))
}

#[tokio::test]
async fn a_long_record_is_kept_in_chunks_that_every_process_writes_alike() {
    let server = NatsServer::new();
    let url = server.client_url();
    let first = Jetsource::start_with(&url, chunked(100, 64)).await;
    seed(&first, "long").await;
    let client = commands(&url).await;
    let seq = accepted(change_title(&client, "long", "c-1", "after seeding").await).events[0].seq;
    // 701 commands: ten full chunks of 64, in stream order, and 61 after.
    let record = snapshot_at(&first, "long", seq).await;
    first.stop().await;
    let kv = bucket(&async_nats::connect(&url).await.expect("connect")).await;
    assert_eq!(record["chunk_size"], 64);
    let lasts: Vec<u64> = serde_json::from_value(record["chunks"].clone()).expect("chunks");
    assert_eq!(lasts, (1..=10).map(|n| n * 64).collect::<Vec<_>>());
    let tail = record["commands"].as_array().expect("commands");
    assert_eq!(tail.len(), 61);
    assert_eq!(
        tail[0],
        serde_json::json!(["seed-640", 641, "BlogPostTitleChanged"])
    );
    assert_eq!(
        tail[60],
        serde_json::json!(["c-1", seq, "BlogPostTitleChanged"])
    );
    let original = chunk(&kv, "long", 0).await.expect("chunk 0");
    assert_eq!(original.as_array().map(Vec::len), Some(64));
    assert_eq!(
        original[0],
        serde_json::json!(["seed-0", 1, "BlogPostCreated"])
    );
    assert_eq!(
        original[63],
        serde_json::json!(["seed-63", 64, "BlogPostTitleChanged"])
    );
    assert!(chunk(&kv, "long", 10).await.is_none());

    // A command id only chunk 0 knows proves a new process read it.
    let mut tampered = original.clone();
    tampered[5] = serde_json::json!(["ghost", 6, "BlogPostTitleChanged"]);
    kv.put("long.commands.64.0", tampered.to_string().into())
        .await
        .expect("put");
    let second = Jetsource::start_with(&url, chunked(u64::MAX, 64)).await;
    let ghost = accepted(change_title(&client, "long", "ghost", "ghost title").await);
    assert!(ghost.duplicate, "chunk 0 answers the resend");
    assert_eq!(ghost.events[0].seq, 6);
    let tail_known = accepted(change_title(&client, "long", "seed-650", "again").await);
    assert!(
        tail_known.duplicate,
        "the snapshot's own commands answer too"
    );
    second.stop().await;

    // A chunk not as the snapshot lists it (one command short, or ending
    // at another sequence: another history's) is not used, nor is the
    // snapshot.
    let mut short = original.clone();
    short.as_array_mut().expect("chunk").remove(0);
    let mut other = original.clone();
    other[63][1] = 65.into();
    for (n, mut wrong) in [short, other].into_iter().enumerate() {
        let ghost = format!("ghost-wrong-{n}");
        wrong[4] = serde_json::json!([ghost, 6, "BlogPostTitleChanged"]);
        kv.put("long.commands.64.0", wrong.to_string().into())
            .await
            .expect("put");
        let runtime = Jetsource::start_with(&url, chunked(u64::MAX, 64)).await;
        let fresh = accepted(change_title(&client, "long", &ghost, &ghost).await);
        assert!(
            !fresh.duplicate,
            "a snapshot with a wrong chunk {n} was used"
        );
        runtime.stop().await;
    }

    // Without one of its chunks the snapshot is not used either: the
    // history is replayed (the ghost is a new command now), and the next
    // snapshot writes every chunk again, as the history has them.
    kv.put("long.commands.64.0", tampered.to_string().into())
        .await
        .expect("put");
    kv.purge("long.commands.64.3").await.expect("purge");
    let third = Jetsource::start_with(&url, chunked(100, 64)).await;
    let fresh = accepted(change_title(&client, "long", "ghost", "ghost title").await);
    assert!(!fresh.duplicate, "a snapshot missing a chunk was used");
    let resent = accepted(change_title(&client, "long", "seed-200", "again").await);
    assert!(resent.duplicate, "the replay knows every command");
    snapshot_at(&third, "long", fresh.events[0].seq).await;
    third.stop().await;
    assert_eq!(chunk(&kv, "long", 0).await, Some(original));
    assert_eq!(
        chunk(&kv, "long", 3).await.map(|c| c[0].clone()),
        Some(serde_json::json!(["seed-192", 193, "BlogPostTitleChanged"]))
    );
}

/// A case's stored snapshot, given the command id only it records.
type Variant<'a> = Box<dyn Fn(&str) -> String + 'a>;

#[tokio::test]
async fn a_snapshot_is_used_only_when_all_of_it_reads_and_matches_the_stream() {
    let server = NatsServer::new();
    let url = server.client_url();
    // Snapshots are read, never written here: every one below is by hand.
    let setup = Jetsource::start_with(&url, config(u64::MAX)).await;
    let last = seed(&setup, "long").await;
    let client = commands(&url).await;
    let other = create(&client, "other").await.events[0].seq;
    setup.stop().await;
    let admin = async_nats::connect(&url).await.expect("connect");
    let kv = async_nats::jetstream::new(admin)
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "jetsource_snapshots_blogpost".into(),
            history: 1,
            ..Default::default()
        })
        .await
        .expect("bucket");
    let good = move |ghost: &str| {
        serde_json::json!({
            "version": 1,
            "event_version": 2,
            "seq": last,
            "state": {"exists": true, "title": "from a snapshot", "published": false},
            "commands": [["seed-0", 1, "BlogPostCreated"], [ghost, 2, "BlogPostTitleChanged"]],
        })
    };
    let cases: Vec<(&str, Variant<'_>, bool)> = vec![
        ("usable", Box::new(|g| good(g).to_string()), true),
        (
            "of another version",
            Box::new(|g| {
                let mut r = good(g);
                r["version"] = 2.into();
                r.to_string()
            }),
            false,
        ),
        (
            // As a release before events were versioned wrote it: its
            // state was folded from version 1 events, read as they were.
            "folded from version 1 events",
            Box::new(|g| {
                let mut r = good(g);
                r.as_object_mut().map(|r| r.remove("event_version"));
                r.to_string()
            }),
            false,
        ),
        (
            "at another aggregate's event",
            Box::new(move |g| {
                let mut r = good(g);
                r["seq"] = other.into();
                r.to_string()
            }),
            false,
        ),
        (
            "past the stream's end",
            Box::new(|g| {
                let mut r = good(g);
                r["seq"] = 1_000_000.into();
                r.to_string()
            }),
            false,
        ),
        (
            "whose state does not read",
            Box::new(|g| {
                let mut r = good(g);
                r["state"] = serde_json::json!({"title": 5});
                r.to_string()
            }),
            false,
        ),
        ("not JSON", Box::new(|_| "not json".to_string()), false),
    ];
    let metrics = jetsource::handlers::metrics::global();
    metrics.set_recording(true);
    let (read_before, ignored_before, _) = metrics.snapshot_counts();
    for (n, (case, record, used)) in cases.iter().enumerate() {
        let ghost = format!("ghost-{n}");
        kv.put("long", record(&ghost).into()).await.expect("put");
        // A new runtime: the post is not in its cache.
        let runtime = Jetsource::start_with(&url, config(u64::MAX)).await;
        let reply = accepted(change_title(&client, "long", &ghost, &format!("case {n}")).await);
        assert_eq!(reply.duplicate, *used, "a snapshot {case}");
        runtime.stop().await;
    }
    // Other tests of this binary may count too, never fewer.
    let (read, ignored, _) = metrics.snapshot_counts();
    assert!(read > read_before);
    assert!(ignored >= ignored_before + 6);
}

#[tokio::test]
async fn warming_loads_an_aggregate_ahead_of_its_first_command() {
    use jetsource::handlers::command::{
        AggregateHandler, CommandRequest, HandlerConfig, WarmErrorKind,
    };
    use std::sync::atomic::Ordering;

    let server = NatsServer::new();
    let js = Jetsource::start_with(&server.client_url(), config(0)).await;
    let last = seed(&js, "warm").await;
    let handler = AggregateHandler::<jetsource_reference::blog::BlogPost>::new(
        js.store.clone(),
        HandlerConfig::default(),
    );
    assert_eq!(handler.warm("warm").await.expect("warm"), last);
    assert_eq!(handler.warm("never-written").await.expect("warm"), 0);
    assert_eq!(
        handler.warm("not.a.token").await.map_err(|e| e.kind()),
        Err(WarmErrorKind::BadId)
    );
    // The command finds the state in memory: no read.
    let stats = js.store.load_stats();
    let reads = stats.direct_requests.load(Ordering::Relaxed);
    let reply = handler
        .process(&CommandRequest {
            aggregate_id: "warm",
            command: "change_title",
            body: br#"{"title":"warmed"}"#,
            command_id: "after-warming".into(),
            correlation_id: None,
            causation_id: None,
            expected_seq: Some(last),
            traceparent: None,
        })
        .await;
    assert_eq!(accepted(reply).events[0].seq, last + 1);
    assert_eq!(stats.direct_requests.load(Ordering::Relaxed), reads);
    js.stop().await;
}
