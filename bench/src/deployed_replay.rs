//! `deployed_documents_replay`: `jetsource run --roles projectors` as its
//! own process, as shipped, attached to a blog stream of one post per
//! event (50,000 with `--quick`, 1,000,000 otherwise), timed from its start
//! until the `blogposts` document projection (one KV entry per post) has
//! applied the head; against `raw_replay` of the same stream in the same
//! run. The process's peak memory is reported: it holds one batch of
//! documents at a time, so it stays flat as the read model grows.

use super::deployed::Deployed;
use super::env::Env;
use super::replay::{ensure_events, head, raw_replay};
use super::report::Figure;
use super::BenchError;
use super::BenchErrorExt as _;
use jetsource_schemas::subject;
use std::path::Path;
use std::time::{Duration, Instant};

/// Posts (and so documents) in the stream.
fn documents(env: &Env) -> u64 {
    if env.settings.quick {
        50_000
    } else {
        1_000_000
    }
}

/// The longest a replay may take before the figure fails.
const LIMIT: Duration = Duration::from_secs(1800);

/// `raw_replay` of the stream, then `deployed_documents_replay`.
pub async fn documents_replay(env: &mut Env, binary: &Path) -> Result<Vec<Figure>, BenchError> {
    // The blog stream is created by jetsource.
    env.ensure_jetsource().await?;
    ensure_events(env, documents(env)).await?;
    env.stop_jetsource().await;
    let stream_name = subject::stream_name("blogpost");
    let head = head(env, &stream_name).await?;
    let raw = raw_replay(env, head).await?;
    let started = Instant::now();
    let deployed = Deployed::start(binary, &env.url, Some("projectors"))?;
    loop {
        if applied(env, &stream_name).await >= head {
            break;
        }
        if started.elapsed() > LIMIT {
            return Err(BenchError::failed(format!(
                "blogposts did not reach #{head} within {LIMIT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    let mut figure = Figure::named("deployed_documents_replay");
    figure.count = Some(head);
    figure.rate = Some(head as f64 / elapsed.as_secs_f64().max(f64::EPSILON));
    figure = figure
        .with("store", "kv, one entry per post")
        .with("documents", head);
    if let Some(mib) = deployed.peak_rss_mib() {
        figure = figure.with("process_peak_rss_mib", mib);
    }
    drop(deployed);
    let figure = figure.against(&raw);
    Ok(vec![raw, figure])
}

/// The `blogposts` projection's applied sequence on `stream_name`, as
/// `query.projectors.status` answers it (0 while it does not answer).
async fn applied(env: &Env, stream_name: &str) -> u64 {
    let answer = match tokio::time::timeout(
        Duration::from_secs(2),
        env.admin
            .request("query.projectors.status", bytes::Bytes::new()),
    )
    .await
    {
        Ok(Ok(answer)) => answer,
        _ => return 0,
    };
    let Ok(status) = serde_json::from_slice::<serde_json::Value>(&answer.payload) else {
        return 0;
    };
    let projectors = status["projectors"].as_array().cloned().unwrap_or_default();
    projectors
        .iter()
        .filter(|p| p["name"] == "blogposts")
        .flat_map(|p| p["streams"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["stream"] == stream_name)
        .filter_map(|s| s["applied_seq"].as_u64())
        .max()
        .unwrap_or(0)
}
