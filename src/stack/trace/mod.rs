//! A `tracing` span per publish try (and, with the `opentelemetry` feature, the
//! OpenTelemetry publish metrics), with hooks in the manner of tower-http's
//! `TraceLayer`: how the span is made, and what happens when a try starts, succeeds
//! or fails.
//!
//! Files as in tower: `layer` ([`TraceLayer`]), `hooks` (the hook traits and their
//! defaults), and here the service, [`Trace`].

mod hooks;
mod layer;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{BoxError, Service};
use tracing::Instrument as _;

use crate::batch::Batch;

pub use hooks::{DefaultMakeSpan, DefaultOnFailure, MakeSpan, OnFailure, OnSuccess, OnTry};
use layer::Hooks;
pub use layer::TraceLayer;

/// The service of [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    hooks: Hooks,
    #[cfg(feature = "opentelemetry")]
    metrics: std::sync::Arc<crate::metrics::PublishMetrics>,
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
