//! Logs, traces and metrics.
//!
//! Logs: a tracing subscriber writing pretty or JSON lines, filtered by `RUST_LOG` (default
//! `info`). Traces: with an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`), spans go to it
//! over OTLP/gRPC in batches, with the resource from `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES`; W3C `traceparent` is the propagation format. Without an
//! endpoint no OpenTelemetry layer is installed at all. Metrics: see [`install_metrics`].

use std::net::SocketAddr;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP exporter")]
    Otlp(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot start the metrics listener")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
}

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] flushes it.
#[must_use]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered. Call once, at the end.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            eprintln!("ticketd: flushing traces failed: {err}");
        }
    }
}

/// Installs the global subscriber (a second call keeps the first) and, with an endpoint,
/// the OTLP trace exporter. Must run inside a Tokio runtime.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> Result<Telemetry, TelemetryError> {
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn"))
    };
    let fmt = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter())
            .boxed(),
    };
    let provider = match otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().build())
                .build();
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            Some(provider)
        }
        None => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("ticketd"))
            .with_filter(EnvFilter::new("info,sqlx=off,h2=off,tower=off,hyper=off"))
    });
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(Telemetry { provider })
}

/// Serves Prometheus metrics on `addr` (path `/metrics`) and makes it the process-wide
/// recorder. Without it the `metrics` macros record nothing and cost next to nothing.
pub fn install_metrics(addr: SocketAddr) -> Result<(), TelemetryError> {
    const SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0, 300.0,
    ];
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(SECONDS)?
        .install()?;
    Ok(())
}
