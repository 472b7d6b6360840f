//! W3C trace context on each event (feature `opentelemetry`).
//!
//! At enqueue, the OpenTelemetry context of the current `tracing` span (as
//! `tracing-opentelemetry` keeps it) is written into the event's application
//! properties as `traceparent` and `Diagnostic-Id`, the names the Python SDK writes
//! and the .NET and JS SDKs read. A consumer continues the trace from
//! there. Events that already carry either property are left alone.

use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::event::EventData;

const TRACEPARENT: &str = "traceparent";
const DIAGNOSTIC_ID: &str = "Diagnostic-Id";
const TRACESTATE: &str = "tracestate";

/// Stamps the current span's trace context on `event`, if there is one.
pub(crate) fn stamp(event: EventData) -> EventData {
    let span = tracing::Span::current();
    if span.is_none() {
        return event;
    }
    if event
        .properties()
        .iter()
        .any(|(name, _)| name == TRACEPARENT || name == DIAGNOSTIC_ID)
    {
        return event;
    }
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    if !span_context.is_valid() {
        return event;
    }
    let traceparent = format!(
        "00-{}-{}-{:02x}",
        span_context.trace_id(),
        span_context.span_id(),
        span_context.trace_flags().to_u8()
    );
    let state = span_context.trace_state().header();
    let event = event
        .with_property(TRACEPARENT, traceparent.clone())
        .with_property(DIAGNOSTIC_ID, traceparent);
    if state.is_empty() {
        event
    } else {
        event.with_property(TRACESTATE, state)
    }
}
