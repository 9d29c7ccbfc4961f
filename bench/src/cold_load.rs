//! `cold_load`: a blog handler with an empty cache loading one 10,000-event
//! aggregate (`AggregateHandler::warm`: its reads, decoding, applying, the
//! command-id record), against the bare reads with no decoding: a pull
//! consumer by hand (`raw_consumer_load`, the baseline: what jetsource's
//! loads use past their first batch) and batched direct gets by hand
//! (`raw_cold_load`). Then `cold_load_snapshot`: the same aggregate loaded
//! from a snapshot and the 500 events after it.
//!
//! The events are seeded through [`EventStore::append`], one command each,
//! so they carry the headers jetsource writes (the command id and the
//! expected-sequence check), which every read parses.

use super::env::Env;
use super::report::Figure;
use super::BenchError;
use super::BenchErrorExt as _;
use bytes::Bytes;
use futures::StreamExt;
use jetsource_handlers::command::{AggregateHandler, CommandRequest, HandlerConfig};
use jetsource_handlers::snapshot::SnapshotConfig;
use jetsource_handlers::store::{self, AppendMeta, EventStore, NewEvent};
use jetsource_handlers::Aggregate;
use jetsource_reference::blog::BlogPost;
use jetsource_schemas::{subject, CommandReply};
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// Events of the aggregate loaded.
pub const EVENTS: u64 = 10_000;
/// Events after the snapshot in `cold_load_snapshot`: half the default
/// snapshot interval, the average a load meets.
pub const SNAPSHOT_TAIL: u64 = 500;

fn repetitions(env: &Env) -> usize {
    if env.settings.quick {
        5
    } else {
        20
    }
}

/// Seeds the aggregate and measures the three loads, alternating.
pub async fn cold_load(env: &mut Env) -> Result<Vec<Figure>, BenchError> {
    env.ensure_jetsource().await?;
    let id = format!("cold-{}", env.run_id);
    let store = EventStore::new(env.admin.clone(), Duration::from_secs(10))
        .await
        .map_err(BenchError::nats)?;
    let last = append_events(&store, &id, 0..EVENTS, 0).await?;
    let mut raw = Timings::default();
    let mut consumer = Timings::default();
    let mut load = Timings::default();
    for _ in 0..repetitions(env) {
        let started = consumer.start(env);
        let n = raw_consumer(env, &id).await?;
        consumer.stop(env, started);
        check(n)?;
        let started = raw.start(env);
        let n = raw_direct_get(env, &id).await?;
        raw.stop(env, started);
        check(n)?;
        let handler = handler(&store, 0);
        let started = load.start(env);
        let seq = warm(&handler, &id).await?;
        load.stop(env, started);
        check_seq(seq, last)?;
    }
    let raw = raw.figure("raw_cold_load");
    let consumer = consumer.figure("raw_consumer_load").against(&raw);
    let load = load.figure("cold_load").against(&consumer);
    let vs_direct_get = ratio(&load, &raw);
    let load = load.with("vs_direct_get", vs_direct_get);
    let snapshot = from_snapshot(env, &store, &id, last).await?.against(&load);
    Ok(vec![raw, consumer, load, snapshot])
}

/// `cold_load_snapshot`: a handler writes the aggregate's snapshot after a
/// command, [`SNAPSHOT_TAIL`] more events are appended, and fresh handlers
/// load it from the snapshot and the events after it. Each load includes
/// the handler opening the snapshot bucket (one request).
async fn from_snapshot(
    env: &Env,
    store: &EventStore,
    id: &str,
    last: u64,
) -> Result<Figure, BenchError> {
    let writer = handler(store, 1_000);
    let command_id = uuid::Uuid::new_v4().to_string();
    let reply = writer
        .process(&CommandRequest {
            aggregate_id: id,
            command: "change_title",
            body: br#"{"title":"The snapshot's title"}"#,
            command_id: Cow::Borrowed(&command_id),
            correlation_id: None,
            causation_id: None,
            expected_seq: None,
            traceparent: None,
        })
        .await;
    let seq = match reply {
        CommandReply::Accepted(a) => a.events.last().map_or(last, |e| e.seq),
        CommandReply::Rejected(r) => {
            return Err(BenchError::failed(format!(
                "the snapshot's command was rejected: {}",
                r.reason
            )))
        }
    };
    let chunks = wait_for_snapshot(env, id, seq).await?;
    let last = append_events(store, id, EVENTS + 1..EVENTS + 1 + SNAPSHOT_TAIL, seq).await?;
    let mut loads = Timings::default();
    for _ in 0..repetitions(env) {
        // Reads snapshots, never writes one.
        let handler = handler(store, u64::MAX);
        let started = loads.start(env);
        let loaded = warm(&handler, id).await?;
        loads.stop(env, started);
        check_seq(loaded, last)?;
    }
    let mut figure = loads.figure("cold_load_snapshot");
    figure.count = Some(EVENTS + 1 + SNAPSHOT_TAIL);
    Ok(figure.with("tail", SNAPSHOT_TAIL).with("chunks", chunks))
}

/// Waits until the aggregate's snapshot covers `seq`; returns how many
/// chunks of its command record it lists.
async fn wait_for_snapshot(env: &Env, id: &str, seq: u64) -> Result<usize, BenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let js = env.jetstream();
    while Instant::now() < deadline {
        if let Ok(kv) = js.get_key_value("jetsource_snapshots_blogpost").await {
            if let Ok(Some(bytes)) = kv.get(id).await {
                let record: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(BenchError::failed_display)?;
                if record["seq"].as_u64() >= Some(seq) {
                    return Ok(record["chunks"].as_array().map_or(0, Vec::len));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(BenchError::failed("no snapshot was written"))
}

/// A blog handler of its own (an empty state cache) over `store`, taking
/// a snapshot every `snapshot_every` events (0: snapshots off).
fn handler(store: &EventStore, snapshot_every: u64) -> AggregateHandler<BlogPost> {
    let config = HandlerConfig {
        snapshots: SnapshotConfig {
            every: snapshot_every,
            ..SnapshotConfig::default()
        },
        ..HandlerConfig::default()
    };
    AggregateHandler::new(store.clone(), config)
}

/// The handler's cold load of `id`: its last sequence.
async fn warm(handler: &AggregateHandler<BlogPost>, id: &str) -> Result<u64, BenchError> {
    handler
        .warm(id)
        .await
        .map_err(|e| BenchError::failed(format!("loading {id}: {e}")))
}

fn check_seq(loaded: u64, last: u64) -> Result<(), BenchError> {
    if loaded == last {
        Ok(())
    } else {
        Err(BenchError::failed(format!(
            "loaded up to sequence {loaded} instead of {last}"
        )))
    }
}

fn check(n: u64) -> Result<(), BenchError> {
    if n == EVENTS {
        Ok(())
    } else {
        Err(BenchError::failed(format!(
            "loaded {n} events instead of {EVENTS}"
        )))
    }
}

/// How many times faster `a` loaded than `b` (rounded to 3 places).
fn ratio(a: &Figure, b: &Figure) -> f64 {
    match (a.p50_ms, b.p50_ms) {
        (Some(a), Some(b)) if a > 0.0 => (b / a * 1000.0).round() / 1000.0,
        _ => 0.0,
    }
}

/// One command per event, each appended with the expected-sequence check
/// as the handler appends it: event 0 creates the post, the others change
/// its title. Returns the last stream sequence.
async fn append_events(
    store: &EventStore,
    id: &str,
    events: std::ops::Range<u64>,
    mut last: u64,
) -> Result<u64, BenchError> {
    for i in events {
        let (event_type, body) = if i == 0 {
            ("BlogPostCreated", super::workload::created_event(id))
        } else {
            (
                "BlogPostTitleChanged",
                Bytes::from(format!(r#"{{"title":"Title number {i}"}}"#)),
            )
        };
        let command_id = uuid::Uuid::new_v4().to_string();
        let meta = AppendMeta {
            command_id: &command_id,
            correlation_id: None,
            causation_id: None,
            event_version: 1,
            traceparent: None,
        };
        let event = NewEvent {
            event_type: event_type.to_string(),
            body,
        };
        let seqs = store
            .append(BlogPost::TYPE, id, last, &[event], &meta)
            .await
            .map_err(BenchError::nats)?;
        last = seqs.last().copied().unwrap_or(last);
    }
    Ok(last)
}

/// One contender's load times and the CPU its loads cost.
#[derive(Default)]
struct Timings {
    times: Vec<Duration>,
    own_ticks: u64,
    server_ticks: u64,
}

impl Timings {
    fn start(&self, env: &Env) -> (Instant, (Option<u64>, Option<u64>)) {
        (Instant::now(), env.cpu_ticks())
    }

    fn stop(&mut self, env: &Env, (started, ticks): (Instant, (Option<u64>, Option<u64>))) {
        self.times.push(started.elapsed());
        let (own, server) = env.cpu_ticks();
        let spent = |before: Option<u64>, after: Option<u64>| {
            after.zip(before).map_or(0, |(a, b)| a.saturating_sub(b))
        };
        self.own_ticks += spent(ticks.0, own);
        self.server_ticks += spent(ticks.1, server);
    }

    /// p50 and slowest load, with `cpu_ms` (this process: the reading
    /// client) and `server_cpu_ms` per load.
    fn figure(mut self, name: &str) -> Figure {
        self.times.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let p50 = self
            .times
            .get(self.times.len() / 2)
            .copied()
            .unwrap_or_default();
        let p99 = self.times.last().copied().unwrap_or_default();
        let loads = self.times.len().max(1) as f64;
        let per_load = |ticks: u64| {
            let ms = ticks as f64 / super::env::TICKS_PER_SECOND * 1000.0 / loads;
            (ms * 10.0).round() / 10.0
        };
        let mut figure = Figure::named(name);
        figure.count = Some(EVENTS);
        figure.rate = Some(EVENTS as f64 / p50.as_secs_f64().max(f64::EPSILON));
        figure.p50_ms = Some(ms(p50));
        figure.p99_ms = Some(ms(p99));
        let mut figure = figure.with("loads", self.times.len() as u64);
        if self.own_ticks > 0 {
            figure = figure.with("cpu_ms", per_load(self.own_ticks));
        }
        if self.server_ticks > 0 {
            figure = figure.with("server_cpu_ms", per_load(self.server_ticks));
        }
        figure
    }
}

/// ADR-31 batched direct gets by hand: the least work that reads the events.
async fn raw_direct_get(env: &Env, id: &str) -> Result<u64, BenchError> {
    let client = &env.admin;
    let api = format!("$JS.API.DIRECT.GET.{}", subject::stream_name("blogpost"));
    let filter = format!("evt.blogpost.{id}.*");
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(BenchError::nats)?;
    let mut from = 1u64;
    let mut n = 0u64;
    loop {
        // The batch jetsource's loads ask for, so the two read alike.
        let request = format!(
            r#"{{"seq":{from},"next_by_subj":"{filter}","batch":{},"max_bytes":{}}}"#,
            store::LOAD_BATCH,
            store::LOAD_BATCH_BYTES
        );
        client
            .publish_with_reply(api.clone(), inbox.clone(), request.into())
            .await
            .map_err(BenchError::nats)?;
        let mut more = false;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), replies.next())
                .await
                .map_err(|_| BenchError::failed("direct get timed out"))?
                .ok_or_else(|| BenchError::failed("subscription closed"))?;
            match message.status.map(|s| s.as_u16()) {
                Some(404) => break,
                Some(204) => {
                    more = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Num-Pending"))
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                        .unwrap_or(0)
                        > 0;
                    break;
                }
                _ => {}
            }
            let seq = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Sequence"))
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .ok_or_else(|| BenchError::failed("no Nats-Sequence"))?;
            from = seq + 1;
            n += 1;
        }
        if !more {
            let _ = replies.unsubscribe().await;
            return Ok(n);
        }
    }
}

/// A pull consumer by hand: created, pulled in one batch, deleted; each
/// message's position read from its reply subject, nothing decoded.
async fn raw_consumer(env: &Env, id: &str) -> Result<u64, BenchError> {
    let client = &env.admin;
    let stream = subject::stream_name("blogpost");
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(BenchError::nats)?;
    let name = uuid::Uuid::new_v4().simple().to_string();
    let config = serde_json::json!({"stream_name": stream, "config": {
        "name": name, "deliver_policy": "all", "ack_policy": "none",
        "filter_subject": format!("evt.blogpost.{id}.*"), "mem_storage": true,
        "num_replicas": 1, "replay_policy": "instant"}});
    let created = client
        .request(
            format!("$JS.API.CONSUMER.CREATE.{stream}.{name}"),
            config.to_string().into(),
        )
        .await
        .map_err(BenchError::nats)?;
    let info: serde_json::Value =
        serde_json::from_slice(&created.payload).map_err(BenchError::failed_display)?;
    let pending = info["num_pending"]
        .as_u64()
        .ok_or_else(|| BenchError::failed(format!("consumer creation: {info}")))?;
    let pull = serde_json::json!({"batch": pending, "expires": 10_000_000_000u64});
    client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"),
            inbox,
            pull.to_string().into(),
        )
        .await
        .map_err(BenchError::nats)?;
    let mut n = 0u64;
    while n < pending {
        let message = tokio::time::timeout(Duration::from_secs(10), replies.next())
            .await
            .map_err(|_| BenchError::failed("pull timed out"))?
            .ok_or_else(|| BenchError::failed("subscription closed"))?;
        // `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...`
        let seq = message
            .reply
            .as_deref()
            .and_then(|r| r.split('.').nth(5))
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| BenchError::failed("message without a position"))?;
        std::hint::black_box(seq);
        n += 1;
    }
    let _ = replies.unsubscribe().await;
    // Deleted without waiting for the answer, as jetsource's loads do.
    client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.DELETE.{stream}.{name}"),
            client.new_inbox(),
            Bytes::new(),
        )
        .await
        .map_err(BenchError::nats)?;
    Ok(n)
}
