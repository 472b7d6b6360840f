//! Retrying failed requests with exponential backoff, for services that hand the
//! request back in their error (so nothing is cloned and nothing is lost).
//!
//! ```
//! use std::time::Duration;
//! use streaming_producer_layers::retry::RetryPolicy;
//!
//! let policy = RetryPolicy::default(); // 3 retries, 0.8 s doubling up to 60 s, 8% jitter
//! assert_eq!(policy.max_retries(), 3);
//! let exact = policy.with_jitter(0.0);
//! assert_eq!(exact.delay(0, 0.5), Duration::from_millis(800));
//! assert_eq!(exact.delay(2, 0.5), Duration::from_millis(3200));
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service, ServiceExt};

/// An error that says whether the request may be tried again, and gives it back.
pub trait Retryable<Request>: Sized {
    /// Whether trying the same request again may succeed.
    fn is_retryable(&self) -> bool;

    /// The request, to try again; `Err(self)` if the error does not carry it.
    fn into_request(self) -> Result<Request, Self>;

    /// When the request stops being worth trying: no retry starts at or after it.
    /// `None` (the default) for no limit.
    fn deadline(&self) -> Option<tokio::time::Instant> {
        None
    }
}

/// How often and how patiently to retry: exponential backoff with jitter.
///
/// The delay before retry `n` (0-based) is `min(initial × 2ⁿ, max) × (1 + jitter × u)`
/// with `u` uniform in `[0, 1)`, capped at `max`. The defaults are the .NET SDK's:
/// 3 retries, 0.8 s initial delay, 60 s maximum, 8% jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    max_retries: u32,
    initial_delay: Duration,
    max_delay: Duration,
    jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(60),
            jitter: 0.08,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self::default().with_max_retries(0)
    }

    /// How many times a failed request is tried again.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The delay before the first retry.
    pub fn with_initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The longest delay between tries.
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Random extra delay, as a fraction of the delay (0 for none).
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// How many times a failed request is tried again.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The delay before retry `retry` (0-based), for a uniform sample `u` in `[0, 1)`.
    pub fn delay(&self, retry: u32, u: f64) -> Duration {
        let base = self
            .initial_delay
            .saturating_mul(2u32.saturating_pow(retry.min(31)))
            .min(self.max_delay);
        base.mul_f64(1.0 + self.jitter * u.clamp(0.0, 1.0))
            .min(self.max_delay)
    }
}

/// Wraps a service in [`Retry`].
#[derive(Debug, Clone)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer retrying by `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner, self.policy.clone())
    }
}

/// Retries requests whose error is [`Retryable`], sleeping between tries, until the
/// retries are used up or the next try could only start at or after the request's
/// [deadline](Retryable::deadline).
///
/// One request is tried to the end (success, a permanent error, or retries used up)
/// before its response resolves, so a caller that waits for each response before the
/// next request keeps the requests in order across retries.
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    policy: RetryPolicy,
    seed: Arc<AtomicU64>,
}

impl<S> Retry<S> {
    /// Retries `inner` by `policy`.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Self {
            inner,
            policy,
            seed: Arc::new(AtomicU64::new(0x9E37_79B9_7F4A_7C15)),
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// A uniform sample in `[0, 1)` from SplitMix64 (Steele, Lea, Flood 2014).
fn sample(seed: &AtomicU64) -> f64 {
    let mut z = seed
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

impl<S, Request> Service<Request> for Retry<S>
where
    S: Service<Request> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Retryable<Request> + Send,
    Request: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service that was made ready serves the first try; clones serve retries.
        let ready = self.inner.clone();
        let first = std::mem::replace(&mut self.inner, ready);
        let mut again = self.inner.clone();
        let policy = self.policy.clone();
        let seed = self.seed.clone();
        Box::pin(async move {
            let mut result = first.oneshot(request).await;
            let mut retry = 0;
            while retry < policy.max_retries {
                let error = match result {
                    Ok(response) => return Ok(response),
                    Err(e) if e.is_retryable() => e,
                    Err(e) => return Err(e),
                };
                let delay = policy.delay(retry, sample(&seed));
                if error
                    .deadline()
                    .is_some_and(|d| tokio::time::Instant::now() + delay >= d)
                {
                    return Err(error);
                }
                let request = match error.into_request() {
                    Ok(r) => r,
                    Err(e) => return Err(e),
                };
                tokio::time::sleep(delay).await;
                retry += 1;
                result = match again.ready().await {
                    Ok(service) => service.call(request).await,
                    Err(e) => Err(e),
                };
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, PartialEq)]
    struct Failure {
        retryable: bool,
        request: Option<u32>,
    }

    impl Retryable<u32> for Failure {
        fn is_retryable(&self) -> bool {
            self.retryable
        }

        fn into_request(self) -> Result<u32, Self> {
            match self.request {
                Some(r) => Ok(r),
                None => Err(self),
            }
        }
    }

    /// A service that fails with the scripted errors, then succeeds; records call times.
    fn scripted(
        script: Vec<bool>,
    ) -> (
        impl Service<u32, Response = u32, Error = Failure, Future = impl Send> + Clone + Send + 'static,
        Arc<Mutex<Vec<tokio::time::Instant>>>,
    ) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let c = calls.clone();
        let service = tower::service_fn(move |request: u32| {
            c.lock().unwrap().push(tokio::time::Instant::now());
            let next = script.lock().unwrap().next();
            async move {
                match next {
                    Some(retryable) => Err(Failure {
                        retryable,
                        request: Some(request),
                    }),
                    None => Ok(request * 10),
                }
            }
        });
        (service, calls)
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_growing_delays() {
        let (service, calls) = scripted(vec![true, true]);
        let policy = RetryPolicy::default().with_jitter(0.0);
        let start = tokio::time::Instant::now();
        let response = Retry::new(service, policy).oneshot(7).await.unwrap();
        assert_eq!(response, 70);
        let offsets: Vec<Duration> = calls.lock().unwrap().iter().map(|t| *t - start).collect();
        assert_eq!(
            offsets,
            [
                Duration::ZERO,
                Duration::from_millis(800),
                Duration::from_millis(2400)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let (service, calls) = scripted(vec![false]);
        let e = Retry::new(service, RetryPolicy::default())
            .oneshot(1)
            .await
            .unwrap_err();
        assert!(!e.retryable);
        assert_eq!(calls.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn when_retries_run_out_the_last_error_comes_back_with_the_request() {
        let (service, calls) = scripted(vec![true; 10]);
        let policy = RetryPolicy::default().with_max_retries(2);
        let e = Retry::new(service, policy).oneshot(5).await.unwrap_err();
        assert_eq!(
            e,
            Failure {
                retryable: true,
                request: Some(5)
            }
        );
        assert_eq!(calls.lock().unwrap().len(), 3);
    }

    #[derive(Debug)]
    struct Late(tokio::time::Instant);

    impl Retryable<u32> for Late {
        fn is_retryable(&self) -> bool {
            true
        }

        fn into_request(self) -> Result<u32, Self> {
            Ok(1)
        }

        fn deadline(&self) -> Option<tokio::time::Instant> {
            Some(self.0)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_at_or_after_the_deadline() {
        let start = tokio::time::Instant::now();
        // Tries at 0, 0.8 s and 2.4 s fit before 3 s; the next would start at 5.6 s.
        let deadline = start + Duration::from_secs(3);
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        let service = tower::service_fn(move |_: u32| {
            c.lock().unwrap().push(tokio::time::Instant::now() - start);
            async move { Err::<u32, _>(Late(deadline)) }
        });
        let policy = RetryPolicy::default().with_jitter(0.0).with_max_retries(10);
        let e = Retry::new(service, policy).oneshot(1).await.unwrap_err();
        assert_eq!(e.0, deadline);
        assert_eq!(
            *calls.lock().unwrap(),
            [
                Duration::ZERO,
                Duration::from_millis(800),
                Duration::from_millis(2400)
            ]
        );
        // It gives up as soon as it knows, without sleeping towards the deadline.
        assert_eq!(
            tokio::time::Instant::now() - start,
            Duration::from_millis(2400)
        );
    }

    #[test]
    fn delays_double_up_to_the_maximum_and_jitter_stays_within_it() {
        let p = RetryPolicy::default()
            .with_initial_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(5));
        assert_eq!(
            p.clone().with_jitter(0.0).delay(0, 0.9),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.clone().with_jitter(0.0).delay(2, 0.9),
            Duration::from_secs(4)
        );
        assert_eq!(
            p.clone().with_jitter(0.0).delay(10, 0.9),
            Duration::from_secs(5)
        );
        let jittered = p.with_jitter(0.5).delay(1, 0.5);
        assert_eq!(jittered, Duration::from_millis(2500));
        let seed = AtomicU64::new(1);
        assert!((0..1000)
            .map(|_| sample(&seed))
            .all(|u| (0.0..1.0).contains(&u)));
    }
}
