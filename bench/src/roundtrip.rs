//! The round-trip figures: the bare responder, jetsource's blog handlers,
//! invalid commands, and the blog handlers over many aggregates.

use super::env::{own_peak_rss_kib, Env};
use super::load::Workload;
use super::load::{self, Sample};
use super::report::Figure;
use super::workload::{Aggregates, BlogCommands, InvalidCommands};

use super::BenchErrorExt as _;
use super::{raw, seed, BenchError};
use std::sync::Arc;
use std::time::Instant;

/// A round-trip figure from `sample`: count, rate, p50, p99, unexpected
/// replies.
pub(super) fn figure(name: &str, sample: &Sample) -> Figure {
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

pub(super) fn aggregates(env: &Env, figure: &str, count: u64) -> Aggregates {
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

/// The bare responder's round trip, reported as `name`.
pub async fn raw_roundtrip(env: &Env, name: &str, contract: bool) -> Result<Figure, BenchError> {
    let responder_connection = jetsource_handlers::connect(&env.url)
        .await
        .map_err(BenchError::nats)?;
    let responder = raw::start(responder_connection, contract)
        .await
        .map_err(BenchError::failed)?;
    let workload = raw_workload(env, contract);
    let sample = load::drive(&env.clients, env.shape(), Arc::new(workload)).await;
    drop(responder);
    Ok(figure(name, &sample))
}

/// The blog commands a bare responder (with `contract` on or off) serves.
fn raw_workload(env: &Env, contract: bool) -> BlogCommands {
    BlogCommands {
        aggregates: aggregates(
            env,
            if contract { "rawc" } else { "raw" },
            env.settings.aggregates,
        ),
        root: raw::root(contract),
        seeded: false,
    }
}

/// One of the paths [`side_by_side`] measures in turn.
struct Contender {
    workload: Arc<dyn Workload>,
    next: Vec<u64>,
    sample: Sample,
    /// Requests sent in its rounds (warm-ups included), and the CPU ticks
    /// this process and the server used meanwhile.
    sent: u64,
    own_ticks: u64,
    server_ticks: u64,
    /// Bytes the account's streams grew by during its rounds, when counted.
    bytes_added: Option<u64>,
}

impl Contender {
    fn new(workload: impl Workload) -> Self {
        Contender {
            workload: Arc::new(workload),
            next: Vec::new(),
            sample: Sample::default(),
            sent: 0,
            own_ticks: 0,
            server_ticks: 0,
            bytes_added: None,
        }
    }

    /// Counts the bytes its rounds add to the streams.
    fn counting_bytes(mut self) -> Self {
        self.bytes_added = Some(0);
        self
    }

    /// `figure` with the CPU its requests cost, in microseconds per request:
    /// `cpu_us` for this process (load generator, connections and the path
    /// measured), `server_cpu_us` for nats-server.
    fn with_cpu(&self, mut figure: Figure) -> Figure {
        let per_request = |ticks: u64| {
            let us = ticks as f64 / super::env::TICKS_PER_SECOND * 1e6 / self.sent.max(1) as f64;
            (us * 10.0).round() / 10.0
        };
        if self.own_ticks > 0 {
            figure = figure.with("cpu_us", per_request(self.own_ticks));
        }
        if self.server_ticks > 0 {
            figure = figure.with("server_cpu_us", per_request(self.server_ticks));
        }
        figure
    }
}

/// `raw_command_roundtrip`, `raw_contract_roundtrip`, `command_roundtrip`
/// and `rejection_roundtrip`, measured in alternating rounds rather than
/// one after the other: all four see the same server (whose streams grow
/// as the run goes on) and the same background load on the machine, so
/// neither drift nor running last biases a ratio. The order rotates each
/// round. Rejections address the aggregates `command_roundtrip` creates
/// (it runs first in the first round); the bytes the streams grow by are
/// counted over the rejection rounds alone.
pub async fn side_by_side(env: &mut Env) -> Result<[Figure; 4], BenchError> {
    let mut responders = Vec::new();
    for contract in [false, true] {
        let connection = jetsource_handlers::connect(&env.url)
            .await
            .map_err(BenchError::nats)?;
        responders.push(
            raw::start(connection, contract)
                .await
                .map_err(BenchError::failed)?,
        );
    }
    env.ensure_jetsource().await?;
    let mut contenders = [
        Contender::new(raw_workload(env, false)),
        Contender::new(raw_workload(env, true)),
        Contender::new(BlogCommands {
            aggregates: roundtrip_aggregates(env),
            root: "cmd",
            seeded: false,
        }),
        Contender::new(InvalidCommands {
            existing: roundtrip_aggregates(env),
            ghost_prefix: format!("ghost-{}", env.run_id),
        })
        .counting_bytes(),
    ];
    let (rounds, shape) = env.round_shape();
    for round in 0..rounds {
        for turn in 0..contenders.len() {
            let index = (round + turn) % contenders.len();
            let Some(contender) = contenders.get_mut(index) else {
                continue;
            };
            let before: u64 = contender.next.iter().sum();
            let bytes_before = match contender.bytes_added {
                Some(_) => Some(stored_bytes(env).await?),
                None => None,
            };
            let (own, server) = env.cpu_ticks();
            let sample = load::drive_from(
                &env.clients,
                shape,
                contender.workload.clone(),
                &mut contender.next,
            )
            .await;
            let (own_after, server_after) = env.cpu_ticks();
            contender.sent += contender.next.iter().sum::<u64>() - before;
            contender.own_ticks += own_after.zip(own).map_or(0, |(a, b)| a.saturating_sub(b));
            contender.server_ticks += server_after
                .zip(server)
                .map_or(0, |(a, b)| a.saturating_sub(b));
            contender.sample.merge(sample);
            if let (Some(added), Some(before)) = (contender.bytes_added.as_mut(), bytes_before) {
                *added += stored_bytes(env).await?.saturating_sub(before);
            }
        }
    }
    drop(responders);
    let [raw, contract, jetsource, rejections] = contenders;
    let mut rejected = rejections
        .with_cpu(figure("rejection_roundtrip", &rejections.sample))
        .with("bytes_added", rejections.bytes_added.unwrap_or(0));
    if let Some(kib) = own_peak_rss_kib() {
        rejected = rejected.with("bench_peak_rss_mib", kib / 1024);
    }
    Ok([
        raw.with_cpu(figure("raw_command_roundtrip", &raw.sample)),
        contract.with_cpu(figure("raw_contract_roundtrip", &contract.sample)),
        jetsource.with_cpu(figure("command_roundtrip", &jetsource.sample)),
        rejected,
    ])
}

/// The aggregates `command_roundtrip` creates, which `rejection_roundtrip`
/// then addresses.
fn roundtrip_aggregates(env: &Env) -> Aggregates {
    aggregates(env, "rt", env.settings.aggregates)
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
    config.group_commit.mode = jetsource_handlers::store::GroupCommitMode::Off;
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
