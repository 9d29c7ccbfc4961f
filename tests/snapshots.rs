//! Snapshots of long-lived aggregates: written every N events, read by a
//! process meeting a long history, and never used unless all of one reads
//! back and matches the stream.

mod common;

use common::*;
use jetsource::handlers::store::{AppendMeta, NewEvent};
use jetsource::schemas::CommandReply;
use jetsource::RuntimeConfig;
use std::time::{Duration, Instant};

/// Events the seeded post has: past the first direct-get batch by more
/// than `CONSUMER_MIN_PENDING`, so a cold load asks for a snapshot.
const HISTORY: u64 = 700;

fn config(every: u64) -> RuntimeConfig {
    let mut config = RuntimeConfig::default();
    config.handler.snapshots.every = every;
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
        let meta = AppendMeta {
            command_id: &command_id,
            correlation_id: None,
            causation_id: None,
            event_version: 1,
        };
        let event = NewEvent {
            event_type: event_type.into(),
            body: body.into(),
        };
        last = js
            .store
            .append("blogpost", id, last, &[event], &meta)
            .await
            .expect("append")[0];
    }
    last
}

async fn bucket(client: &async_nats::Client) -> async_nats::jetstream::kv::Store {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(kv) = async_nats::jetstream::new(client.clone())
            .get_key_value("jetsource_snapshots_blogpost")
            .await
        {
            return kv;
        }
        assert!(Instant::now() < deadline, "no snapshot bucket");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The snapshot of post `id` once one at `seq` or later is stored.
async fn snapshot_at(js: &Jetsource, id: &str, seq: u64) -> serde_json::Value {
    let kv = bucket(&js.client).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(bytes)) = kv.get(id).await {
            let record: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            if record["seq"].as_u64() >= Some(seq) {
                return record;
            }
        }
        assert!(Instant::now() < deadline, "no snapshot at {seq}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn change_title(
    client: &jetsource::client::CommandClient,
    id: &str,
    command_id: &str,
    title: &str,
) -> CommandReply {
    client
        .send(
            "blogpost",
            id,
            "change_title",
            serde_json::json!({ "title": title }).to_string(),
            &with_id(command_id),
        )
        .await
        .expect("a reply")
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
        client
            .send(
                "blogpost",
                "long",
                "create",
                r#"{"title":"t0","body":"b"}"#.to_string(),
                &with_id("seed-0"),
            )
            .await
            .expect("a reply"),
    );
    assert!(resent.duplicate);
    let next = accepted(change_title(&client, "long", "c-2", "from the snapshot on").await);
    assert_eq!(next.events[0].seq, seq + 1);
    second.stop().await;

    // A `create` is appended without a load first; its conflict then loads
    // the post as a cold load does, from the snapshot too.
    let third = Jetsource::start_with(&url, config(100)).await;
    let create = client
        .send(
            "blogpost",
            "long",
            "create",
            r#"{"title":"again","body":"b"}"#.to_string(),
            &with_id("ghost-create"),
        )
        .await
        .expect("a reply");
    assert!(accepted(create).duplicate);
    third.stop().await;
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
    assert!(ignored >= ignored_before + 5);
}

#[tokio::test]
async fn warming_loads_an_aggregate_ahead_of_its_first_command() {
    use jetsource::handlers::handler::{
        AggregateHandler, CommandRequest, HandlerConfig, WarmErrorKind,
    };
    use std::sync::atomic::Ordering;

    let server = NatsServer::new();
    let js = Jetsource::start_with(&server.client_url(), config(0)).await;
    let last = seed(&js, "warm").await;
    let handler = AggregateHandler::<jetsource::blog::BlogPost>::new(
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
        })
        .await;
    assert_eq!(accepted(reply).events[0].seq, last + 1);
    assert_eq!(stats.direct_requests.load(Ordering::Relaxed), reads);
    js.stop().await;
}
