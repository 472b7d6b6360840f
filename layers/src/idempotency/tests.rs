//! The layer on virtual time, with tower_test's mock service and producer states of
//! the test's own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower::retry::RetryLayer;
use tower::{BoxError, Layer, ServiceExt};
use tower_test::mock;

use super::{Attach, IdempotencyLayer, ProducerState, ProducerStates, ReadFuture};
use crate::batch::testing::TestBatch;
use crate::batch::Stamp;
use crate::error::Error;
use crate::retry::{EventHubsRetry, RetryPolicy};
use eventhubs_protocol::OUT_OF_ORDER_SEQUENCE;

/// The service's states: group 7 has stored up to 41; each new group gets the next id.
#[derive(Clone, Default)]
struct States {
    reads: Arc<Mutex<Vec<Attach>>>,
    groups: Arc<AtomicUsize>,
}

impl ProducerStates for States {
    fn read(&self, _partition: &str, attach: Attach) -> ReadFuture {
        self.reads.lock().unwrap().push(attach);
        let state = match attach {
            Attach::Current => ProducerState {
                producer_id: 7,
                epoch: 1,
                last_sequence: 41,
            },
            Attach::NewProducer => ProducerState {
                producer_id: 8 + self.groups.fetch_add(1, Ordering::SeqCst) as i64,
                epoch: 0,
                last_sequence: -1,
            },
        };
        Box::pin(async move { Ok(state) })
    }
}

type Handle = mock::Handle<TestBatch, ()>;
type Stack = super::Idempotency<tower::retry::Retry<EventHubsRetry, mock::Mock<TestBatch, ()>>>;

fn stack(policy: RetryPolicy) -> (Stack, Handle, States) {
    let states = States::default();
    let (service, handle) = mock::pair::<TestBatch, ()>();
    let policy = policy.with_jitter(0.0);
    let retry = RetryLayer::new(EventHubsRetry::new(policy.clone())).layer(service);
    let layer = IdempotencyLayer::new(states.clone(), policy, Duration::from_secs(5));
    (layer.layer(retry), handle, states)
}

fn stamp(sequence: i32, producer_id: i64, epoch: i16) -> Option<Stamp> {
    Some(Stamp {
        sequence,
        producer_id,
        epoch,
    })
}

/// Publishes `batch` through `service`, answering its tries with `replies` in turn;
/// returns the result and the stamp each try carried.
async fn publish(
    service: &mut Stack,
    handle: &mut Handle,
    batch: TestBatch,
    replies: Vec<Result<(), Error>>,
) -> (Result<(), BoxError>, Vec<Option<Stamp>>) {
    let call = tokio::spawn(service.clone().oneshot(batch));
    let mut stamps = Vec::new();
    for reply in replies {
        let (tried, respond) = handle.next_request().await.expect("a try");
        stamps.push(tried.stamp());
        match reply {
            Ok(()) => respond.send_response(()),
            Err(e) => {
                if e.is_ambiguous() {
                    tried.mark_maybe_stored();
                }
                respond.send_error(e)
            }
        }
    }
    (call.await.unwrap(), stamps)
}

/// The stamp of a one-event batch published after, which the service accepts.
async fn next_stamp(service: &mut Stack, handle: &mut Handle, event: &str) -> Option<Stamp> {
    let batch = TestBatch::new("0", &[event]);
    let (result, stamps) = publish(service, handle, batch, vec![Ok(())]).await;
    result.expect("accepted");
    stamps[0]
}

fn busy() -> Error {
    Error::rejected("com.microsoft:server-busy", "throttled")
}

#[tokio::test(start_paused = true)]
async fn retries_resend_the_same_numbers_and_the_next_batch_follows_them() {
    let (mut service, mut handle, states) = stack(RetryPolicy::default());
    let three = TestBatch::new("0", &["a", "b", "c"]);
    let (result, stamps) =
        publish(&mut service, &mut handle, three, vec![Err(busy()), Ok(())]).await;
    result.expect("the retry succeeded");
    assert_eq!(stamps, [stamp(42, 7, 1), stamp(42, 7, 1)]);
    assert_eq!(
        next_stamp(&mut service, &mut handle, "d").await,
        stamp(45, 7, 1)
    );
    assert_eq!(
        *states.reads.lock().unwrap(),
        [Attach::Current],
        "one read per partition"
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_certainly_not_stored_gives_its_numbers_to_the_next() {
    let (mut service, mut handle, _) = stack(RetryPolicy::default());
    let refused = TestBatch::new("0", &["a", "b"]);
    let (result, _) = publish(
        &mut service,
        &mut handle,
        refused,
        vec![Err(Error::too_large(9, 1))],
    )
    .await;
    assert!(Error::from(result.unwrap_err()).is_too_large());
    assert_eq!(
        next_stamp(&mut service, &mut handle, "c").await,
        stamp(42, 7, 1),
        "no gap in the numbers"
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_unknown_fate_is_tried_with_its_numbers_until_its_deadline() {
    let (mut service, mut handle, states) = stack(RetryPolicy::default().with_max_retries(1));
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(10);
    let batch = TestBatch::new("0", &["a"]).with_deadline(deadline);
    let mut call = tokio::spawn(service.clone().oneshot(batch));
    // Every try is lost after its transfer, until the layer gives up.
    let mut tries = Vec::new();
    let result = loop {
        tokio::select! {
            result = &mut call => break result.unwrap(),
            Some((tried, respond)) = handle.next_request() => {
                tries.push((started.elapsed(), tried.stamp()));
                tried.mark_maybe_stored();
                respond.send_error(Error::connection("lost").into_ambiguous());
            }
        }
    };
    assert!(Error::from(result.unwrap_err()).is_ambiguous());
    assert!(tries.len() > 2, "tried past the retry count: {tries:?}");
    assert!(tries.iter().all(|(at, _)| *at < Duration::from_secs(10)));
    assert!(
        tries.iter().all(|(_, s)| *s == stamp(42, 7, 1)),
        "{tries:?}"
    );
    // Its numbers are never given to other events: a new producer group first.
    assert_eq!(
        next_stamp(&mut service, &mut handle, "b").await,
        stamp(0, 8, 0)
    );
    assert_eq!(
        *states.reads.lock().unwrap(),
        [Attach::Current, Attach::NewProducer]
    );
}

#[tokio::test(start_paused = true)]
async fn an_out_of_order_refusal_starts_a_new_group_and_tries_once_more() {
    let (mut service, mut handle, _) = stack(RetryPolicy::none());
    let refusal = Error::rejected(OUT_OF_ORDER_SEQUENCE, "the service lost the producer");
    let batch = TestBatch::new("0", &["a", "b"]);
    let (result, stamps) =
        publish(&mut service, &mut handle, batch, vec![Err(refusal), Ok(())]).await;
    result.expect("stored under the new group");
    assert_eq!(stamps, [stamp(42, 7, 1), stamp(0, 8, 0)]);
    assert_eq!(
        next_stamp(&mut service, &mut handle, "c").await,
        stamp(2, 8, 0)
    );
}
