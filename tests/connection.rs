//! Connecting and staying connected, against the in-process emulator over real AMQP:
//! typed errors for bad connection strings, keys, hubs and a missing TLS opt-out; a
//! dropped connection or a detached link recovered; tokens refreshed before they expire.

use std::time::Duration;

use eventhubs_emulator::EmulatorHandle;
use futures_util::StreamExt;
use streaming_producer::{EventData, Outcomes, Producer, RetryPolicy};

mod common;
use common::{bodies, emulator, producer_retrying};

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

async fn producer_without_retries(emulator: &EmulatorHandle) -> (Producer, Outcomes) {
    producer_retrying(emulator, RetryPolicy::none()).await
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
