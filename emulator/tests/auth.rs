//! SASL, `$cbs` put-token and the rule that links need a valid token.

mod common;

use common::*;
use eventhubs_emulator::{Emulator, ManualClock};

#[tokio::test]
async fn a_valid_sas_token_is_accepted_with_status_202() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    let mut client = TestClient::connect(&emulator).await;
    let token = emulator.sas_token("sb://whatever/eh1", 60);
    assert_eq!(
        client
            .put_token(&token, "servicebus.windows.net:sastoken")
            .await
            .0,
        202
    );
}

#[tokio::test]
async fn a_token_signed_with_the_wrong_key_gets_401() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    let mut client = TestClient::connect(&emulator).await;
    let token = eventhubs_emulator::sas::sign(
        "sb://x/eh1",
        eventhubs_emulator::DEFAULT_KEY_NAME,
        "not-the-key",
        u64::MAX / 2,
    );
    let (code, description) = client
        .put_token(&token, "servicebus.windows.net:sastoken")
        .await;
    assert_eq!(code, 401);
    assert!(description.contains("invalid"), "{description}");
}

#[tokio::test]
async fn an_expired_token_gets_401() {
    let clock = ManualClock::new(2_000_000_000_000);
    let emulator = Emulator::builder()
        .hub("eh1", 2)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let mut client = TestClient::connect(&emulator).await;
    let token = emulator.sas_token("sb://x/eh1", 10);
    clock.advance_ms(11_000);
    let (code, description) = client
        .put_token(&token, "servicebus.windows.net:sastoken")
        .await;
    assert_eq!(code, 401);
    assert!(description.contains("expired"), "{description}");
}

#[tokio::test]
async fn jwt_tokens_are_refused_by_default() {
    let strict = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::connect(&strict).await;
    assert_eq!(client.put_token("eyJhbGciOi.e30.sig", "jwt").await.0, 401);
}

#[tokio::test]
async fn jwt_tokens_are_accepted_when_configured() {
    let lenient = Emulator::builder()
        .hub("eh1", 1)
        .accept_jwt(true)
        .start()
        .await
        .unwrap();
    let mut client = TestClient::connect(&lenient).await;
    assert_eq!(client.put_token("eyJhbGciOi.e30.sig", "jwt").await.0, 202);
    let mut sender = client.sender("eh1/Partitions/0").await;
    let outcome = sender.send(event("hello", None)).await.unwrap();
    assert!(outcome.is_accepted());
}

#[tokio::test]
async fn links_without_a_token_are_refused_with_unauthorized_access() {
    let emulator = Emulator::builder().hub("eh1", 2).start().await.unwrap();
    let mut client = TestClient::connect(&emulator).await;
    let mut sender = client.sender("eh1/Partitions/0").await;
    assert_eq!(
        detach_condition_of_sender(&mut sender).await,
        "amqp:unauthorized-access"
    );
    let mut receiver = client
        .receiver("eh1/ConsumerGroups/$Default/Partitions/0", None)
        .await;
    let why = detach_condition_of_receiver(&mut receiver).await;
    assert!(why.contains("UnauthorizedAccess"), "{why}");
    assert!(emulator.events("eh1", "0").unwrap().is_empty());
}

#[tokio::test]
async fn an_expired_token_ends_access_until_a_new_one_is_put() {
    let clock = ManualClock::new(2_000_000_000_000);
    let emulator = Emulator::builder()
        .hub("eh1", 1)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let mut client = TestClient::connect(&emulator).await;
    let token = emulator.sas_token("sb://x/eh1", 60);
    assert_eq!(
        client
            .put_token(&token, "servicebus.windows.net:sastoken")
            .await
            .0,
        202
    );
    let mut sender = client.sender("eh1/Partitions/0").await;
    assert!(sender
        .send(event("before", None))
        .await
        .unwrap()
        .is_accepted());

    clock.advance_ms(61_000);
    assert!(
        sender.send(event("after", None)).await.is_err(),
        "the link is detached"
    );
    let mut again = client.sender("eh1").await;
    assert_eq!(
        detach_condition_of_sender(&mut again).await,
        "amqp:unauthorized-access"
    );

    let fresh = emulator.sas_token("sb://x/eh1", 60);
    assert_eq!(
        client
            .put_token(&fresh, "servicebus.windows.net:sastoken")
            .await
            .0,
        202
    );
    let mut renewed = TestClient::sender(&mut client, "eh1/Partitions/0").await;
    assert!(renewed
        .send(event("renewed", None))
        .await
        .unwrap()
        .is_accepted());
    assert_eq!(
        bodies(&emulator.events("eh1", "0").unwrap()),
        ["before", "renewed"]
    );
}

#[tokio::test]
async fn sasl_plain_with_the_shared_key_needs_no_token() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let url = format!(
        "amqp://{}:{}@{}",
        eventhubs_emulator::DEFAULT_KEY_NAME,
        eventhubs_emulator::DEFAULT_KEY,
        emulator.addr()
    );
    let mut connection = fe2o3_amqp::Connection::open("plain", url.as_str())
        .await
        .unwrap();
    let mut session = fe2o3_amqp::Session::begin(&mut connection).await.unwrap();
    let mut sender = fe2o3_amqp::Sender::attach(&mut session, "s", "eh1/Partitions/0")
        .await
        .unwrap();
    assert!(sender
        .send(event("plain", None))
        .await
        .unwrap()
        .is_accepted());

    let wrong = format!(
        "amqp://{}:nope@{}",
        eventhubs_emulator::DEFAULT_KEY_NAME,
        emulator.addr()
    );
    assert!(fe2o3_amqp::Connection::open("plain-bad", wrong.as_str())
        .await
        .is_err());
}

#[tokio::test]
async fn a_token_for_an_unknown_hub_gets_404() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::connect(&emulator).await;
    let token = emulator.sas_token("sb://x/nosuchhub", 60);
    let message_name = "nosuchhub";
    let (code, description) = client
        .put_token_for(&format!("sb://x/{message_name}"), &token)
        .await;
    assert_eq!(code, 404);
    assert!(description.contains("could not be found"), "{description}");
    let (code, _) = client.put_token_for("sb://x/", &token).await;
    assert_eq!(code, 202, "a namespace-wide audience is fine");
}

#[tokio::test]
async fn shutdown_closes_client_connections() {
    let emulator = Emulator::builder().hub("eh1", 1).start().await.unwrap();
    let mut client = TestClient::authorized(&emulator).await;
    assert_eq!(emulator.connection_count(), 1);
    emulator.shutdown().await;
    let _ = client.connection.on_close().await;
    assert!(client.connection.is_closed());
}
