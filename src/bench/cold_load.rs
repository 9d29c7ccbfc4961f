//! `cold_load`: reading one 10,000-event aggregate into the handler's state
//! (EventStore::load, decode, apply), against the same batched direct gets
//! sent by hand with no decoding (`raw_cold_load`).

use super::env::Env;
use super::report::Figure;
use super::BenchErrorExt as _;
use super::{seed, BenchError};
use crate::blog::{BlogPost, BlogPostEvent};
use bytes::Bytes;
use futures::StreamExt;
use jetsource_handlers::codec;
use jetsource_handlers::store::{self, EventStore};
use jetsource_handlers::Aggregate;
use jetsource_schemas::subject;
use std::time::{Duration, Instant};

/// Events of the aggregate loaded.
pub const EVENTS: u64 = 10_000;

fn repetitions(env: &Env) -> usize {
    if env.settings.quick {
        5
    } else {
        20
    }
}

/// Seeds the aggregate and measures both loads, alternating.
pub async fn cold_load(env: &mut Env) -> Result<Vec<Figure>, BenchError> {
    env.ensure_jetsource().await?;
    let id = format!("cold-{}", env.run_id);
    seed::publish_all(
        &env.jetstream(),
        (0..EVENTS).map(|i| {
            if i == 0 {
                (
                    format!("evt.blogpost.{id}.BlogPostCreated"),
                    super::workload::created_event(&id),
                )
            } else {
                (
                    format!("evt.blogpost.{id}.BlogPostTitleChanged"),
                    Bytes::from(format!(r#"{{"title":"Title number {i}"}}"#)),
                )
            }
        }),
    )
    .await
    .map_err(BenchError::failed)?;
    let store = EventStore::new(env.admin.clone(), Duration::from_secs(10))
        .await
        .map_err(BenchError::nats)?;
    let mut raw_times = Vec::new();
    let mut load_times = Vec::new();
    for _ in 0..repetitions(env) {
        let started = Instant::now();
        let n = raw_direct_get(env, &id).await?;
        raw_times.push(started.elapsed());
        check(n)?;
        let started = Instant::now();
        let n = load_and_fold(&store, &id).await?;
        load_times.push(started.elapsed());
        check(n)?;
    }
    let raw = figure("raw_cold_load", raw_times);
    let load = figure("cold_load", load_times).against(&raw);
    Ok(vec![raw, load])
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

fn figure(name: &str, mut times: Vec<Duration>) -> Figure {
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = times.get(times.len() / 2).copied().unwrap_or_default();
    let p99 = times.last().copied().unwrap_or_default();
    let mut figure = Figure::named(name);
    figure.count = Some(EVENTS);
    figure.rate = Some(EVENTS as f64 / p50.as_secs_f64().max(f64::EPSILON));
    figure.p50_ms = Some(ms(p50));
    figure.p99_ms = Some(ms(p99));
    figure.with("loads", times.len() as u64)
}

async fn load_and_fold(store: &EventStore, id: &str) -> Result<u64, BenchError> {
    let events = store
        .load(BlogPost::TYPE, id, 0)
        .await
        .map_err(BenchError::nats)?;
    let mut state = BlogPost::default();
    let mut n = 0;
    for stored in events {
        let event: BlogPostEvent = codec::decode_event(stored.event_type(), &stored.payload)
            .map_err(BenchError::failed_display)?;
        state.apply(event);
        n += 1;
    }
    Ok(n)
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
