//! Metrics and health over HTTP: `GET /metrics` (Prometheus text format),
//! `GET /healthz` (liveness: the process answers) and `GET /readyz`
//! (readiness: NATS connected, every hosted aggregate's event stream
//! present, every projector caught up).
//!
//! A deliberately tiny HTTP/1.1 responder on a tokio `TcpListener`: one
//! GET per connection, one response, then close. Scrapers and probes need
//! nothing more, and a web framework would be most of the binary.

use jetsource_feedback::FeedbackGauges;
use jetsource_handlers::metrics::{self, gauge};
use jetsource_projector::Phase;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};

/// The running projectors, shared between `run` (which stops them) and
/// the probes (which read their status).
pub type ProjectorsHandle = Arc<Mutex<Option<jetsource_projector::RunningProjectors>>>;

/// What the endpoints look at.
pub struct Probes {
    /// The process's NATS connection.
    pub client: async_nats::Client,
    /// The event streams that must exist (`EVT_<TYPE>` per hosted aggregate).
    pub streams: Vec<String>,
    /// The feedback role's gauges, when this process has it.
    pub feedback: Option<FeedbackGauges>,
    /// The projectors, when this process runs them.
    pub projectors: Option<ProjectorsHandle>,
}

/// The longest request head read before answering 400.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

impl Probes {
    /// Every metric, in the Prometheus text format.
    pub async fn metrics(&self) -> String {
        let mut out = String::new();
        metrics::global().render(&mut out);
        if let Some(feedback) = &self.feedback {
            feedback.render(&mut out);
        }
        if let Some(projectors) = &self.projectors {
            if let Some(running) = projectors.lock().await.as_ref() {
                let report = running.status().await;
                let _ = writeln!(
                    out,
                    "# HELP jetsource_projector_lag Stream sequences a projector has not covered yet.\n\
                     # TYPE jetsource_projector_lag gauge"
                );
                for p in &report.projectors {
                    for s in &p.streams {
                        let _ = writeln!(
                            out,
                            "jetsource_projector_lag{{projector=\"{}\",stream=\"{}\"}} {}",
                            p.name, s.stream, s.lag
                        );
                    }
                }
                let _ = writeln!(
                    out,
                    "# HELP jetsource_projector_halted 1 when a projector stopped at an event it could not apply.\n\
                     # TYPE jetsource_projector_halted gauge"
                );
                for p in &report.projectors {
                    let _ = writeln!(
                        out,
                        "jetsource_projector_halted{{projector=\"{}\"}} {}",
                        p.name,
                        u8::from(p.phase == Phase::Halted)
                    );
                }
                let _ = writeln!(
                    out,
                    "# HELP jetsource_projector_failing 1 while a projector's store keeps refusing its writes.\n\
                     # TYPE jetsource_projector_failing gauge"
                );
                for p in &report.projectors {
                    let _ = writeln!(
                        out,
                        "jetsource_projector_failing{{projector=\"{}\"}} {}",
                        p.name,
                        u8::from(p.phase == Phase::Failing)
                    );
                }
            }
        }
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        gauge(
            &mut out,
            "jetsource_nats_connected",
            "1 while the NATS connection is up.",
            u64::from(connected),
        );
        out
    }

    /// Ready, or the reasons it is not.
    pub async fn ready(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if self.client.connection_state() != async_nats::connection::State::Connected {
            why.push("NATS is not connected".to_string());
        } else {
            let js = async_nats::jetstream::new(self.client.clone());
            for stream in &self.streams {
                if js.get_stream(stream).await.is_err() {
                    why.push(format!("stream {stream} is missing"));
                }
            }
        }
        if let Some(projectors) = &self.projectors {
            match projectors.lock().await.as_ref() {
                Some(running) => {
                    for p in running.status().await.projectors {
                        match (p.phase, &p.error) {
                            (Phase::Live, _) => {}
                            (Phase::Halted | Phase::Failing, Some(error)) => {
                                why.push(format!("projector {} is {:?}: {error}", p.name, p.phase))
                            }
                            _ => why.push(format!("projector {} is {:?}", p.name, p.phase)),
                        }
                    }
                }
                None => why.push("projectors are stopped".to_string()),
            }
        }
        match why.is_empty() {
            true => Ok(()),
            false => Err(why),
        }
    }
}

/// Serves the endpoints on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, probes: Arc<Probes>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    continue;
                }
            },
        };
        let probes = probes.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &probes).await {
                tracing::debug!(error = %e, "metrics endpoint: connection failed");
            }
        });
    }
}

/// Reads one request head and writes one response.
async fn answer(mut stream: tokio::net::TcpStream, probes: &Probes) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(true);
            }
            if head.len() > MAX_REQUEST {
                return Ok(false);
            }
        }
    })
    .await
    .unwrap_or(Ok(false))?;
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    let (status, content_type, body) = if !complete {
        ("400 Bad Request", "text/plain", "bad request\n".to_string())
    } else if method != "GET" && method != "HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        )
    } else {
        match path {
            "/metrics" => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                probes.metrics().await,
            ),
            "/healthz" => ("200 OK", "text/plain", "ok\n".to_string()),
            "/readyz" => match probes.ready().await {
                Ok(()) => ("200 OK", "text/plain", "ready\n".to_string()),
                Err(why) => (
                    "503 Service Unavailable",
                    "text/plain",
                    format!("not ready: {}\n", why.join("; ")),
                ),
            },
            _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
        }
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
