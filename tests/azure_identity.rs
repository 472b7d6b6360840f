//! Feature `azure-identity`: a producer authenticated by an `azure_core`
//! `TokenCredential` (here the test's own, standing in for `DefaultAzureCredential`)
//! publishes to an emulator that accepts JWTs. Run with
//! `cargo test --features azure-identity --test azure_identity`.
#![cfg(feature = "azure-identity")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::time::OffsetDateTime;
use eventhubs_emulator::{Emulator, EmulatorHandle};
use futures_util::{SinkExt, StreamExt};
use streaming_producer::{AzureTokenCredential, EventData, Producer, EVENT_HUBS_SCOPE};

/// Hands out a JWT-shaped token valid for an hour, or fails; records the scopes asked.
#[derive(Debug, Default)]
struct TestEntra {
    fail: bool,
    asked: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl TokenCredential for TestEntra {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.asked
            .lock()
            .unwrap()
            .extend(scopes.iter().map(|s| s.to_string()));
        if self.fail {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "no identity here",
            ));
        }
        let expires = OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1);
        Ok(AccessToken::new(
            "eyJhbGciOiJub25lIn0.eyJhdWQiOiJ0ZXN0In0.",
            expires,
        ))
    }
}

async fn emulator(accept_jwt: bool) -> EmulatorHandle {
    Emulator::builder()
        .hub("eh1", 2)
        .accept_jwt(accept_jwt)
        .start()
        .await
        .unwrap()
}

fn builder(
    emulator: &EmulatorHandle,
    entra: Arc<TestEntra>,
) -> streaming_producer::ProducerBuilder {
    Producer::builder()
        .fully_qualified_namespace(emulator.addr().to_string())
        .use_development_emulator(true)
        .hub("eh1")
        .credential(AzureTokenCredential::new(entra))
        .max_wait(Duration::from_millis(5))
        .try_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn a_token_credential_authenticates_the_producer() {
    let emulator = emulator(true).await;
    let entra = Arc::new(TestEntra::default());
    let (mut producer, mut outcomes) = builder(&emulator, entra.clone()).build().await.unwrap();
    producer
        .send(EventData::new("with Entra ID").with_partition_id("1"))
        .await
        .unwrap();
    producer.close().await.unwrap();
    let outcome = outcomes.next().await.unwrap();
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    let stored = emulator.events("eh1", "1").unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body(), b"with Entra ID");
    let asked = entra.asked.lock().unwrap().clone();
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|s| s == EVENT_HUBS_SCOPE), "{asked:?}");
}

#[tokio::test]
async fn a_credential_that_fails_fails_the_build() {
    let emulator = emulator(true).await;
    let failing = Arc::new(TestEntra {
        fail: true,
        ..TestEntra::default()
    });
    let e = builder(&emulator, failing).build().await.unwrap_err();
    assert!(e.is_auth(), "{e}");
    assert!(e.to_string().contains("gave no token"), "{e}");
}

#[tokio::test]
async fn a_service_that_refuses_jwts_fails_the_build() {
    let strict = emulator(false).await;
    let e = builder(&strict, Arc::new(TestEntra::default()))
        .build()
        .await
        .unwrap_err();
    assert!(e.is_auth(), "{e}");
    assert!(e.to_string().contains("JWT"), "{e}");
}
