//! `raw_replay`: a plain pull consumer with explicit acks reading N events
//! of the blog stream; `projector_replay` (the in-memory blog projection
//! folding the same events) is reported once a projector exists.

use super::env::Env;
use super::report::Figure;
use super::BenchErrorExt as _;
use super::{seed, BenchError};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures::StreamExt;
use jetsource_schemas::subject;
use std::time::{Duration, Instant};

/// Events replayed.
fn events(env: &Env) -> u64 {
    if env.settings.quick {
        50_000
    } else {
        500_000
    }
}

/// Makes sure the blog stream holds at least `n` events.
async fn ensure_events(env: &Env, n: u64) -> Result<(), BenchError> {
    let jetstream = env.jetstream();
    let stream_name = subject::stream_name("blogpost");
    let stream = jetstream
        .get_stream(&stream_name)
        .await
        .map_err(BenchError::nats)?;
    let held = stream
        .get_info()
        .await
        .map_err(BenchError::nats)?
        .state
        .messages;
    if held < n {
        let prefix = format!("replay-{}", env.run_id);
        seed::publish_all(
            &jetstream,
            (0..n - held).map(|i| {
                let id = format!("{prefix}-{i}");
                (
                    format!("evt.blogpost.{id}.BlogPostCreated"),
                    super::workload::created_event(&id),
                )
            }),
        )
        .await
        .map_err(BenchError::failed)?;
    }
    Ok(())
}

/// `raw_replay` and the `projector_replay` placeholder.
pub async fn replay(env: &mut Env) -> Result<Vec<Figure>, BenchError> {
    // The blog stream is created by jetsource.
    env.ensure_jetsource().await?;
    let n = events(env);
    ensure_events(env, n).await?;
    let jetstream = env.jetstream();
    let stream = jetstream
        .get_stream(subject::stream_name("blogpost"))
        .await
        .map_err(BenchError::nats)?;
    let consumer = stream
        .create_consumer(pull::Config {
            name: Some(format!("bench-replay-{}", env.run_id)),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 20_000,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(BenchError::nats)?;
    let started = Instant::now();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await
        .map_err(BenchError::nats)?;
    let mut count = 0u64;
    while count < n {
        match messages.next().await {
            Some(Ok(message)) => {
                message.ack().await.map_err(BenchError::failed_display)?;
                count += 1;
            }
            Some(Err(e)) => return Err(BenchError::nats(e)),
            None => break,
        }
    }
    let elapsed = started.elapsed();
    drop(messages);
    let _ = stream
        .delete_consumer(&format!("bench-replay-{}", env.run_id))
        .await;
    let mut raw = Figure::named("raw_replay");
    raw.count = Some(count);
    raw.rate = Some(count as f64 / elapsed.as_secs_f64().max(f64::EPSILON));
    raw = raw.with("acks", "explicit");
    let mut projector = Figure::named("projector_replay");
    projector.baseline = Some(raw.name.clone());
    projector.note = Some("pending projector".into());
    Ok(vec![raw, projector])
}
