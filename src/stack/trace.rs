//! A `tracing` span per publish try (and, with the `opentelemetry` feature, the
//! OpenTelemetry publish metrics), with hooks in the manner of tower-http's
//! `TraceLayer`: how the span is made, and what happens when a try starts, succeeds
//! or fails.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower::{BoxError, Layer, Service};
use tracing::{Instrument as _, Span};

use crate::batch::Batch;

/// Makes the span of a try. Implemented for closures `Fn(&Batch) -> Span`.
pub trait MakeSpan: Send + Sync + 'static {
    /// The span the try runs in.
    fn make_span(&self, batch: &Batch) -> Span;
}

/// Called as a try starts, inside its span. Implemented for closures
/// `Fn(&Batch, &Span)`.
pub trait OnTry: Send + Sync + 'static {
    /// The try of `batch` starts.
    fn on_try(&self, batch: &Batch, span: &Span);
}

/// Called when a try succeeds. Implemented for closures `Fn(&Batch, Duration, &Span)`.
pub trait OnSuccess: Send + Sync + 'static {
    /// The service stored `batch`; the try took `latency`.
    fn on_success(&self, batch: &Batch, latency: Duration, span: &Span);
}

/// Called when a try fails (it may be retried). Implemented for closures
/// `Fn(&Batch, &BoxError, Duration, &Span)`.
pub trait OnFailure: Send + Sync + 'static {
    /// The try of `batch` failed with `error` after `latency`.
    fn on_failure(&self, batch: &Batch, error: &BoxError, latency: Duration, span: &Span);
}

impl<F: Fn(&Batch) -> Span + Send + Sync + 'static> MakeSpan for F {
    fn make_span(&self, batch: &Batch) -> Span {
        self(batch)
    }
}

impl<F: Fn(&Batch, &Span) + Send + Sync + 'static> OnTry for F {
    fn on_try(&self, batch: &Batch, span: &Span) {
        self(batch, span)
    }
}

impl<F: Fn(&Batch, Duration, &Span) + Send + Sync + 'static> OnSuccess for F {
    fn on_success(&self, batch: &Batch, latency: Duration, span: &Span) {
        self(batch, latency, span)
    }
}

impl<F: Fn(&Batch, &BoxError, Duration, &Span) + Send + Sync + 'static> OnFailure for F {
    fn on_failure(&self, batch: &Batch, error: &BoxError, latency: Duration, span: &Span) {
        self(batch, error, latency, span)
    }
}

/// The default span: `eventhubs.publish` at INFO, tagged after the OpenTelemetry
/// messaging conventions, with an empty `error.type` that [`DefaultOnFailure`] fills.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultMakeSpan;

impl MakeSpan for DefaultMakeSpan {
    fn make_span(&self, batch: &Batch) -> Span {
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

impl OnFailure for DefaultOnFailure {
    fn on_failure(&self, _batch: &Batch, error: &BoxError, _latency: Duration, span: &Span) {
        span.record("error.type", tracing::field::display(error));
    }
}

/// The hooks a [`TraceLayer`] calls.
#[derive(Clone)]
struct Hooks {
    make_span: Arc<dyn MakeSpan>,
    on_try: Option<Arc<dyn OnTry>>,
    on_success: Option<Arc<dyn OnSuccess>>,
    on_failure: Arc<dyn OnFailure>,
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

/// The service of [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    hooks: Hooks,
    #[cfg(feature = "opentelemetry")]
    metrics: Arc<crate::metrics::PublishMetrics>,
}

impl<S> Service<Batch> for Trace<S>
where
    S: Service<Batch, Response = ()>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, batch: Batch) -> Self::Future {
        let hooks = self.hooks.clone();
        let span = hooks.make_span.make_span(&batch);
        if let Some(on_try) = &hooks.on_try {
            span.in_scope(|| on_try.on_try(&batch, &span));
        }
        #[cfg(feature = "opentelemetry")]
        let metrics = self.metrics.clone();
        let started = Instant::now();
        // The batch is an `Arc` inside: the hooks see it after the inner service
        // took it.
        let call = self.inner.call(batch.clone());
        Box::pin(async move {
            let result = call.instrument(span.clone()).await.map_err(Into::into);
            let latency = started.elapsed();
            span.in_scope(|| match &result {
                Ok(()) => {
                    if let Some(on_success) = &hooks.on_success {
                        on_success.on_success(&batch, latency, &span);
                    }
                }
                Err(error) => hooks.on_failure.on_failure(&batch, error, latency, &span),
            });
            #[cfg(feature = "opentelemetry")]
            metrics.record(
                batch.partition(),
                batch.len(),
                latency,
                result.as_ref().err().map(|e| e.as_ref() as _),
            );
            result
        })
    }
}
