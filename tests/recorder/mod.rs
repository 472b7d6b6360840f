//! The recording batch service the batching and routing tests share: it accepts every
//! batch and records when it came, for which partition, with how many events and bytes.
//! Some fields are read by only one of those test files, so they allow `dead_code`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use streaming_producer::Batch;
use tokio::time::Instant;

/// What the recorder saw of one batch handed to it.
#[derive(Clone, Debug)]
pub(crate) struct Published {
    /// When the batch reached the service (virtual time).
    pub(crate) at: Instant,
    /// The partition the batch was for.
    #[allow(dead_code)]
    pub(crate) partition: String,
    /// How many events it held.
    pub(crate) events: usize,
    /// Its encoded size, as [`Batch::size_in_bytes`] counts it.
    #[allow(dead_code)]
    pub(crate) bytes: usize,
}

pub(crate) type Log = Arc<Mutex<Vec<Published>>>;

/// A batch service that accepts everything and records each batch as [`Published`].
pub(crate) fn recorder() -> (
    impl tower::Service<Batch, Response = (), Error = Infallible, Future = impl Send + 'static>
        + Clone
        + Send
        + 'static,
    Log,
) {
    slow_recorder(Duration::ZERO)
}

/// [`recorder`], with each send taking `takes`.
pub(crate) fn slow_recorder(
    takes: Duration,
) -> (
    impl tower::Service<Batch, Response = (), Error = Infallible, Future = impl Send + 'static>
        + Clone
        + Send
        + 'static,
    Log,
) {
    let log: Log = Arc::default();
    let l = log.clone();
    let service = tower::service_fn(move |batch: Batch| {
        l.lock().unwrap().push(Published {
            at: Instant::now(),
            partition: batch.partition().to_owned(),
            events: batch.len(),
            bytes: batch.size_in_bytes(),
        });
        async move {
            if !takes.is_zero() {
                tokio::time::sleep(takes).await;
            }
            Ok::<_, Infallible>(())
        }
    });
    (service, log)
}
