//! `raw_replay`: a plain pull consumer with explicit acks reading N events
//! of the blog stream; `projector_replay`: the in-memory `blogposts`
//! projection attached to the same stream, folding it from sequence 1 to
//! the head (its events decoded and applied), timed until it has applied
//! the head; `postgres_replay`, when `JETSOURCE_POSTGRES_URL` names a
//! database: the `blogposts_pg` read model replaying the same stream into
//! PostgreSQL (a transaction per batch with its checkpoint), from an empty
//! schema on a server where it has no consumers yet (the bench's own, by
//! default), timed until its checkpoint holds the head.

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
pub(crate) async fn ensure_events(env: &Env, n: u64) -> Result<(), BenchError> {
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
    let raw = raw_replay(env, n).await?;
    let projector = projector_replay(env).await?.against(&raw);
    let mut figures = vec![raw, projector];
    let postgres_url = std::env::var("JETSOURCE_POSTGRES_URL").unwrap_or_default();
    if !postgres_url.is_empty() {
        let postgres = postgres_replay(env, &postgres_url)
            .await?
            .against(&figures[0]);
        figures.push(postgres);
    }
    Ok(figures)
}

/// The last sequence of stream `stream_name`.
pub(crate) async fn head(env: &Env, stream_name: &str) -> Result<u64, BenchError> {
    Ok(env
        .jetstream()
        .get_stream(stream_name)
        .await
        .map_err(BenchError::nats)?
        .get_info()
        .await
        .map_err(BenchError::nats)?
        .state
        .last_sequence)
}

/// `raw_replay`: a plain pull consumer with explicit acks reading the
/// first `n` events of the blog stream.
pub(crate) async fn raw_replay(env: &Env, n: u64) -> Result<Figure, BenchError> {
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
    Ok(raw)
}

/// Attaches the blog projection and times its fold of the whole stream.
async fn projector_replay(env: &Env) -> Result<Figure, BenchError> {
    let stream_name = subject::stream_name("blogpost");
    let head = head(env, &stream_name).await?;
    let client = jetsource_handlers::connect(&env.url)
        .await
        .map_err(BenchError::nats)?;
    let started = Instant::now();
    let running = jetsource_projector::ProjectorRuntime::builder(client)
        .in_memory(jetsource_projector::document::InMemory::new(
            jetsource_reference::blogposts::BlogPosts,
        ))
        .build()
        .await
        .map_err(BenchError::failed_display)?
        .start()
        .await
        .map_err(BenchError::failed_display)?;
    let elapsed = to_head(
        running,
        jetsource_reference::blogposts::BlogPosts::NAME,
        &stream_name,
        head,
        started,
        Duration::from_secs(600),
    )
    .await?;
    let mut figure = Figure::named("projector_replay");
    figure.count = Some(head);
    figure.rate = Some(head as f64 / elapsed.as_secs_f64().max(f64::EPSILON));
    Ok(figure.with("consumer", "ordered"))
}

/// Replays the blog stream into `blogposts_pg` in the database at `url`,
/// after dropping what an earlier run left there.
async fn postgres_replay(env: &Env, url: &str) -> Result<Figure, BenchError> {
    use jetsource_postgres::HostPostgres;
    use jetsource_reference::blogposts_pg::BlogPostsPg;
    let stream_name = subject::stream_name("blogpost");
    let head = head(env, &stream_name).await?;
    let (db, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(BenchError::failed_display)?;
    tokio::spawn(connection);
    db.batch_execute("DROP SCHEMA IF EXISTS blogposts_pg_g0 CASCADE")
        .await
        .map_err(BenchError::failed_display)?;
    let client = jetsource_handlers::connect(&env.url)
        .await
        .map_err(BenchError::nats)?;
    let started = Instant::now();
    let running = jetsource_projector::ProjectorRuntime::builder(client)
        .postgres(url, BlogPostsPg)
        .map_err(BenchError::failed_display)?
        .build()
        .await
        .map_err(BenchError::failed_display)?
        .start()
        .await
        .map_err(BenchError::failed_display)?;
    let elapsed = to_head(
        running,
        BlogPostsPg::NAME,
        &stream_name,
        head,
        started,
        Duration::from_secs(1800),
    )
    .await?;
    let mut figure = Figure::named("postgres_replay");
    figure.count = Some(head);
    figure.rate = Some(head as f64 / elapsed.as_secs_f64().max(f64::EPSILON));
    Ok(figure.with("store", "postgres, one transaction per batch"))
}

/// Waits (at most `limit`) until projection `name` of `running` applied
/// `stream_name` up to `head`, then stops it; the time since `started`.
async fn to_head(
    running: jetsource_projector::RunningProjectors,
    name: &str,
    stream_name: &str,
    head: u64,
    started: Instant,
    limit: Duration,
) -> Result<Duration, BenchError> {
    let mut applied = running
        .applied(name)
        .ok_or_else(|| BenchError::failed(format!("the projection {name} is not running")))?;
    let reached = matches!(
        tokio::time::timeout(
            limit,
            applied.wait_for(|p| p.get(stream_name).copied().unwrap_or(0) >= head),
        )
        .await,
        Ok(Ok(_))
    );
    let elapsed = started.elapsed();
    let _ = running.stop().await;
    match reached {
        true => Ok(elapsed),
        false => Err(BenchError::failed(format!(
            "the projection {name} never reached the head"
        ))),
    }
}
