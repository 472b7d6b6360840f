//! A `tracing` span per publish try (and, with the `opentelemetry` feature, the
//! OpenTelemetry publish metrics).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{BoxError, Layer, Service};
use tracing::Instrument as _;

use crate::batch::Batch;

/// Wraps each try in a span named `eventhubs.publish`, tagged after the
/// OpenTelemetry messaging conventions (partition, event count, bytes, and the
/// error's text when it fails); with the `opentelemetry` feature it also records the
/// `messaging.client.sent.messages` and `messaging.client.operation.duration`
/// metrics. Put it inside the retry layer for a span per try.
#[derive(Debug, Clone)]
pub struct TraceLayer {
    #[cfg(feature = "opentelemetry")]
    metrics: std::sync::Arc<crate::metrics::PublishMetrics>,
}

impl TraceLayer {
    /// A layer for the event hub `hub` (named in the metrics).
    pub fn new(hub: &str) -> Self {
        #[cfg(not(feature = "opentelemetry"))]
        let _ = hub;
        Self {
            #[cfg(feature = "opentelemetry")]
            metrics: crate::metrics::PublishMetrics::new(hub),
        }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            #[cfg(feature = "opentelemetry")]
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
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
        let span = tracing::info_span!(
            "eventhubs.publish",
            otel.kind = "producer",
            messaging.system = "eventhubs",
            messaging.operation.name = "send",
            messaging.destination.partition.id = %batch.partition(),
            messaging.batch.message_count = batch.len() as u64,
            messaging.batch.size_bytes = batch.size_in_bytes() as u64,
            error.type = tracing::field::Empty,
        );
        #[cfg(feature = "opentelemetry")]
        let (metrics, started, partition, events) = (
            self.metrics.clone(),
            std::time::Instant::now(),
            batch.partition().to_owned(),
            batch.len(),
        );
        let call = self.inner.call(batch);
        Box::pin(async move {
            let result = call.instrument(span.clone()).await.map_err(Into::into);
            if let Err(error) = &result {
                span.record("error.type", tracing::field::display(error));
            }
            #[cfg(feature = "opentelemetry")]
            metrics.record(
                &partition,
                events,
                started.elapsed(),
                result.as_ref().err().map(|e| e.as_ref() as _),
            );
            result
        })
    }
}
