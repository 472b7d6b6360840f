//! The delivery guarantees under faults, against the in-process emulator over real
//! AMQP. Every case publishes keyed events, reads the emulator back and checks:
//!
//! - every accepted event has exactly one outcome;
//! - every event reported published is stored: exactly once with idempotent retries,
//!   at least once without;
//! - an event reported failed is stored only if its error says it may have been
//!   ([`Error::is_ambiguous`](streaming_producer::Error::is_ambiguous));
//! - each partition keeps the order of its events, and keys land where the service
//!   hash puts them.
//!
//! Each case prints one row of a table, the first under the table's header (run with
//! `--nocapture` to see it):
//! `cargo test --test fault_matrix -- --nocapture --test-threads 1 | grep '^|'`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eventhubs_emulator::{Emulator, EmulatorHandle, Fault};
use eventhubs_protocol::partition_key::partition_index;
use futures_util::StreamExt;
use streaming_producer::{BatchOutcome, EventData, Outcomes, Producer, RetryPolicy};
use tokio::task::JoinHandle;

const HUB: &str = "eh1";
const KEYS: usize = 64;

#[derive(Debug, Clone)]
struct Setup {
    idempotent: bool,
    retries: bool,
    events: usize,
    max_pending: usize,
    try_timeout: Duration,
    delivery_timeout: Duration,
}

impl Setup {
    fn new(idempotent: bool, retries: bool) -> Self {
        Self {
            idempotent,
            retries,
            events: 3000,
            max_pending: 1000,
            try_timeout: Duration::from_secs(1),
            delivery_timeout: Duration::from_secs(30),
        }
    }

    fn mode(&self) -> &'static str {
        if self.idempotent {
            "idempotent"
        } else {
            "at least once"
        }
    }

    fn policy(&self) -> RetryPolicy {
        // The default count (3), with delays short enough for a test suite.
        let quick = RetryPolicy::default()
            .with_initial_delay(Duration::from_millis(20))
            .with_max_delay(Duration::from_millis(500));
        if self.retries {
            quick
        } else {
            quick.with_max_retries(0)
        }
    }
}

fn body(i: usize) -> String {
    format!("e{i}")
}

fn key(i: usize) -> String {
    format!("k{}", i % KEYS)
}

fn index_of(body: &str) -> usize {
    body[1..].parse().expect("a body this suite wrote")
}

async fn emulator(partitions: u32, addr: Option<SocketAddr>) -> EmulatorHandle {
    let mut builder = Emulator::builder().hub(HUB, partitions);
    if let Some(addr) = addr {
        builder = builder.bind(addr);
    }
    builder.start().await.unwrap()
}

async fn producer(emulator: &EmulatorHandle, setup: &Setup) -> (Producer, Outcomes) {
    Producer::builder()
        .connection_string(&emulator.connection_string_for(HUB))
        .max_wait(Duration::from_millis(5))
        .max_pending_events(setup.max_pending)
        .try_timeout(setup.try_timeout)
        .delivery_timeout(setup.delivery_timeout)
        .retry_policy(setup.policy())
        .idempotent_retries(setup.idempotent)
        .partition_refresh_interval(Duration::from_millis(100))
        .build()
        .await
        .unwrap()
}

fn collect(outcomes: Outcomes) -> JoinHandle<Vec<BatchOutcome>> {
    tokio::spawn(outcomes.collect::<Vec<_>>())
}

async fn enqueue(producer: &mut Producer, range: std::ops::Range<usize>) {
    for i in range {
        producer
            .enqueue(EventData::new(body(i)).with_partition_key(key(i)))
            .await
            .unwrap();
    }
}

/// What one emulator stored: per partition, the bodies in order.
type Stored = Vec<(usize, Vec<String>)>;

fn stored(emulator: &EmulatorHandle) -> Stored {
    (0..)
        .map_while(|p: usize| {
            let events = emulator.events(HUB, &p.to_string())?;
            Some((
                p,
                events
                    .iter()
                    .map(|e| String::from_utf8(e.body()).unwrap())
                    .collect(),
            ))
        })
        .collect()
}

#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    succeeded: usize,
    failed: usize,
    ambiguous: usize,
    stored: usize,
    duplicates: usize,
    lost: usize,
}

/// Checks the guarantees; `exactly_once` holds with idempotence unless the service
/// lost its state; `partition_counts` are the counts the hub had during the run.
fn check(
    setup: &Setup,
    outcomes: &[BatchOutcome],
    stores: &[Stored],
    exactly_once: bool,
    partition_counts: &[usize],
) -> Tally {
    let n = setup.events;
    let mut outcome_of: Vec<Option<&BatchOutcome>> = vec![None; n];
    for o in outcomes {
        for e in &o.events {
            let i = index_of(std::str::from_utf8(e.body()).unwrap());
            assert!(outcome_of[i].is_none(), "event {i} has two outcomes");
            outcome_of[i] = Some(o);
        }
    }
    let mut copies = vec![0usize; n];
    for store in stores {
        for (partition, bodies) in store {
            let mut last = None;
            for b in bodies {
                let i = index_of(b);
                copies[i] += 1;
                assert!(
                    partition_counts
                        .iter()
                        .any(|&c| partition_index(&key(i), c) == *partition),
                    "event {i} stored on partition {partition}, not where its key hashes"
                );
                // Order: a partition's events appear in enqueue order (a retried
                // batch may repeat events right after themselves).
                if copies[i] == 1 {
                    assert!(
                        last.is_none_or(|l| l < i),
                        "partition {partition}: event {i} stored after {last:?}"
                    );
                    last = Some(i);
                }
            }
        }
    }
    let mut t = Tally {
        sent: n,
        ..Tally::default()
    };
    for i in 0..n {
        let o = outcome_of[i].unwrap_or_else(|| panic!("event {i} has no outcome"));
        if copies[i] > 0 {
            t.stored += 1;
            t.duplicates += copies[i] - 1;
        }
        match &o.result {
            Ok(()) => {
                t.succeeded += 1;
                if copies[i] == 0 {
                    t.lost += 1;
                }
                if setup.idempotent && exactly_once {
                    assert!(
                        copies[i] <= 1,
                        "event {i} stored {} times with idempotence",
                        copies[i]
                    );
                }
            }
            Err(e) => {
                t.failed += 1;
                if e.is_ambiguous() {
                    t.ambiguous += 1;
                }
                assert!(
                    copies[i] == 0 || e.is_ambiguous(),
                    "event {i} is stored but reported failed without saying it may be: {e}"
                );
                if setup.idempotent && exactly_once {
                    assert!(copies[i] <= 1, "event {i} stored {} times", copies[i]);
                }
            }
        }
    }
    assert_eq!(t.lost, 0, "events reported published but not stored");
    t
}

/// The distinct errors of failed outcomes, most frequent first.
fn errors(outcomes: &[BatchOutcome]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for o in outcomes {
        if let Err(e) = &o.result {
            let text = e.to_string();
            match counts.iter_mut().find(|(t, _)| *t == text) {
                Some((_, n)) => *n += o.events.len(),
                None => counts.push((text, o.events.len())),
            }
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
        .iter()
        .map(|(t, n)| format!("{n} × {t}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The header of the table [`row`] prints: the case, its delivery mode and retry count,
/// then the [`Tally`] (events sent, reported published, reported failed, of those
/// reported ambiguous, events stored at least once, extra copies stored, events reported
/// published but not stored) and how long the producer took to close (for the repeated
/// scenario, the whole run).
const HEADER: &str = "\
| case | mode | max retries | sent | succeeded | failed | ambiguous | stored | duplicates | lost | took |
|---|---|---|---|---|---|---|---|---|---|---|";

/// Prints one row of the table, after [`HEADER`] if no row came before it. Each starts
/// on a line of its own, not after the harness's `test name ... `, so that `grep '^|'`
/// finds them all.
fn row(case: &str, setup: &Setup, t: &Tally, close: Duration) {
    static HEADER_ONCE: std::sync::Once = std::sync::Once::new();
    HEADER_ONCE.call_once(|| println!("\n{HEADER}"));
    println!(
        "\n| {case} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} s |",
        setup.mode(),
        if setup.retries { "3" } else { "0" },
        t.sent,
        t.succeeded,
        t.failed,
        t.ambiguous,
        t.stored,
        t.duplicates,
        t.lost,
        close.as_secs_f64()
    );
}

/// One fault, for the whole run.
async fn matrix_case(name: &str, fault: &str, idempotent: bool, retries: bool) {
    let setup = Setup::new(idempotent, retries);
    let emulator = emulator(4, None).await;
    emulator.add_fault(fault.parse::<Fault>().unwrap());
    let (mut producer, outcomes) = producer(&emulator, &setup).await;
    let collector = collect(outcomes);
    enqueue(&mut producer, 0..setup.events).await;
    let closing = Instant::now();
    producer.close().await.unwrap();
    let close = closing.elapsed();
    let outcomes = collector.await.unwrap();
    let t = check(&setup, &outcomes, &[stored(&emulator)], true, &[4]);
    row(name, &setup, &t, close);
    if t.failed > 0 {
        println!("  failures: {}", errors(&outcomes));
    }
}

macro_rules! matrix {
    ($($name:ident: $fault:expr;)*) => {$(
        mod $name {
            #[tokio::test]
            async fn at_least_once_without_retries() {
                super::matrix_case(stringify!($name), $fault, false, false).await;
            }

            #[tokio::test]
            async fn at_least_once_with_retries() {
                super::matrix_case(stringify!($name), $fault, false, true).await;
            }

            #[tokio::test]
            async fn idempotent_without_retries() {
                super::matrix_case(stringify!($name), $fault, true, false).await;
            }

            #[tokio::test]
            async fn idempotent_with_retries() {
                super::matrix_case(stringify!($name), $fault, true, true).await;
            }
        }
    )*};
}

matrix! {
    reject: "reject,every=4";
    throttle: "throttle,every=4";
    release: "release,every=4";
    delay_past_try_timeout: "delay,ms=1500,every=6";
    stall: "stall,every=6";
    detach: "detach,every=4";
    drop_connection_every_4: "drop-connection,every=4";
    drop_connection_at_random: "drop-connection,p=0.2,seed=7";
}

/// The service stops mid-run and comes back empty on the same address.
async fn restart_case(idempotent: bool) {
    let setup = Setup {
        events: 4000,
        ..Setup::new(idempotent, true)
    };
    let first = emulator(4, None).await;
    let addr = first.addr();
    let (mut producer, outcomes) = producer(&first, &setup).await;
    let collector = collect(outcomes);
    enqueue(&mut producer, 0..1500).await;
    // Nothing more is stored from here, so what is read now is all it ever stored.
    first.add_fault("stall".parse().unwrap());
    let before = stored(&first);
    first.shutdown().await;
    let second = emulator(4, Some(addr)).await;
    enqueue(&mut producer, 1500..setup.events).await;
    let closing = Instant::now();
    producer.close().await.unwrap();
    let close = closing.elapsed();
    let outcomes = collector.await.unwrap();
    // The restarted service lost the producer's state, so it cannot recognise a
    // batch stored before the restart and retried after it: at least once.
    let after = stored(&second);
    let count = |s: &Stored| s.iter().map(|(_, b)| b.len()).sum::<usize>();
    assert!(
        count(&before) > 0 && count(&after) > 0,
        "both lives stored events"
    );
    let t = check(&setup, &outcomes, &[before, after], false, &[4]);
    row("restarted empty", &setup, &t, close);
    assert!(t.failed < 100, "{} failed across a restart", t.failed);
}

#[tokio::test]
async fn restarted_empty_at_least_once() {
    restart_case(false).await;
}

#[tokio::test]
async fn restarted_empty_idempotent() {
    restart_case(true).await;
}

/// The service goes away for good: the delivery timeout ends every event, and close
/// returns within it.
async fn gone_case(idempotent: bool) {
    let setup = Setup {
        events: 2000,
        delivery_timeout: Duration::from_secs(3),
        ..Setup::new(idempotent, true)
    };
    let emulator = emulator(4, None).await;
    let (mut producer, outcomes) = producer(&emulator, &setup).await;
    let collector = collect(outcomes);
    enqueue(&mut producer, 0..1000).await;
    producer.flush().await.unwrap();
    emulator.add_fault("stall".parse().unwrap());
    let before = stored(&emulator);
    emulator.shutdown().await;
    let gone = Instant::now();
    enqueue(&mut producer, 1000..setup.events).await;
    let closing = Instant::now();
    producer.close().await.unwrap();
    let close = closing.elapsed();
    let outcomes = collector.await.unwrap();
    let t = check(&setup, &outcomes, &[before], true, &[4]);
    row("gone for good", &setup, &t, close);
    // Events accepted after the service left waited at most their delivery timeout.
    let slack = Duration::from_secs(2);
    assert!(
        close <= setup.delivery_timeout + slack,
        "close took {close:?} after the service left"
    );
    assert!(gone.elapsed() <= 2 * setup.delivery_timeout + slack);
    let late_failures = outcomes
        .iter()
        .filter(|o| {
            index_of(std::str::from_utf8(o.events.bodies().next().unwrap()).unwrap()) >= 1000
        })
        .map(|o| o.result.as_ref().expect_err("nothing can be published"))
        .filter(|e| e.is_timeout())
        .count();
    assert!(late_failures > 0, "events fail at their delivery timeout");
}

#[tokio::test]
async fn gone_for_good_at_least_once() {
    gone_case(false).await;
}

#[tokio::test]
async fn gone_for_good_idempotent() {
    gone_case(true).await;
}

/// Partitions are added while events flow: keys hash over the new count once the
/// producer has seen it, and nothing is lost.
#[tokio::test]
async fn partitions_added_mid_run() {
    let setup = Setup::new(false, true);
    let emulator = emulator(4, None).await;
    let (mut producer, outcomes) = producer(&emulator, &setup).await;
    let collector = collect(outcomes);
    enqueue(&mut producer, 0..1000).await;
    emulator.grow_partitions(HUB, 8);
    // The producer reads the count every 100 ms; this reads it now.
    assert_eq!(producer.refresh_partitions().await.unwrap().len(), 8);
    enqueue(&mut producer, 1000..setup.events).await;
    let closing = Instant::now();
    producer.close().await.unwrap();
    let close = closing.elapsed();
    let outcomes = collector.await.unwrap();
    let t = check(&setup, &outcomes, &[stored(&emulator)], true, &[4, 8]);
    row("partitions 4 -> 8", &setup, &t, close);
    assert_eq!(t.succeeded, t.sent);
    let on_new: usize = (4..8)
        .map(|p| emulator.events(HUB, &p.to_string()).unwrap().len())
        .sum();
    assert!(on_new > 0, "keys hash over the new count");
}

/// Signs tokens that the service sees expire after `lasts`, while telling the producer
/// they last an hour (as a clock skew between client and service would): the
/// producer's own schedule never refreshes them in time, so the service's refusal has
/// to make it authorise again.
#[derive(Debug)]
struct SkewedCredential {
    inner: streaming_producer::SharedKeyCredential,
}

impl streaming_producer::Credential for SkewedCredential {
    fn token<'a>(&'a self, audience: &'a str) -> streaming_producer::TokenFuture<'a> {
        Box::pin(async move {
            let mut token = self.inner.token(audience).await?;
            token.expires_at = std::time::SystemTime::now() + Duration::from_secs(3600);
            Ok(token)
        })
    }
}

async fn token_expiry_case(idempotent: bool) {
    let setup = Setup {
        events: 6000,
        max_pending: 200,
        ..Setup::new(idempotent, true)
    };
    let emulator = emulator(4, None).await;
    let credential = SkewedCredential {
        inner: streaming_producer::SharedKeyCredential::new(
            eventhubs_emulator::DEFAULT_KEY_NAME,
            eventhubs_emulator::DEFAULT_KEY,
        )
        .with_validity(Duration::from_secs(2)),
    };
    let (mut producer, outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for(HUB).replace(
            ";SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE",
            "",
        ))
        .credential(credential)
        .max_wait(Duration::from_millis(5))
        .max_pending_events(setup.max_pending)
        .try_timeout(setup.try_timeout)
        .delivery_timeout(setup.delivery_timeout)
        .retry_policy(setup.policy())
        .idempotent_retries(setup.idempotent)
        .build()
        .await
        .unwrap();
    let collector = collect(outcomes);
    // Paced over about three token lifetimes.
    let started = Instant::now();
    for chunk in 0..30 {
        enqueue(&mut producer, chunk * 200..(chunk + 1) * 200).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() > Duration::from_secs(3));
    let closing = Instant::now();
    producer.close().await.unwrap();
    let close = closing.elapsed();
    let outcomes = collector.await.unwrap();
    let t = check(&setup, &outcomes, &[stored(&emulator)], true, &[4]);
    row("token expires early", &setup, &t, close);
    assert_eq!(
        t.succeeded, t.sent,
        "a fresh token is put and the batch retried"
    );
}

#[tokio::test]
async fn token_expiry_forces_authorisation_again_at_least_once() {
    token_expiry_case(false).await;
}

#[tokio::test]
async fn token_expiry_forces_authorisation_again_idempotent() {
    token_expiry_case(true).await;
}

/// Outcomes read slowly hold the producer back: pending events stay within the bound.
#[tokio::test]
async fn a_slow_outcome_reader_keeps_memory_bounded() {
    let setup = Setup {
        max_pending: 300,
        ..Setup::new(false, true)
    };
    let emulator = emulator(4, None).await;
    emulator.add_fault("drop-connection,every=10".parse().unwrap());
    let (mut producer, mut outcomes) = producer(&emulator, &setup).await;
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(o) = outcomes.next().await {
            tokio::time::sleep(Duration::from_millis(2)).await;
            all.push(o);
        }
        all
    });
    let mut most = 0;
    for i in 0..setup.events {
        producer
            .enqueue(EventData::new(body(i)).with_partition_key(key(i)))
            .await
            .unwrap();
        most = most.max(producer.total_pending());
    }
    let closing = Instant::now();
    producer.close().await.unwrap();
    let close = closing.elapsed();
    let outcomes = reader.await.unwrap();
    let t = check(&setup, &outcomes, &[stored(&emulator)], true, &[4]);
    row("slow outcome reader", &setup, &t, close);
    assert!(
        most <= setup.max_pending,
        "{most} pending with a bound of {}",
        setup.max_pending
    );
}

/// The scenario that once lost events: idempotent, no retries, the connection dropped
/// on every third transfer, 50,000 keyed events. Every event reported published must
/// be stored exactly once. `RUNS=20 cargo test --release --test fault_matrix
/// -- --ignored --nocapture` repeats it (`EVENTS=N` changes the count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 50,000 events per run"]
async fn idempotent_without_retries_under_dropped_connections_repeatedly() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let events: usize = std::env::var("EVENTS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50_000);
    for run in 0..runs {
        let setup = Setup {
            events,
            max_pending: 2500,
            try_timeout: Duration::from_secs(5),
            delivery_timeout: Duration::from_secs(120),
            ..Setup::new(true, false)
        };
        let emulator = emulator(4, None).await;
        emulator.add_fault("drop-connection,every=3".parse().unwrap());
        let (mut producer, outcomes) = producer(&emulator, &setup).await;
        let collector = collect(outcomes);
        let started = Instant::now();
        enqueue(&mut producer, 0..setup.events).await;
        producer.close().await.unwrap();
        let elapsed = started.elapsed();
        let outcomes = collector.await.unwrap();
        let t = check(&setup, &outcomes, &[stored(&emulator)], true, &[4]);
        row(
            &format!("drop every 3, run {}", run + 1),
            &setup,
            &t,
            elapsed,
        );
        if t.failed > 0 {
            println!("  failures: {}", errors(&outcomes));
        }
        assert_eq!(t.duplicates, 0);
    }
}
