//! `jetsource projector rebuild | parked | replay-parked | skip-parked`: the client side
//! of operating persisted projections, with a progress bar for rebuilds.

use crate::cli::{client_connection, print_json};
use crate::config::Config;
use jetsource_projector::control::{self, ControlErrorKind, RebuildUpdate};
use jetsource_schemas::Namespace;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Events per second and time left, from progress so far.
pub fn rate_and_eta(done: u64, total: u64, elapsed: Duration) -> (f64, Option<Duration>) {
    let secs = elapsed.as_secs_f64();
    if done == 0 || secs <= 0.0 {
        return (0.0, None);
    }
    let rate = done as f64 / secs;
    let left = total.saturating_sub(done) as f64 / rate;
    (rate, Some(Duration::from_secs_f64(left)))
}

/// One progress line: `12000/50000 events (24%)  8000 ev/s  4s left`.
pub fn progress_line(done: u64, total: u64, elapsed: Duration) -> String {
    let (rate, eta) = rate_and_eta(done, total, elapsed);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let width = 30usize;
    let filled = (width as u64 * done)
        .checked_div(total)
        .unwrap_or(width as u64) as usize;
    let bar = format!(
        "{}{}",
        "#".repeat(filled.min(width)),
        ".".repeat(width - filled.min(width))
    );
    let eta = eta.map_or("--".to_string(), |d| format!("{}s", d.as_secs()));
    format!("[{bar}] {done}/{total} events ({percent}%)  {rate:.0} ev/s  {eta} left")
}

/// The configured namespace and the connection; on failure, prints why
/// and returns the exit code.
async fn connect(
    config: &Config,
    nats_url: Option<&str>,
    what: &str,
) -> Result<(async_nats::Client, Namespace), ExitCode> {
    let namespace = crate::cli::client::namespace(config, what)?;
    let client = client_connection(config, nats_url, what).await?;
    Ok((client, namespace))
}

/// `jetsource projector rebuild <name>`.
pub async fn rebuild(
    config: &Config,
    nats_url: Option<&str>,
    name: &str,
    timeout: u64,
) -> ExitCode {
    let (client, namespace) = match connect(config, nats_url, "projector rebuild").await {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let terminal = std::io::stderr().is_terminal();
    let mut last_line = Instant::now() - Duration::from_secs(1);
    let silence = Duration::from_secs(timeout);
    let result = control::rebuild_in(&client, &namespace, name, silence, |update| {
        let mut err = std::io::stderr();
        match update {
            RebuildUpdate::Started { generation, total } => {
                let _ = writeln!(
                    err,
                    "rebuilding {name} as generation {generation}: {total} events"
                );
            }
            RebuildUpdate::Progress {
                done,
                total,
                elapsed_ms,
            } => {
                let line = progress_line(*done, *total, Duration::from_millis(*elapsed_ms));
                if terminal {
                    let _ = write!(err, "\r{line}");
                    let _ = err.flush();
                } else if last_line.elapsed() >= Duration::from_secs(1) {
                    last_line = Instant::now();
                    let _ = writeln!(err, "{line}");
                }
            }
            RebuildUpdate::Done { .. } | RebuildUpdate::Failed { .. } if terminal => {
                let _ = writeln!(err);
            }
            _ => {}
        }
    })
    .await;
    match result {
        Ok(RebuildUpdate::Done {
            generation,
            events,
            elapsed_ms,
            positions,
        }) => {
            let secs = elapsed_ms as f64 / 1000.0;
            let rate = if secs > 0.0 {
                events as f64 / secs
            } else {
                0.0
            };
            eprintln!("rebuilt {name}: {events} events in {secs:.1}s ({rate:.0} ev/s); queries now read generation {generation}");
            print_json(&serde_json::json!({
                "status": "done", "projection": name, "generation": generation,
                "events": events, "elapsed_ms": elapsed_ms, "positions": positions,
            }));
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::from(3),
        Err(e) => {
            eprintln!("jetsource projector rebuild: {e}");
            match e.kind() {
                ControlErrorKind::BadName => ExitCode::from(2),
                ControlErrorKind::Failed => ExitCode::from(1),
                _ => ExitCode::from(3),
            }
        }
    }
}

/// `jetsource projector parked <name>`.
pub async fn parked(config: &Config, nats_url: Option<&str>, name: &str) -> ExitCode {
    let (client, namespace) = match connect(config, nats_url, "projector parked").await {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    match jetsource_projector::parked::list_in(&client, &namespace, name).await {
        Ok(parked) => {
            print_json(&serde_json::json!({ "projection": name, "parked": parked }));
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == jetsource_projector::ProjectionErrorKind::BadProjector => {
            eprintln!("jetsource projector parked: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("jetsource projector parked: {e}");
            ExitCode::from(3)
        }
    }
}

/// `jetsource projector replay-parked <name>`.
pub async fn replay_parked(
    config: &Config,
    nats_url: Option<&str>,
    name: &str,
    timeout: u64,
) -> ExitCode {
    let (client, namespace) = match connect(config, nats_url, "projector replay-parked").await {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    match control::replay_parked_in(&client, &namespace, name, Duration::from_secs(timeout)).await {
        Ok(summary) => {
            print_json(&summary);
            if summary.all_done() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("jetsource projector replay-parked: {e}");
            match e.kind() {
                ControlErrorKind::BadName => ExitCode::from(2),
                _ => ExitCode::from(3),
            }
        }
    }
}

/// `jetsource projector skip-parked <name> <stream> <seq>`. Exit 0 skipped
/// (or already applied), 1 not parked or refused, 2 bad usage, 3 no answer.
pub async fn skip_parked(
    config: &Config,
    nats_url: Option<&str>,
    name: &str,
    parked: &control::SkipRequest,
    timeout: u64,
) -> ExitCode {
    let (client, namespace) = match connect(config, nats_url, "projector skip-parked").await {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let timeout = Duration::from_secs(timeout);
    match control::skip_parked_in(&client, &namespace, name, parked, timeout).await {
        Ok(outcome) => {
            print_json(&outcome);
            match outcome {
                control::SkipOutcome::Skipped | control::SkipOutcome::AlreadyApplied => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(1),
            }
        }
        Err(e) => {
            eprintln!("jetsource projector skip-parked: {e}");
            match e.kind() {
                ControlErrorKind::BadName => ExitCode::from(2),
                _ => ExitCode::from(3),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_shows_rate_and_time_left() {
        let line = progress_line(500, 1000, Duration::from_secs(1));
        assert!(line.contains("500/1000 events (50%)"), "{line}");
        assert!(line.contains("500 ev/s"), "{line}");
        assert!(line.contains("1s left"), "{line}");
        assert!(progress_line(0, 0, Duration::ZERO).contains("--"));
    }
}
