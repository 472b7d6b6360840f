//! The hooks of the trace layer: how a try's span is made and what happens as a try
//! starts, succeeds or fails; implemented for closures, with the defaults.

use std::time::Duration;

use tower::BoxError;
use tracing::Span;

use crate::batch::PartitionBatch;

/// Makes the span of a try of a batch `B`. Implemented for closures `Fn(&B) -> Span`.
pub trait MakeSpan<B>: Send + Sync + 'static {
    /// The span the try runs in.
    fn make_span(&self, batch: &B) -> Span;
}

/// Called as a try starts, inside its span. Implemented for closures
/// `Fn(&B, &Span)`.
pub trait OnTry<B>: Send + Sync + 'static {
    /// The try of `batch` starts.
    fn on_try(&self, batch: &B, span: &Span);
}

/// Called when a try succeeds. Implemented for closures `Fn(&B, Duration, &Span)`.
pub trait OnSuccess<B>: Send + Sync + 'static {
    /// The service stored `batch`; the try took `latency`.
    fn on_success(&self, batch: &B, latency: Duration, span: &Span);
}

/// Called when a try fails (it may be retried). Implemented for closures
/// `Fn(&B, &BoxError, Duration, &Span)`.
pub trait OnFailure<B>: Send + Sync + 'static {
    /// The try of `batch` failed with `error` after `latency`.
    fn on_failure(&self, batch: &B, error: &BoxError, latency: Duration, span: &Span);
}

impl<B, F: Fn(&B) -> Span + Send + Sync + 'static> MakeSpan<B> for F {
    fn make_span(&self, batch: &B) -> Span {
        self(batch)
    }
}

impl<B, F: Fn(&B, &Span) + Send + Sync + 'static> OnTry<B> for F {
    fn on_try(&self, batch: &B, span: &Span) {
        self(batch, span)
    }
}

impl<B, F: Fn(&B, Duration, &Span) + Send + Sync + 'static> OnSuccess<B> for F {
    fn on_success(&self, batch: &B, latency: Duration, span: &Span) {
        self(batch, latency, span)
    }
}

impl<B, F: Fn(&B, &BoxError, Duration, &Span) + Send + Sync + 'static> OnFailure<B> for F {
    fn on_failure(&self, batch: &B, error: &BoxError, latency: Duration, span: &Span) {
        self(batch, error, latency, span)
    }
}

/// The default span: `eventhubs.publish` at INFO, tagged after the OpenTelemetry
/// messaging conventions, with an empty `error.type` that [`DefaultOnFailure`] fills.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultMakeSpan;

impl<B: PartitionBatch> MakeSpan<B> for DefaultMakeSpan {
    fn make_span(&self, batch: &B) -> Span {
        tracing::info_span!(
            "eventhubs.publish",
            otel.kind = "producer",
            messaging.system = "eventhubs",
            messaging.operation.name = "send",
            messaging.destination.partition.id = %batch.partition(),
            messaging.batch.message_count = batch.len() as u64,
            messaging.batch.size_bytes = batch.size_in_bytes() as u64,
            error.type = tracing::field::Empty,
        )
    }
}

/// The default failure hook: records the error's text as the span's `error.type`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultOnFailure;

impl<B> OnFailure<B> for DefaultOnFailure {
    fn on_failure(&self, _batch: &B, error: &BoxError, _latency: Duration, span: &Span) {
        span.record("error.type", tracing::field::display(error));
    }
}
