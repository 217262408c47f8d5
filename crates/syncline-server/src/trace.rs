//! A webhook delivery's trace carried through the inbox: the delivery's W3C `traceparent` is
//! stored beside its events, and the flow that runs an event — later, on any worker or instance
//! — continues that trace. With no OpenTelemetry layer installed there is no trace to carry:
//! nothing is stored and nothing is continued.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The current span's `traceparent`, if it is being traced.
pub fn current_parent() -> Option<String> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the span `parent` names (a stored `traceparent`).
pub fn continue_from(span: &tracing::Span, parent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), parent.to_owned())]);
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}
