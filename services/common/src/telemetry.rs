//! Logs and traces: a `tracing` subscriber, and OpenTelemetry OTLP/HTTP export when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! The exporter uses the blocking HTTP client on the SDK's own batch thread: the async client
//! panics there for want of a reactor and then drops every span silently.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Log output format, `PULSE_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?}; expected text or json"
            )),
        }
    }
}

/// The `--log-format` flag of every binary; global, so it may follow a subcommand too.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct LogArgs {
    /// Log format: text or json.
    #[arg(long, env = "PULSE_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Installs the global subscriber for `service` in this format; see [`init`].
    pub fn init(&self, service: &'static str) -> anyhow::Result<TelemetryGuard> {
        init(service, self.log_format)
    }
}

/// Keeps the trace pipeline alive; dropping it flushes buffered spans.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("trace exporter shutdown: {e}");
        }
    }
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

/// Libraries that write whole WebSocket messages at trace level, a client's `auth` message
/// and the ticket in it included: logged at debug at most, whatever `RUST_LOG` says, so that a
/// ticket is never written to the logs.
const CAPPED: [&str; 2] = ["tungstenite=debug", "tokio_tungstenite=debug"];

/// The filter `RUST_LOG` (`spec`) asks for, default `info`, with [`CAPPED`] applied over it.
fn filter(spec: Option<&str>) -> EnvFilter {
    let mut filter = spec
        .filter(|spec| !spec.trim().is_empty())
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for directive in CAPPED {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the global subscriber for `service` (e.g. `pulse-poller`). Filtering follows
/// `RUST_LOG` (default `info`), except for [`CAPPED`]. Call once, from `main`.
pub fn init(service: &'static str, format: LogFormat) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());

    let provider = if otlp_configured() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .context("cannot build the OTLP span exporter")?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service)
            .build();
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build(),
        )
    } else {
        None
    };
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));

    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let result = match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_target(true))
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true))
            .try_init(),
    };
    result.context("a tracing subscriber is already installed")?;
    if provider.is_some() {
        tracing::info!(service, "exporting traces over OTLP/HTTP");
    }
    Ok(TelemetryGuard { provider })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_messages_are_never_traced_whatever_rust_log_asks() {
        for spec in [
            None,
            Some(""),
            Some("trace"),
            Some("tungstenite=trace,tokio_tungstenite=trace"),
        ] {
            let shown = filter(spec).to_string();
            assert!(shown.contains("tungstenite=debug"), "{spec:?}: {shown}");
            assert!(
                shown.contains("tokio_tungstenite=debug"),
                "{spec:?}: {shown}"
            );
            assert!(!shown.contains("tungstenite=trace"), "{spec:?}: {shown}");
        }
        assert!(
            filter(Some("pulse_gateway=trace"))
                .to_string()
                .contains("pulse_gateway=trace")
        );
        assert!(filter(Some("not a filter [")).to_string().contains("info"));
    }
}
