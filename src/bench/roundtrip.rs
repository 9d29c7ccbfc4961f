//! The round-trip figures: the bare responder, jetsource's blog handlers,
//! invalid commands, and the blog handlers over many aggregates.

use super::env::{own_peak_rss_kib, Env};
use super::load::{self, Sample};
use super::report::Figure;
use super::workload::{Aggregates, BlogCommands, InvalidCommands};

use super::BenchErrorExt as _;
use super::{raw, seed, BenchError};
use std::sync::Arc;
use std::time::Instant;

fn figure(name: &str, sample: &Sample) -> Figure {
    let mut figure = Figure::named(name);
    figure.count = Some(sample.count);
    figure.rate = Some(sample.rate());
    figure.p50_ms = sample.quantile_ms(0.5);
    figure.p99_ms = sample.quantile_ms(0.99);
    if sample.unexpected > 0 {
        figure = figure.with("unexpected", sample.unexpected);
    }
    figure
}

fn aggregates(env: &Env, figure: &str, count: u64) -> Aggregates {
    Aggregates {
        prefix: format!("{figure}-{}", env.run_id),
        count,
        tasks: env.settings.clients as u64,
    }
}

/// `raw_command_roundtrip`: the same clients against the bare responder.
pub async fn raw_command_roundtrip(env: &Env) -> Result<Figure, BenchError> {
    raw_roundtrip(env, "raw_command_roundtrip", false).await
}

/// `raw_contract_roundtrip`: the bare responder writing the headers
/// jetsource's contract puts on every event.
pub async fn raw_contract_roundtrip(env: &Env) -> Result<Figure, BenchError> {
    raw_roundtrip(env, "raw_contract_roundtrip", true).await
}

/// The bare responder's round trip, reported as `name`.
pub async fn raw_roundtrip(env: &Env, name: &str, contract: bool) -> Result<Figure, BenchError> {
    let responder_connection = jetsource_handlers::connect(&env.url)
        .await
        .map_err(BenchError::nats)?;
    let responder = raw::start(responder_connection, contract)
        .await
        .map_err(BenchError::failed)?;
    let workload = BlogCommands {
        aggregates: aggregates(
            env,
            if contract { "rawc" } else { "raw" },
            env.settings.aggregates,
        ),
        root: raw::ROOT,
        seeded: false,
    };
    let sample = load::drive(&env.clients, env.shape(), Arc::new(workload)).await;
    drop(responder);
    Ok(figure(name, &sample))
}

/// The aggregates `command_roundtrip` creates, which `rejection_roundtrip`
/// then addresses.
fn roundtrip_aggregates(env: &Env) -> Aggregates {
    aggregates(env, "rt", env.settings.aggregates)
}

/// `command_roundtrip`: `create` then `change_title` over the aggregates.
pub async fn command_roundtrip(env: &mut Env) -> Result<Figure, BenchError> {
    jetsource_roundtrip(env, "command_roundtrip", roundtrip_aggregates(env)).await
}

/// jetsource's round trip over `aggregates`, reported as `name`.
pub async fn jetsource_roundtrip(
    env: &mut Env,
    name: &str,
    aggregates: Aggregates,
) -> Result<Figure, BenchError> {
    env.ensure_jetsource().await?;
    let workload = BlogCommands {
        aggregates,
        root: "cmd",
        seeded: false,
    };
    let sample = load::drive(&env.clients, env.shape(), Arc::new(workload)).await;
    Ok(figure(name, &sample))
}

/// The durable figures, on a server that syncs every write: the bare
/// responder, jetsource with group commit, and jetsource without it.
pub async fn durable(env: &mut Env) -> Result<Vec<Figure>, BenchError> {
    let raw = raw_roundtrip(env, "durable_raw_command_roundtrip", false).await?;
    let grouped = jetsource_roundtrip(
        env,
        "durable_command_roundtrip",
        aggregates(env, "dur", env.settings.aggregates),
    )
    .await?
    .against(&raw);
    let mut config = env.runtime_config().clone();
    config.group_commit.enabled = false;
    env.reconfigure(config).await;
    let alone = jetsource_roundtrip(
        env,
        "durable_command_roundtrip_no_group_commit",
        aggregates(env, "dur-alone", env.settings.aggregates),
    )
    .await?
    .against(&raw);
    Ok(vec![raw, grouped, alone])
}

/// Bytes held by all streams of the account.
async fn stored_bytes(env: &Env) -> Result<u64, BenchError> {
    let account = env
        .jetstream()
        .query_account()
        .await
        .map_err(BenchError::nats)?;
    Ok(account.storage + account.memory)
}

/// `rejection_roundtrip`: invalid commands; nothing may be written.
pub async fn rejection_roundtrip(env: &mut Env) -> Result<Figure, BenchError> {
    env.ensure_jetsource().await?;
    let workload = InvalidCommands {
        existing: roundtrip_aggregates(env),
        ghost_prefix: format!("ghost-{}", env.run_id),
    };
    let before = stored_bytes(env).await?;
    let sample = load::drive(&env.clients, env.shape(), Arc::new(workload)).await;
    let after = stored_bytes(env).await?;
    let mut figure =
        figure("rejection_roundtrip", &sample).with("bytes_added", after.saturating_sub(before));
    if let Some(kib) = own_peak_rss_kib() {
        figure = figure.with("bench_peak_rss_mib", kib / 1024);
    }
    Ok(figure)
}

/// `scale_<n>`: `change_title` over `n` aggregates seeded straight into the
/// stream, with jetsource's state cache cold for all of them.
pub async fn scale(env: &mut Env, count: u64) -> Result<Figure, BenchError> {
    env.ensure_jetsource().await?;
    let aggregates = aggregates(env, &format!("s{count}"), count);
    let seeding = Instant::now();
    let seeded = seed::publish_all(
        &env.jetstream(),
        (0..count).map(|i| {
            let id = aggregates.id(i);
            (
                format!("evt.blogpost.{id}.BlogPostCreated"),
                super::workload::created_event(&id),
            )
        }),
    )
    .await
    .map_err(BenchError::failed)?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    let workload = BlogCommands {
        aggregates,
        root: "cmd",
        seeded: true,
    };
    let sample = load::drive(&env.clients, env.shape(), Arc::new(workload)).await;
    let mut figure = figure(&format!("scale_{}", short(count)), &sample)
        .with("aggregates", count)
        .with("seeded_in_s", (seed_secs * 10.0).round() / 10.0);
    let _ = seeded;
    if let Some(kib) = env.server_rss_kib() {
        figure = figure.with("server_rss_mib", kib / 1024);
    }
    Ok(figure)
}

/// `1000` as `1k`, `1000000` as `1M`.
pub fn short(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}
