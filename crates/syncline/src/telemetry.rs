//! Logs: pretty for people, JSON for machines. Run spans carry `run_id` and `pipeline`, so
//! every line logged inside a run names both. `-v` shows syncline's own progress (a line per
//! handled flow event); `-vv` syncline's debug detail, with the libraries kept at info so it
//! stays readable; `-vvv` everything. Colours only on a terminal (`NO_COLOR`, `CLICOLOR_FORCE`).
//!
//! Traces: when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set,
//! syncline's spans — each run, page, batch, API call, webhook delivery and flow event — are
//! exported over OTLP/HTTP (protobuf, or JSON with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`;
//! headers and timeouts from the other standard variables). Unset, no exporter or layer exists
//! and spans cost what they cost without it. Logs have their own filter, so `-q` does not
//! silence traces and traces do not make logs louder.

use crate::cli::LogFormat;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// What must be flushed before the process exits.
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered (a short command ends before the batch would).
    pub fn shutdown(self) {
        if let Some(provider) = self.traces
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: traces not all exported: {e}");
        }
    }
}

pub fn init(format: LogFormat, verbose: u8, quiet: bool) -> Telemetry {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "warn,syncline=info",
        (false, 2) => "info,sqlx=warn,syncline=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("SYNCLINE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let color = crate::output::color(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(color);
    let logs = match format {
        LogFormat::Json => {
            let json = tracing_subscriber::fmt::format().json().with_current_span(true).with_span_list(false);
            logs.json().event_format(WithTraceId(json)).boxed()
        }
        LogFormat::Pretty => logs.compact().boxed(),
    };
    let traces = exporter();
    let layer = traces.as_ref().map(|provider| {
        // syncline's own spans (every crate's target starts with `syncline`), API calls included
        let ours = Targets::new().with_target("syncline", tracing::Level::DEBUG);
        tracing_opentelemetry::layer().with_tracer(provider.tracer("syncline")).with_filter(ours)
    });
    tracing_subscriber::registry().with(logs.with_filter(filter)).with(layer).init();
    Telemetry { traces }
}

/// JSON log lines with the `trace_id` of the span they were logged in, when it is traced, so a
/// line leads to its trace. tracing-subscriber's JSON format knows nothing of OpenTelemetry, so
/// the id is put at the front of the object it writes.
struct WithTraceId<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &tracing::Event<'_>) -> std::fmt::Result {
        use opentelemetry::trace::TraceContextExt;
        let trace = ctx
            .parent_span()
            .map(|span| span.id())
            .and_then(|id| tracing::dispatcher::get_default(|d| tracing_opentelemetry::get_otel_context(&id, d)))
            .map(|context| context.span().span_context().trace_id())
            .filter(|id| *id != opentelemetry::trace::TraceId::INVALID);
        let Some(trace) = trace else { return self.0.format_event(ctx, writer, event) };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}

/// The OTLP exporter the standard variables ask for, if they ask for one.
fn exporter() -> Option<SdkTracerProvider> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let wanted = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    if !wanted || disabled {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("warning: traces are not exported: {e}");
            return None;
        }
    };
    let name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| "syncline".into());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(name).build();
    Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}
