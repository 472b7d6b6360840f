//! [`TraceLayer`]: the hooks and metrics each partition's trace service gets.

use std::sync::Arc;

use tower::Layer;

use crate::batch::PartitionBatch;

use super::hooks::{DefaultMakeSpan, DefaultOnFailure, MakeSpan, OnFailure, OnSuccess, OnTry};
use super::Trace;

/// The hooks a [`TraceLayer`] calls.
pub(super) struct Hooks<B> {
    pub(super) make_span: Arc<dyn MakeSpan<B>>,
    pub(super) on_try: Option<Arc<dyn OnTry<B>>>,
    pub(super) on_success: Option<Arc<dyn OnSuccess<B>>>,
    pub(super) on_failure: Arc<dyn OnFailure<B>>,
}

// By hand: a derive would ask `B: Clone`.
impl<B> Clone for Hooks<B> {
    fn clone(&self) -> Self {
        Self {
            make_span: self.make_span.clone(),
            on_try: self.on_try.clone(),
            on_success: self.on_success.clone(),
            on_failure: self.on_failure.clone(),
        }
    }
}

impl<B> std::fmt::Debug for Hooks<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("on_try", &self.on_try.is_some())
            .field("on_success", &self.on_success.is_some())
            .finish_non_exhaustive()
    }
}

/// Wraps each try of a batch `B` in a span named `eventhubs.publish`, tagged after the
/// OpenTelemetry messaging conventions (partition, event count, bytes, and the
/// error's text when it fails); with the `opentelemetry` feature it also records the
/// `messaging.client.sent.messages` and `messaging.client.operation.duration`
/// metrics. Put it inside the retry layer for a span per try.
///
/// The hooks replace how the span is made ([`make_span`](Self::make_span)) and add
/// what happens as a try starts, succeeds or fails; the metrics are recorded
/// whatever the hooks do.
///
/// The producer's `streaming_producer::stack::TraceLayer` is this layer for its
/// `Batch`; its docs show the hooks in use.
pub struct TraceLayer<B> {
    hooks: Hooks<B>,
    #[cfg(feature = "opentelemetry")]
    metrics: Arc<super::metrics::PublishMetrics>,
}

// By hand: derives would ask `B: Clone` and `B: Debug`.
impl<B> Clone for TraceLayer<B> {
    fn clone(&self) -> Self {
        Self {
            hooks: self.hooks.clone(),
            #[cfg(feature = "opentelemetry")]
            metrics: self.metrics.clone(),
        }
    }
}

impl<B> std::fmt::Debug for TraceLayer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceLayer")
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl<B: PartitionBatch> TraceLayer<B> {
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
            metrics: super::metrics::PublishMetrics::new(hub),
        }
    }

    /// Makes each try's span with `make_span` instead of [`DefaultMakeSpan`].
    pub fn make_span(mut self, make_span: impl MakeSpan<B>) -> Self {
        self.hooks.make_span = Arc::new(make_span);
        self
    }

    /// Calls `on_try` as each try starts.
    pub fn on_try(mut self, on_try: impl OnTry<B>) -> Self {
        self.hooks.on_try = Some(Arc::new(on_try));
        self
    }

    /// Calls `on_success` when a try succeeds.
    pub fn on_success(mut self, on_success: impl OnSuccess<B>) -> Self {
        self.hooks.on_success = Some(Arc::new(on_success));
        self
    }

    /// Calls `on_failure` instead of [`DefaultOnFailure`] when a try fails.
    pub fn on_failure(mut self, on_failure: impl OnFailure<B>) -> Self {
        self.hooks.on_failure = Arc::new(on_failure);
        self
    }
}

impl<S, B> Layer<S> for TraceLayer<B> {
    type Service = Trace<S, B>;

    fn layer(&self, inner: S) -> Trace<S, B> {
        Trace {
            inner,
            hooks: self.hooks.clone(),
            #[cfg(feature = "opentelemetry")]
            metrics: self.metrics.clone(),
        }
    }
}
