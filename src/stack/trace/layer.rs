//! [`TraceLayer`]: the hooks and metrics each partition's trace service gets.

use std::sync::Arc;

use tower::Layer;

use super::hooks::{DefaultMakeSpan, DefaultOnFailure, MakeSpan, OnFailure, OnSuccess, OnTry};
use super::Trace;

/// The hooks a [`TraceLayer`] calls.
#[derive(Clone)]
pub(super) struct Hooks {
    pub(super) make_span: Arc<dyn MakeSpan>,
    pub(super) on_try: Option<Arc<dyn OnTry>>,
    pub(super) on_success: Option<Arc<dyn OnSuccess>>,
    pub(super) on_failure: Arc<dyn OnFailure>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("on_try", &self.on_try.is_some())
            .field("on_success", &self.on_success.is_some())
            .finish_non_exhaustive()
    }
}

/// Wraps each try in a span named `eventhubs.publish`, tagged after the
/// OpenTelemetry messaging conventions (partition, event count, bytes, and the
/// error's text when it fails); with the `opentelemetry` feature it also records the
/// `messaging.client.sent.messages` and `messaging.client.operation.duration`
/// metrics. Put it inside the retry layer for a span per try.
///
/// The hooks replace how the span is made ([`make_span`](Self::make_span)) and add
/// what happens as a try starts, succeeds or fails; the metrics are recorded
/// whatever the hooks do.
///
/// ```
/// use std::time::Duration;
/// use streaming_producer::stack::TraceLayer;
///
/// let layer = TraceLayer::new("telemetry")
///     .on_success(|batch: &streaming_producer::Batch, latency: Duration, _span: &tracing::Span| {
///         tracing::debug!(events = batch.len(), ?latency, "stored");
///     })
///     .on_failure(
///         |_batch: &streaming_producer::Batch,
///          error: &tower::BoxError,
///          _latency: Duration,
///          span: &tracing::Span| {
///             span.record("error.type", tracing::field::display(error));
///             tracing::warn!("a try failed: {error}");
///         },
///     );
/// # drop(layer);
/// ```
#[derive(Debug, Clone)]
pub struct TraceLayer {
    hooks: Hooks,
    #[cfg(feature = "opentelemetry")]
    metrics: Arc<crate::metrics::PublishMetrics>,
}

impl TraceLayer {
    /// A layer for the event hub `hub` (named in the metrics), with the default span
    /// and failure hook.
    pub fn new(hub: &str) -> Self {
        #[cfg(not(feature = "opentelemetry"))]
        let _ = hub;
        Self {
            hooks: Hooks {
                make_span: Arc::new(DefaultMakeSpan),
                on_try: None,
                on_success: None,
                on_failure: Arc::new(DefaultOnFailure),
            },
            #[cfg(feature = "opentelemetry")]
            metrics: crate::metrics::PublishMetrics::new(hub),
        }
    }

    /// Makes each try's span with `make_span` instead of [`DefaultMakeSpan`].
    pub fn make_span(mut self, make_span: impl MakeSpan) -> Self {
        self.hooks.make_span = Arc::new(make_span);
        self
    }

    /// Calls `on_try` as each try starts.
    pub fn on_try(mut self, on_try: impl OnTry) -> Self {
        self.hooks.on_try = Some(Arc::new(on_try));
        self
    }

    /// Calls `on_success` when a try succeeds.
    pub fn on_success(mut self, on_success: impl OnSuccess) -> Self {
        self.hooks.on_success = Some(Arc::new(on_success));
        self
    }

    /// Calls `on_failure` instead of [`DefaultOnFailure`] when a try fails.
    pub fn on_failure(mut self, on_failure: impl OnFailure) -> Self {
        self.hooks.on_failure = Arc::new(on_failure);
        self
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            hooks: self.hooks.clone(),
            #[cfg(feature = "opentelemetry")]
            metrics: self.metrics.clone(),
        }
    }
}
