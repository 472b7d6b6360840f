//! The producer's contracts, against the in-process emulator over real AMQP.

use std::time::Duration;

use eventhubs_emulator::{Emulator, EmulatorHandle, Fault, FaultKind};
use eventhubs_protocol::partition_key::partition_index;
use futures_util::{FutureExt, StreamExt};
use streaming_producer::{
    BatchOutcome, EventData, Outcomes, Partition, Producer, ProducerBuilder, RetryPolicy,
};

async fn emulator(partitions: u32) -> EmulatorHandle {
    Emulator::builder()
        .hub("eh1", partitions)
        .start()
        .await
        .unwrap()
}

async fn producer(emulator: &EmulatorHandle, max_wait_ms: u64) -> (Producer, Outcomes) {
    Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(max_wait_ms))
        .try_timeout(Duration::from_secs(10))
        // Tests that wait on flush or close set max_wait out of reach.
        .delivery_timeout(Duration::from_millis(max_wait_ms) + Duration::from_secs(120))
        .build()
        .await
        .unwrap()
}

/// A producer that holds at most `max_pending` events, with a 10 s try timeout.
fn bounded(emulator: &EmulatorHandle, max_wait: Duration, max_pending: usize) -> ProducerBuilder {
    Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(max_wait)
        .max_pending_events(max_pending)
        .try_timeout(Duration::from_secs(10))
}

fn bodies(emulator: &EmulatorHandle, partition: &str) -> Vec<String> {
    emulator
        .events("eh1", partition)
        .unwrap()
        .iter()
        .map(|e| String::from_utf8(e.body()).unwrap())
        .collect()
}

/// Collects outcomes until `events` events are accounted for.
async fn outcomes_for(outcomes: &mut Outcomes, events: usize) -> Vec<BatchOutcome> {
    let mut seen = 0;
    let mut all = Vec::new();
    while seen < events {
        let o = outcomes.next().await.expect("an outcome");
        seen += o.events.len();
        all.push(o);
    }
    all
}

#[tokio::test]
async fn events_of_a_partition_are_published_in_order() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = producer(&emulator, 5).await;
    let sent: Vec<String> = (0..2000).map(|i| format!("e{i}")).collect();
    for body in &sent {
        producer
            .enqueue(EventData::new(body.clone()).with_partition_id("1"))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let results = outcomes_for(&mut outcomes, sent.len()).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    assert!(results.len() < sent.len(), "events were batched");
    assert_eq!(bodies(&emulator, "1"), sent);
    assert!(bodies(&emulator, "0").is_empty());
}

#[tokio::test]
async fn keys_land_on_the_partition_the_service_hash_names_and_are_stamped() {
    let emulator = emulator(4).await;
    let (mut producer, mut outcomes) = producer(&emulator, 5).await;
    let keys = ["alphabet", "TheBestParitionEver", "7", "131", "FWfAT"];
    for (i, key) in keys.iter().cycle().take(50).enumerate() {
        producer
            .enqueue(EventData::new(format!("{key}:{i}")).with_partition_key(*key))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let results = outcomes_for(&mut outcomes, 50).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    for key in keys {
        let partition = partition_index(key, 4).to_string();
        let stored = emulator.events("eh1", &partition).unwrap();
        let mine: Vec<_> = stored
            .iter()
            .filter(|e| e.partition_key().as_deref() == Some(key))
            .collect();
        assert_eq!(mine.len(), 10, "{key} on partition {partition}");
        assert!(mine
            .iter()
            .all(|e| String::from_utf8(e.body()).unwrap().starts_with(key)));
    }
}

#[tokio::test]
async fn flush_publishes_open_batches_and_waits_for_their_outcomes() {
    let emulator = emulator(2).await;
    // A max_wait so long that only the flush can publish.
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    for i in 0..10 {
        producer
            .enqueue(EventData::new(format!("f{i}")))
            .await
            .unwrap();
    }
    assert_eq!(producer.total_pending(), 10);
    producer.flush().await.unwrap();
    // The outcomes are already queued when flush returns; their events stay pending,
    // holding room under max_pending_events, until the outcomes are read.
    assert_eq!(producer.total_pending(), 10);
    let mut events = 0;
    while let Some(Some(o)) = outcomes.next().now_or_never() {
        assert!(o.is_success());
        events += o.events.len();
    }
    assert_eq!(events, 10);
    assert_eq!(producer.total_pending(), 0);
    assert_eq!(
        bodies(&emulator, "0").len() + bodies(&emulator, "1").len(),
        10
    );
}

#[tokio::test]
async fn a_flush_does_not_wait_for_events_enqueued_after_it() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    // Short max_wait: the later event really goes out, to a partition that never answers.
    let (mut producer, _outcomes) = producer(&emulator, 1).await;
    producer
        .enqueue(EventData::new("before").with_partition_id("0"))
        .await
        .unwrap();
    // Partition 1 stalls: an event there would never get an outcome.
    emulator.add_fault(Fault::new(FaultKind::Stall).partition("1"));
    let flush = producer.flush();
    let mut other = producer.clone();
    let (flushed, _) = tokio::join!(flush, async {
        other
            .enqueue(EventData::new("after").with_partition_id("1"))
            .await
            .unwrap();
    });
    flushed.unwrap();
    assert_eq!(bodies(&emulator, "0"), ["before"]);
    assert_eq!(producer.pending("1"), 1);
}

#[tokio::test]
async fn close_publishes_everything_pending() {
    let emulator = emulator(3).await;
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    for i in 0..100 {
        producer
            .enqueue(EventData::new(format!("c{i}")))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let results = outcomes_for(&mut outcomes, 100).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    assert!(
        outcomes.next().await.is_none(),
        "the stream ends after close"
    );
    let total: usize = (0..3)
        .map(|p| bodies(&emulator, &p.to_string()).len())
        .sum();
    assert_eq!(total, 100);
    let err = producer.enqueue(EventData::new("late")).await.unwrap_err();
    assert!(err.error().is_closed());
    assert_eq!(err.into_event().unwrap().body().as_ref(), b"late");
}

#[tokio::test]
async fn close_abandon_hands_unsent_events_back() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    for i in 0..20 {
        producer
            .enqueue(EventData::new(format!("a{i}")))
            .await
            .unwrap();
    }
    producer.close_abandon().await.unwrap();
    let results = outcomes_for(&mut outcomes, 20).await;
    assert!(results.iter().all(BatchOutcome::is_abandoned));
    let mut returned: Vec<String> = results
        .iter()
        .flat_map(|o| {
            o.events
                .iter()
                .map(|e| String::from_utf8(e.body().to_vec()).unwrap())
        })
        .collect();
    returned.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
    expected.sort();
    assert_eq!(returned, expected);
    assert!(bodies(&emulator, "0").is_empty() && bodies(&emulator, "1").is_empty());
}

#[tokio::test]
async fn one_partition_is_flushed_by_id_or_by_key_and_the_others_keep_batching() {
    let emulator = emulator(4).await;
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    let keyed = partition_index("user-7", 4).to_string();
    let other = if keyed == "0" { "1" } else { "0" };
    for i in 0..5 {
        producer
            .enqueue(EventData::new(format!("k{i}")).with_partition_key("user-7"))
            .await
            .unwrap();
        producer
            .enqueue(EventData::new(format!("o{i}")).with_partition_id(other))
            .await
            .unwrap();
    }
    producer
        .flush_partition(Partition::key("user-7"))
        .await
        .unwrap();
    // The keyed partition is done when flush_partition returns; the other still waits.
    assert_eq!(bodies(&emulator, &keyed), ["k0", "k1", "k2", "k3", "k4"]);
    assert!(bodies(&emulator, other).is_empty());
    let o = outcomes.next().now_or_never().flatten().expect("queued");
    assert!(o.is_success() && o.partition == keyed);
    // Read, its events are no longer pending.
    assert_eq!(producer.pending(&keyed), 0);
    assert_eq!(producer.pending(other), 5);
    producer
        .flush_partition(Partition::id(other))
        .await
        .unwrap();
    assert_eq!(bodies(&emulator, other).len(), 5);
    assert_eq!(producer.total_pending(), 5, "until its outcome is read");
    outcomes
        .next()
        .await
        .expect("the other partition's outcome");
    assert_eq!(producer.total_pending(), 0);
    let unknown = producer
        .flush_partition(Partition::id("9"))
        .await
        .unwrap_err();
    assert!(unknown.is_unknown_partition(), "{unknown}");
}

#[tokio::test]
async fn clearing_a_partition_hands_its_unsent_events_back_as_abandoned() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    for i in 0..6 {
        producer
            .enqueue(EventData::new(format!("c{i}")).with_partition_id((i % 2).to_string()))
            .await
            .unwrap();
    }
    assert_eq!(
        producer.clear_partition(Partition::id("1")).await.unwrap(),
        3
    );
    let o = outcomes.next().await.unwrap();
    assert!(o.is_abandoned());
    assert_eq!(o.partition, "1");
    let bodies_back: Vec<_> = o.events.iter().map(|e| e.body().to_vec()).collect();
    assert_eq!(
        bodies_back,
        [b"c1".to_vec(), b"c3".to_vec(), b"c5".to_vec()]
    );
    assert_eq!(producer.pending("1"), 0);
    assert_eq!(producer.pending("0"), 3);
    // Nothing left to clear; the partition still takes events.
    assert_eq!(
        producer.clear_partition(Partition::id("1")).await.unwrap(),
        0
    );
    producer
        .enqueue(EventData::new("after").with_partition_id("1"))
        .await
        .unwrap();
    producer.close().await.unwrap();
    assert_eq!(bodies(&emulator, "1"), ["after"]);
    assert_eq!(bodies(&emulator, "0"), ["c0", "c2", "c4"]);
}

/// A two-partition emulator whose partition 0 never answers, and a producer on it that
/// publishes at once and holds at most `max_pending` events.
async fn stuck_partition_0(max_pending: usize) -> (EmulatorHandle, Producer, Outcomes) {
    let emulator = emulator(2).await;
    emulator.add_fault(Fault::new(FaultKind::Stall).partition("0"));
    let (producer, outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .max_pending_events(max_pending)
        .build()
        .await
        .unwrap();
    (emulator, producer, outcomes)
}

#[tokio::test]
async fn backpressure_bounds_pending_events() {
    let (_emulator, mut producer, outcomes) = stuck_partition_0(5).await;
    for i in 0..5 {
        producer
            .enqueue(EventData::new(format!("stuck{i}")).with_partition_id("0"))
            .await
            .unwrap();
    }
    // Five events are pending on a partition that never answers: no room for a sixth.
    assert!(producer
        .enqueue(EventData::new("sixth").with_partition_id("1"))
        .now_or_never()
        .is_none());
    assert_eq!(producer.total_pending(), 5);
    drop(outcomes);
}

#[tokio::test]
async fn with_room_a_stuck_partition_stalls_no_other() {
    let (_emulator, mut producer, mut outcomes) = stuck_partition_0(50).await;
    producer
        .enqueue(EventData::new("stuck").with_partition_id("0"))
        .await
        .unwrap();
    for i in 0..10 {
        producer
            .enqueue(EventData::new(format!("free{i}")).with_partition_id("1"))
            .await
            .unwrap();
    }
    // The other partition keeps publishing while partition 0 is stuck.
    let results = outcomes_for(&mut outcomes, 10).await;
    assert!(results.iter().all(|o| o.is_success() && o.partition == "1"));
    assert_eq!(producer.pending("0"), 1);
}

#[tokio::test]
async fn an_oversized_event_fails_alone() {
    let emulator = Emulator::builder()
        .hub("eh1", 1)
        .max_message_size(64 * 1024)
        .start()
        .await
        .unwrap();
    let (mut producer, mut outcomes) = producer(&emulator, 3_600_000).await;
    producer.enqueue(EventData::new("small-1")).await.unwrap();
    producer
        .enqueue(EventData::new(vec![b'x'; 100 * 1024]))
        .await
        .unwrap();
    producer.enqueue(EventData::new("small-2")).await.unwrap();
    producer.close().await.unwrap();
    let results = outcomes_for(&mut outcomes, 3).await;
    let failed: Vec<_> = results.iter().filter(|o| !o.is_success()).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].events.len(), 1);
    assert!(failed[0].result.as_ref().unwrap_err().is_too_large());
    assert_eq!(bodies(&emulator, "0"), ["small-1", "small-2"]);
}

#[tokio::test]
async fn an_unknown_partition_id_fails_that_event_with_a_typed_error() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = producer(&emulator, 1).await;
    producer
        .enqueue(EventData::new("lost").with_partition_id("7"))
        .await
        .unwrap();
    let o = outcomes.next().await.unwrap();
    assert_eq!(o.partition, "7");
    assert!(o.result.unwrap_err().is_unknown_partition());
    assert_eq!(o.events.get(0).unwrap().body().as_ref(), b"lost");
}

#[tokio::test]
async fn malformed_connection_strings_and_bad_keys_fail_the_build_with_typed_errors() {
    let e = Producer::builder()
        .connection_string("Endpoint=nonsense")
        .build()
        .await
        .unwrap_err();
    assert!(e.is_connection_string(), "{e}");

    let emulator = emulator(1).await;
    let wrong = emulator
        .connection_string_for("eh1")
        .replace("SAS_KEY_VALUE", "wrong");
    let e = Producer::builder()
        .connection_string(&wrong)
        .build()
        .await
        .unwrap_err();
    assert!(e.is_auth(), "{e}");

    let e = Producer::builder()
        .connection_string(&emulator.connection_string())
        .hub("nosuchhub")
        .build()
        .await
        .unwrap_err();
    assert!(!e.is_retryable() && e.is_not_found(), "{e}");
    // The message names the hub and where its name comes from, and keeps the service's.
    let text = e.to_string();
    assert!(text.contains("no event hub named 'nosuchhub'"), "{e}");
    assert!(text.contains("EntityPath"), "{e}");
    assert!(text.contains("could not be found"), "{e}");
}

async fn producer_retrying(emulator: &EmulatorHandle, policy: RetryPolicy) -> (Producer, Outcomes) {
    Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .retry_policy(policy)
        .build()
        .await
        .unwrap()
}

async fn producer_without_retries(emulator: &EmulatorHandle) -> (Producer, Outcomes) {
    producer_retrying(emulator, RetryPolicy::none()).await
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy::default().with_initial_delay(Duration::from_millis(10))
}

#[tokio::test]
async fn a_dropped_connection_fails_the_batch_retryably_and_the_next_one_reconnects() {
    let emulator = emulator(1).await;
    emulator.add_fault("drop-connection,count=1".parse().unwrap());
    let (mut producer, mut outcomes) = producer_without_retries(&emulator).await;
    producer.enqueue(EventData::new("ambiguous")).await.unwrap();
    let first = outcomes.next().await.unwrap();
    let error = first.result.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    // Stored, yet reported failed: the error must say that it may have been.
    assert!(error.is_ambiguous(), "{error}");
    assert!(
        error.to_string().contains("may have been stored"),
        "{error}"
    );
    producer.enqueue(EventData::new("after")).await.unwrap();
    let second = outcomes.next().await.unwrap();
    assert!(second.is_success(), "{:?}", second.result);
    assert_eq!(bodies(&emulator, "0"), ["ambiguous", "after"]);
}

#[tokio::test]
async fn a_stream_can_be_forwarded_into_the_producer() {
    let emulator = emulator(4).await;
    let (producer, mut outcomes) = producer(&emulator, 5).await;
    let events = futures_util::stream::iter((0..500).map(|i| Ok(EventData::new(format!("s{i}")))));
    events.forward(producer).await.unwrap();
    let results = outcomes_for(&mut outcomes, 500).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    let total: usize = (0..4)
        .map(|p| bodies(&emulator, &p.to_string()).len())
        .sum();
    assert_eq!(total, 500);
}

/// A credential that signs with the emulator's key and reports every call.
#[derive(Debug)]
struct CountingCredential {
    inner: streaming_producer::SharedKeyCredential,
    calls: tokio::sync::watch::Sender<usize>,
}

impl streaming_producer::Credential for CountingCredential {
    fn token<'a>(&'a self, audience: &'a str) -> streaming_producer::TokenFuture<'a> {
        self.calls.send_modify(|n| *n += 1);
        self.inner.token(audience)
    }
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    let emulator = emulator(1).await;
    let (calls, mut seen) = tokio::sync::watch::channel(0);
    let credential = CountingCredential {
        inner: streaming_producer::SharedKeyCredential::new(
            eventhubs_emulator::DEFAULT_KEY_NAME,
            eventhubs_emulator::DEFAULT_KEY,
        )
        // Short-lived: refreshed at half its life.
        .with_validity(Duration::from_secs(2)),
        calls,
    };
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1").replace(
            ";SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE",
            "",
        ))
        .credential(credential)
        .max_wait(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    let after_start = *seen.borrow_and_update();
    // The refresh happens on its own, about a second later.
    tokio::time::timeout(
        Duration::from_secs(5),
        seen.wait_for(|n| *n > after_start + 1),
    )
    .await
    .expect("the token is put again before it expires")
    .unwrap();
    producer
        .enqueue(EventData::new("still authorized"))
        .await
        .unwrap();
    assert!(outcomes.next().await.unwrap().is_success());
}

#[tokio::test]
async fn a_detached_link_is_attached_again() {
    let emulator = emulator(1).await;
    emulator.add_fault("detach,count=1".parse().unwrap());
    let (mut producer, mut outcomes) = producer_without_retries(&emulator).await;
    producer.enqueue(EventData::new("detached")).await.unwrap();
    let first = outcomes.next().await.unwrap();
    let error = first.result.unwrap_err();
    assert_eq!(error.condition(), Some("amqp:link:detach-forced"));
    assert!(error.is_retryable());
    producer
        .enqueue(EventData::new("reattached"))
        .await
        .unwrap();
    assert!(outcomes.next().await.unwrap().is_success());
    assert_eq!(bodies(&emulator, "0"), ["reattached"]);
}

#[tokio::test]
async fn without_the_emulator_flag_the_producer_insists_on_tls() {
    // The emulator speaks plain AMQP: a TLS client must fail there, quickly and clearly.
    let emulator = emulator(1).await;
    let cloud_style = emulator
        .connection_string_for("eh1")
        .replace(";UseDevelopmentEmulator=true", "");
    let e = Producer::builder()
        .connection_string(&cloud_style)
        .try_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap_err();
    assert!(e.is_retryable() && !e.is_timeout(), "{e}");
    assert!(e.to_string().contains("amqps://127.0.0.1:"), "{e}");
    // It names the fix.
    assert!(
        e.to_string().contains("add UseDevelopmentEmulator=true"),
        "{e}"
    );
}

#[tokio::test]
async fn partition_properties_are_read_from_management() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = producer(&emulator, 1).await;
    let empty = producer.partition_properties("1").await.unwrap();
    assert!(empty.is_empty);
    assert_eq!(empty.last_enqueued_sequence_number, -1);
    assert_eq!(empty.last_enqueued_time, None);
    for i in 0..3 {
        producer
            .enqueue(EventData::new(format!("p{i}")).with_partition_id("1"))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let _ = outcomes_for(&mut outcomes, 3).await;
    let props = producer.partition_properties("1").await.unwrap();
    assert_eq!(props.id, "1");
    assert!(!props.is_empty);
    assert_eq!(props.last_enqueued_sequence_number, 2);
    assert!(props.last_enqueued_time.is_some());
    assert_eq!(producer.partition_ids(), ["0", "1"]);
    let e = producer.partition_properties("9").await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("status 400"), "{e}");
}

#[tokio::test]
async fn a_grown_partition_count_is_picked_up_and_keys_hash_over_it() {
    let emulator = emulator(2).await;
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    assert_eq!(producer.partition_ids().len(), 2);
    emulator.grow_partitions("eh1", 4).unwrap();
    // The periodic refresh does the same; calling it makes the test deterministic.
    assert_eq!(producer.refresh_partitions().await.unwrap().len(), 4);
    // "7" hashes to partition 1 of 2 but to partition 3 of 4.
    assert_eq!(partition_index("7", 4), 3);
    producer
        .enqueue(EventData::new("seven").with_partition_key("7"))
        .await
        .unwrap();
    producer
        .enqueue(EventData::new("new").with_partition_id("3"))
        .await
        .unwrap();
    let results = outcomes_for(&mut outcomes, 2).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    assert_eq!(bodies(&emulator, "3"), ["seven", "new"]);
}

#[tokio::test]
async fn throttled_batches_are_retried_and_stored_once() {
    let emulator = emulator(1).await;
    emulator.add_fault("throttle,count=2".parse().unwrap());
    let (mut producer, mut outcomes) = producer_retrying(&emulator, quick_retries()).await;
    producer.enqueue(EventData::new("busy")).await.unwrap();
    producer.enqueue(EventData::new("then fine")).await.unwrap();
    let results = outcomes_for(&mut outcomes, 2).await;
    assert!(results.iter().all(BatchOutcome::is_success), "{results:?}");
    // Order holds across the retries.
    assert_eq!(bodies(&emulator, "0").concat(), "busythen fine");
}

#[tokio::test]
async fn an_ambiguous_failure_is_retried_at_least_once() {
    let emulator = emulator(1).await;
    // Stored, then the connection drops before the acknowledgement.
    emulator.add_fault("drop-connection,count=1".parse().unwrap());
    let (mut producer, mut outcomes) = producer_retrying(&emulator, quick_retries()).await;
    producer.enqueue(EventData::new("maybe")).await.unwrap();
    assert!(outcomes.next().await.unwrap().is_success());
    // Without idempotent publishing the retry stores it again: at least once.
    assert_eq!(bodies(&emulator, "0"), ["maybe", "maybe"]);
}

#[tokio::test]
async fn permanent_rejections_are_not_retried() {
    let emulator = emulator(1).await;
    emulator.add_fault(
        "reject,condition=amqp:unauthorized-access,count=1"
            .parse()
            .unwrap(),
    );
    let (mut producer, mut outcomes) = producer_retrying(&emulator, quick_retries()).await;
    producer.enqueue(EventData::new("denied")).await.unwrap();
    let o = outcomes.next().await.unwrap();
    let error = o.result.unwrap_err();
    assert_eq!(error.condition(), Some("amqp:unauthorized-access"));
    // A refusal is a verdict: certainly not stored.
    assert!(!error.is_ambiguous(), "{error}");
    assert!(bodies(&emulator, "0").is_empty());
}

#[tokio::test]
async fn batches_filled_to_the_last_byte_are_accepted() {
    // Tiny events fill a batch to within a few bytes of the link's 1 MiB; the service
    // (here the emulator) must weigh it as it is written and take it.
    let emulator = emulator(1).await;
    let (mut producer, outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_secs(60))
        .max_pending_events(120_000)
        .build()
        .await
        .unwrap();
    let collector = tokio::spawn(outcomes.collect::<Vec<_>>());
    for i in 0..120_000u32 {
        let body = [(i % 251) as u8; 5];
        producer
            .enqueue(EventData::new(body.to_vec()))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let results = collector.await.unwrap();
    assert!(
        results.iter().all(BatchOutcome::is_success),
        "{:?}",
        results.iter().find(|o| !o.is_success()).map(|o| &o.result)
    );
    let fullest = results.iter().map(|o| o.size_in_bytes).max().unwrap();
    assert!(fullest > producer.max_batch_bytes() - 16, "{fullest}");
    assert_eq!(emulator.events("eh1", "0").unwrap().len(), 120_000);
}

#[tokio::test]
async fn a_cancelled_enqueue_accepts_nothing_and_a_cancelled_close_still_publishes() {
    let emulator = emulator(1).await;
    let (mut producer, mut outcomes) = bounded(&emulator, Duration::from_secs(3600), 1)
        .delivery_timeout(Duration::from_secs(7200))
        .build()
        .await
        .unwrap();
    producer.enqueue(EventData::new("accepted")).await.unwrap();
    // No room: the enqueue waits, and is dropped while it waits.
    assert!(producer
        .enqueue(EventData::new("never accepted"))
        .now_or_never()
        .is_none());
    assert_eq!(producer.total_pending(), 1);
    // A close polled once and dropped has closed the producer, and the shutdown goes on.
    assert!(producer.close().now_or_never().is_none());
    let e = producer
        .enqueue(EventData::new("too late"))
        .await
        .unwrap_err();
    assert!(e.error().is_closed(), "{}", e.error());
    let mut published = Vec::new();
    while let Some(outcome) = tokio::time::timeout(Duration::from_secs(10), outcomes.next())
        .await
        .expect("the shutdown publishes and ends the outcomes")
    {
        assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        published.extend(outcome.events.iter().map(|e| e.body().clone()));
    }
    assert_eq!(published, ["accepted"]);
    assert_eq!(bodies(&emulator, "0"), ["accepted"]);
}

#[tokio::test]
async fn a_slot_reserved_by_poll_ready_goes_back_with_its_handle() {
    use futures_util::Sink;
    let emulator = emulator(1).await;
    let (mut producer, mut outcomes) = bounded(&emulator, Duration::from_millis(1), 2)
        .build()
        .await
        .unwrap();
    // Two handles each reserve the room for one event, and never use it.
    let mut clones = [producer.clone(), producer.clone()];
    for clone in &mut clones {
        let ready =
            futures_util::future::poll_fn(|cx| std::pin::Pin::new(&mut *clone).poll_ready(cx));
        assert!(matches!(ready.now_or_never(), Some(Ok(()))));
    }
    assert!(producer
        .enqueue(EventData::new("no room"))
        .now_or_never()
        .is_none());
    // Dropping a handle gives its slot back: the waiting handle gets it.
    let [first, second] = clones;
    let ten = Duration::from_secs(10);
    drop(first);
    tokio::time::timeout(ten, producer.enqueue(EventData::new("one")))
        .await
        .expect("the dropped handle's slot came back")
        .unwrap();
    drop(second);
    tokio::time::timeout(ten, producer.enqueue(EventData::new("two")))
        .await
        .expect("the dropped handle's slot came back")
        .unwrap();
    let results = outcomes_for(&mut outcomes, 2).await;
    assert!(results.iter().all(BatchOutcome::is_success));
    // Both slots are free again once the outcomes are read.
    producer.enqueue(EventData::new("three")).await.unwrap();
    producer.enqueue(EventData::new("four")).await.unwrap();
    producer.close().await.unwrap();
    assert_eq!(bodies(&emulator, "0"), ["one", "two", "three", "four"]);
}
