//! A `tracing` span per publish try (and, with the `opentelemetry` feature, the
//! OpenTelemetry publish metrics), with hooks in the manner of tower-http's
//! `TraceLayer`: how the span is made, and what happens when a try starts, succeeds
//! or fails.
//!
//! Files as in tower: `layer` ([`TraceLayer`]), `hooks` (the hook traits and their
//! defaults), `metrics` (the OpenTelemetry instruments, with the `opentelemetry`
//! feature), and here the service, [`Trace`].

mod hooks;
mod layer;
#[cfg(feature = "opentelemetry")]
pub mod metrics;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{BoxError, Service};
use tracing::Instrument as _;

use crate::batch::PartitionBatch;

pub use hooks::{DefaultMakeSpan, DefaultOnFailure, MakeSpan, OnFailure, OnSuccess, OnTry};
use layer::Hooks;
pub use layer::TraceLayer;

/// The service of [`TraceLayer`].
pub struct Trace<S, B> {
    inner: S,
    hooks: Hooks<B>,
    #[cfg(feature = "opentelemetry")]
    metrics: std::sync::Arc<metrics::PublishMetrics>,
}

// By hand: derives would ask `B: Clone` and `B: Debug`.
impl<S: Clone, B> Clone for Trace<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            hooks: self.hooks.clone(),
            #[cfg(feature = "opentelemetry")]
            metrics: self.metrics.clone(),
        }
    }
}

impl<S: std::fmt::Debug, B> std::fmt::Debug for Trace<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("inner", &self.inner)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl<S, B> Trace<S, B> {
    /// The service it wraps.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service it wraps, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The service it wraps, taken out.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<B> for Trace<S, B>
where
    B: PartitionBatch,
    S: Service<B, Response = ()>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, batch: B) -> Self::Future {
        let hooks = self.hooks.clone();
        let span = hooks.make_span.make_span(&batch);
        if let Some(on_try) = &hooks.on_try {
            span.in_scope(|| on_try.on_try(&batch, &span));
        }
        #[cfg(feature = "opentelemetry")]
        let metrics = self.metrics.clone();
        let started = Instant::now();
        // A clone (cheap, as `PartitionBatch` asks): the hooks see the batch after the
        // inner service took it.
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
