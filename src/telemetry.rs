//! Where a process's logs and spans go: logs to stderr, filtered by
//! `RUST_LOG`; spans, when `[observability] otlp_endpoint` names a
//! collector, to it over OTLP/HTTP.
//!
//! The spans exported are jetsource's own: a command's (`command`, in the
//! handlers), a projection applying an event (`apply`), a process manager
//! reacting to one (`react`). Each continues the W3C trace its command or
//! event carries (see [`jetsource_schemas::trace`]), so a collector shows one
//! trace from a client's request to every read model and saga step it led
//! to. They are recorded at debug level whatever `RUST_LOG` says (the
//! exporter has its own filter), and only when exporting: without an
//! endpoint no OpenTelemetry layer is installed and spans cost as before.

use crate::cli::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Registry;

/// The installed exporter, flushed by [`Telemetry::shutdown`].
#[must_use = "spans still buffered are lost unless it is shut down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered and stops the exporter. Call it
    /// outside the async runtime: the exporter's client blocks.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("jetsource: spans not all exported: {e}");
            }
        }
    }
}

/// The layer that records jetsource's spans for OpenTelemetry through
/// `provider`: spans only (log events stay in the logs), of jetsource's
/// crates only, at every level.
pub fn span_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("jetsource"))
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.is_span() && meta.target().starts_with("jetsource")
        }))
}

/// Installs the process's subscriber: log lines at `default` unless
/// `RUST_LOG` says otherwise, and spans to `otlp` (a traces URL, see
/// [`crate::config::Config::otlp_endpoint`]) when given. Must be called
/// outside the async runtime (the exporter's client starts its own).
pub fn install(default: &str, lines: LogFormat, otlp: Option<&str>) -> Result<Telemetry, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![match lines {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        // Span fields (command id, aggregate, outcome) on every line.
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    }];
    let provider = match otlp {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| format!("the OTLP exporter for {endpoint} cannot start: {e}"))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name("jetsource").build())
                .build();
            layers.push(span_layer(&provider).boxed());
            Some(provider)
        }
        None => None,
    };
    // Already installed (a test, or an application of its own): theirs
    // stays.
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(Telemetry { provider })
}
