//! The policy on virtual time, with tower_test's mock service.

use std::time::Duration;

use tokio::time::Instant;
use tower::retry::{Retry, RetryLayer};
use tower::{Layer, ServiceExt};
use tower_test::mock;

use super::{EventHubsRetry, RetryPolicy};
use crate::batch::testing::TestBatch;
use crate::batch::PartitionBatch as _;
use crate::error::Error;
use tower::BoxError;

type Handle = mock::Handle<TestBatch, ()>;

fn retrying(policy: RetryPolicy) -> (Retry<EventHubsRetry, mock::Mock<TestBatch, ()>>, Handle) {
    let (service, handle) = mock::pair::<TestBatch, ()>();
    (
        RetryLayer::new(EventHubsRetry::new(policy.with_jitter(0.0))).layer(service),
        handle,
    )
}

fn busy() -> Error {
    Error::rejected("com.microsoft:server-busy", "throttled")
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_after_doubling_delays() {
    let (service, mut handle) = retrying(RetryPolicy::default());
    let started = Instant::now();
    let call = tokio::spawn(service.oneshot(TestBatch::new("0", &["x"])));
    let mut tried_at = Vec::new();
    for _ in 0..3 {
        let (_, reply) = handle.next_request().await.expect("a try");
        tried_at.push(started.elapsed());
        reply.send_error(busy());
    }
    let (_, reply) = handle.next_request().await.expect("the last try");
    tried_at.push(started.elapsed());
    reply.send_response(());
    call.await.unwrap().expect("the fourth try succeeded");
    assert_eq!(
        tried_at,
        [0, 800, 2400, 5600].map(Duration::from_millis).to_vec()
    );
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_and_foreign_errors_are_not_retried() {
    for error in [
        BoxError::from(Error::too_large(2, 1)),
        BoxError::from(std::io::Error::other("a layer's own failure")),
    ] {
        let (service, mut handle) = retrying(RetryPolicy::default());
        let call = tokio::spawn(service.oneshot(TestBatch::new("0", &["x"])));
        let (_, reply) = handle.next_request().await.expect("a try");
        reply.send_error(error);
        assert!(call.await.unwrap().is_err());
        assert!(handle.next_request().await.is_none(), "no second try");
    }
}

#[tokio::test(start_paused = true)]
async fn a_try_that_timed_out_is_retried() {
    let (service, mut handle) = retrying(RetryPolicy::default().with_max_retries(1));
    let call = tokio::spawn(service.oneshot(TestBatch::new("0", &["x"])));
    let (_, reply) = handle.next_request().await.expect("a try");
    reply.send_error(tower::timeout::error::Elapsed::new());
    let (_, reply) = handle.next_request().await.expect("a retry");
    reply.send_response(());
    call.await.unwrap().expect("retried");
}

#[tokio::test(start_paused = true)]
async fn when_retries_run_out_the_last_error_comes_back() {
    let (service, mut handle) = retrying(RetryPolicy::default().with_max_retries(2));
    let call = tokio::spawn(service.oneshot(TestBatch::new("0", &["x"])));
    for _ in 0..3 {
        let (_, reply) = handle.next_request().await.expect("a try");
        reply.send_error(busy());
    }
    let error = Error::from(call.await.unwrap().unwrap_err());
    assert!(error.is_retryable() && error.condition() == Some("com.microsoft:server-busy"));
}

#[tokio::test(start_paused = true)]
async fn no_try_starts_at_or_after_the_deadline() {
    let (service, mut handle) = retrying(RetryPolicy::default().with_max_retries(10));
    let started = Instant::now();
    // Tries at 0, 0.8 and 2.4 s; the next would start at 5.6 s.
    let batch = TestBatch::new("0", &["x"]).with_deadline(Instant::now() + Duration::from_secs(5));
    let call = tokio::spawn(service.oneshot(batch));
    for _ in 0..3 {
        let (_, reply) = handle.next_request().await.expect("a try");
        reply.send_error(busy());
    }
    assert!(call.await.unwrap().is_err());
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(2400),
        "no wait for a try it would not make"
    );
    assert!(handle.next_request().await.is_none(), "no fourth try");
}

#[tokio::test(start_paused = true)]
async fn retries_resend_the_same_events() {
    let (service, mut handle) = retrying(RetryPolicy::default());
    let batch = TestBatch::new("2", &["x"]);
    let call = tokio::spawn(service.oneshot(batch));
    let (first, reply) = handle.next_request().await.expect("a try");
    reply.send_error(busy());
    let (second, reply) = handle.next_request().await.expect("a retry");
    reply.send_response(());
    call.await.unwrap().unwrap();
    assert_eq!(first.events, second.events);
    assert_eq!(second.partition(), "2");
}
