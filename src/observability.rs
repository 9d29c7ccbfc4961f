//! Metrics and health over HTTP: `GET /metrics` (OpenMetrics text),
//! `GET /healthz` (liveness: the process answers) and `GET /readyz`
//! (readiness: NATS connected, every hosted aggregate's event stream
//! present, every projector caught up).
//!
//! Served by axum on hyper, which parses requests, answers `HEAD`, `405`
//! and malformed requests, and keeps connections alive; this file only
//! says what each path answers.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use jetsource_feedback::FeedbackGauges;
use jetsource_projector::Phase;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
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

/// The content type of the OpenMetrics text format, which Prometheus asks
/// for first and `prometheus-client` writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels known only when scraping (projector and stream names).
type Labels = Vec<(&'static str, String)>;
/// A gauge per label set, filled for one scrape.
type Gauges = Family<Labels, Gauge<u64, AtomicU64>>;

impl Probes {
    /// Every metric, in the OpenMetrics text format: the command side's
    /// registry, then what is read at scrape time (the feedback role's
    /// cache, the projectors' positions, the connection), then `# EOF`.
    pub async fn metrics(&self) -> Result<String, std::fmt::Error> {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        jetsource_handlers::metrics::global().encode(&mut out)?;
        let mut now = Registry::default();
        if let Some(feedback) = &self.feedback {
            feedback.register(&mut now);
        }
        if let Some(projectors) = &self.projectors {
            if let Some(running) = projectors.lock().await.as_ref() {
                self.register_projectors(&mut now, &running.status().await);
            }
        }
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        now.register(
            "jetsource_nats_connected",
            "1 while the NATS connection is up",
            ConstGauge::new(u64::from(connected)),
        );
        encode_registry(&mut out, &now)?;
        encode_eof(&mut out)?;
        Ok(out)
    }

    fn register_projectors(
        &self,
        registry: &mut Registry,
        report: &jetsource_projector::StatusReport,
    ) {
        let (lag, halted, failing) = (Gauges::default(), Gauges::default(), Gauges::default());
        for p in &report.projectors {
            for s in &p.streams {
                let labels = vec![("projector", p.name.clone()), ("stream", s.stream.clone())];
                lag.get_or_create(&labels).set(s.lag);
            }
            let labels = vec![("projector", p.name.clone())];
            halted
                .get_or_create(&labels)
                .set(u64::from(p.phase == Phase::Halted));
            failing
                .get_or_create(&labels)
                .set(u64::from(p.phase == Phase::Failing));
        }
        registry.register(
            "jetsource_projector_lag",
            "Stream sequences a projector has not covered yet",
            lag,
        );
        registry.register(
            "jetsource_projector_halted",
            "1 when a projector stopped at an event it could not apply",
            halted,
        );
        registry.register(
            "jetsource_projector_failing",
            "1 while a projector's store keeps refusing its writes",
            failing,
        );
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

/// The three endpoints; anything else is 404, another method 405.
pub fn router(probes: Arc<Probes>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(probes)
}

async fn metrics(State(probes): State<Arc<Probes>>) -> Response {
    match probes.metrics().await {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded\n",
        )
            .into_response(),
    }
}

async fn ready(State(probes): State<Arc<Probes>>) -> Response {
    match probes.ready().await {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join("; ")),
        )
            .into_response(),
    }
}

/// Serves `router` on `listener` until `stop` turns true, then lets the
/// requests in flight finish.
pub async fn serve(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    let stopping = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stopping)
        .await
    {
        tracing::warn!(error = %e, "HTTP endpoint failed");
    }
}
