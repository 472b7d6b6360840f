//! Fault scripts: every kind, scoped and triggered as configured.

mod common;

use std::time::Duration;

use common::*;
use eventhubs_emulator::{Emulator, Fault, FaultKind};
use fe2o3_amqp::types::messaging::Outcome;

/// An emulator with hub `eh1` (one partition) and this fault from the start.
async fn with_fault(spec: &str) -> eventhubs_emulator::EmulatorHandle {
    Emulator::builder()
        .hub("eh1", 1)
        .fault(spec.parse().unwrap())
        .start()
        .await
        .unwrap()
}

fn condition(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Rejected(r) => r.error.as_ref().map(error_condition),
        _ => None,
    }
}

#[tokio::test]
async fn reject_every_third_transfer_with_the_given_condition() {
    let emulator = Emulator::builder()
        .hub("eh1", 2)
        .fault(
            "reject,condition=amqp:internal-error,every=3"
                .parse()
                .unwrap(),
        )
        .start()
        .await
        .unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1/Partitions/0").await;
    let mut rejected = Vec::new();
    for i in 0..6 {
        let outcome = sender.send(event(&format!("e{i}"), None)).await.unwrap();
        rejected.push(condition(&outcome));
    }
    let internal = Some("amqp:internal-error".to_owned());
    assert_eq!(
        rejected,
        [None, None, internal.clone(), None, None, internal]
    );
    assert_eq!(
        bodies(&emulator.events("eh1", "0").unwrap()),
        ["e0", "e1", "e3", "e4"]
    );
}

#[tokio::test]
async fn throttle_rejects_with_server_busy_and_release_releases() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    emulator.add_fault(Fault::new(FaultKind::Throttle).partition("0"));
    emulator.add_fault(Fault::new(FaultKind::Release).partition("1"));
    let mut client = TestClient::authorized(&emulator).await;
    let mut p0 = client.sender("eh1/Partitions/0").await;
    let mut p1 = client.sender("eh1/Partitions/1").await;
    let busy = p0.send(event("a", None)).await.unwrap();
    assert_eq!(
        condition(&busy).as_deref(),
        Some("com.microsoft:server-busy")
    );
    assert!(matches!(
        p1.send(event("b", None)).await.unwrap(),
        Outcome::Released(_)
    ));
    emulator.clear_faults();
    assert!(p0.send(event("c", None)).await.unwrap().is_accepted());
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["c"]);
    assert!(emulator.events("eh1", "1").unwrap().is_empty());
}

#[tokio::test]
async fn faults_scoped_to_another_hub_leave_this_one_alone() {
    let emulator = Emulator::builder()
        .hub("eh1", 1)
        .hub("eh2", 1)
        .fault("throttle,hub=eh2".parse().unwrap())
        .start()
        .await
        .unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1").await;
    assert!(sender.send(event("ok", None)).await.unwrap().is_accepted());
    let mut other = client.sender("eh2").await;
    let busy = other.send(event("no", None)).await.unwrap();
    assert_eq!(
        condition(&busy).as_deref(),
        Some("com.microsoft:server-busy")
    );
}

async fn pattern_with_seed(seed: u64) -> Vec<bool> {
    let emulator = Emulator::builder()
        .hub("eh1", 1)
        .fault(
            format!("reject,condition=com.microsoft:timeout,p=0.3,seed={seed}")
                .parse()
                .unwrap(),
        )
        .start()
        .await
        .unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1").await;
    let mut out = Vec::new();
    for i in 0..60 {
        let outcome = sender.send(event(&i.to_string(), None)).await.unwrap();
        out.push(condition(&outcome).is_some());
    }
    out
}

#[tokio::test]
async fn probabilistic_rejections_are_repeatable_for_a_seed() {
    let a = pattern_with_seed(7).await;
    assert_eq!(a, pattern_with_seed(7).await);
    let hits = a.iter().filter(|x| **x).count();
    assert!((5..=35).contains(&hits), "{hits} of 60 at p=0.3");
}

// Real time: with a paused clock, tokio auto-advances past the connection's idle and
// open timeouts while the test waits on sockets. The test itself never sleeps.
#[tokio::test]
async fn delay_stores_first_and_settles_later() {
    let emulator = with_fault("delay,ms=40").await;
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1").await;
    let started = tokio::time::Instant::now();
    assert!(sender
        .send(event("late", None))
        .await
        .unwrap()
        .is_accepted());
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["late"]);
}

#[tokio::test]
async fn a_stalled_transfer_is_never_settled_nor_stored() {
    let emulator = with_fault("stall,count=1").await;
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1/Partitions/0").await;
    let mut stalled = Box::pin(sender.send_batchable(event("stuck", None)).await.unwrap());
    // Deliveries on one link are handled in order: once the next one is settled, the
    // stalled one has been seen and deliberately left alone.
    assert!(sender
        .send(event("next", None))
        .await
        .unwrap()
        .is_accepted());
    assert!(
        tokio::time::timeout(Duration::ZERO, &mut stalled)
            .await
            .is_err(),
        "the stalled delivery must still be pending"
    );
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["next"]);
}

#[tokio::test]
async fn detach_closes_the_link_with_the_condition() {
    let emulator = with_fault("detach,condition=amqp:link:detach-forced,every=2").await;
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1").await;
    assert!(sender.send(event("one", None)).await.unwrap().is_accepted());
    let err = sender.send(event("two", None)).await.unwrap_err();
    assert!(format!("{err:?}").contains("DetachForced"), "{err:?}");
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["one"]);
}

#[tokio::test]
async fn drop_connection_stores_the_events_then_drops_before_settling() {
    let emulator = with_fault("drop-connection,count=1").await;
    let mut client = TestClient::authorized(&emulator).await;
    let mut sender = client.sender("eh1").await;
    let mut pending = Box::pin(
        sender
            .send_batchable(event("ambiguous", None))
            .await
            .unwrap(),
    );
    // The emulator drops the TCP connection: the client sees it end without a close.
    let _ = client.connection.on_close().await;
    assert!(client.connection.is_closed());
    let settled_ok = matches!(
        tokio::time::timeout(Duration::ZERO, &mut pending).await,
        Ok(Ok(Outcome::Accepted(_)))
    );
    assert!(!settled_ok, "the transfer must not have been acknowledged");
    assert_eq!(bodies(&emulator.events("eh1", "0").unwrap()), ["ambiguous"]);

    let mut fresh = TestClient::authorized(&emulator).await;
    let mut sender = fresh.sender("eh1").await;
    assert!(sender
        .send(event("after", None))
        .await
        .unwrap()
        .is_accepted());
}
