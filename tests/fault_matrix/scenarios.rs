//! Running a case: one fault for the whole run, a service that restarts empty, a
//! service gone for good, and tokens the service sees expire early. Each checks the
//! guarantees and prints its row.

use std::time::{Duration, Instant};

use eventhubs_emulator::Fault;
use streaming_producer::Producer;

use crate::check::check;
use crate::setup::{collect, emulator, enqueue, index_of, producer, stored, Setup, Stored, HUB};
use crate::table::{errors, row};

/// One fault, for the whole run.
pub(crate) async fn matrix_case(name: &str, fault: &str, idempotent: bool, retries: bool) {
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

/// The service stops mid-run and comes back empty on the same address.
pub(crate) async fn restart_case(idempotent: bool) {
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

/// The service goes away for good: the delivery timeout ends every event, and close
/// returns within it.
pub(crate) async fn gone_case(idempotent: bool) {
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

/// Signs tokens that the service sees expire after `lasts`, while telling the producer
/// they last an hour (as a clock skew between client and service would): the
/// producer's own schedule never refreshes them in time, so the service's refusal has
/// to make it authorise again.
#[derive(Debug)]
pub(crate) struct SkewedCredential {
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

pub(crate) async fn token_expiry_case(idempotent: bool) {
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
    let builder = Producer::builder()
        .connection_string(&emulator.connection_string_for(HUB).replace(
            ";SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE",
            "",
        ))
        .credential(credential);
    let (mut producer, outcomes) = setup.configure(builder).build().await.unwrap();
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
