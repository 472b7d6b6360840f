//! TLS end to end, the producer's production path (amqps, SNI, the server's certificate
//! checked against what the client trusts), on the emulator's TLS listener with a
//! certificate authority it makes.

mod common;

use std::time::Duration;

use common::chain;
use eventhubs_emulator::{Emulator, EmulatorHandle, TlsIdentity};
use futures_util::StreamExt;
use streaming_producer::{EventData, Producer, Reader, StartPosition};

async fn tls_emulator() -> EmulatorHandle {
    let identity = TlsIdentity::generate(&["localhost", "127.0.0.1"]).unwrap();
    Emulator::builder()
        .hub("eh1", 2)
        .tls(identity, "127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_producer_and_the_reader_go_over_tls_trusting_the_emulators_ca() {
    let emulator = tls_emulator().await;
    let ca = emulator.tls_ca_pem().unwrap().to_owned();
    let cs = emulator
        .tls_connection_string_for("localhost", "eh1")
        .unwrap();
    assert!(cs.starts_with("Endpoint=sb://localhost:") && !cs.contains("UseDevelopmentEmulator"));
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&cs)
        .add_root_certificate_pem(&ca)
        .max_wait(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    producer
        .enqueue(EventData::new("over tls").with_partition_id("1"))
        .await
        .unwrap();
    let outcome = outcomes.next().await.unwrap();
    assert!(outcome.is_success(), "{:?}", outcome.result);
    producer.close().await.unwrap();
    assert_eq!(emulator.events("eh1", "1").unwrap()[0].body(), b"over tls");

    let reader = Reader::builder()
        .connection_string(&cs)
        .add_root_certificate_pem(&ca)
        .build()
        .await
        .unwrap();
    let mut read = Box::pin(reader.read("1", StartPosition::Earliest));
    let event = read.next().await.unwrap().unwrap();
    assert_eq!(&event.body[..], b"over tls");
    drop(read);
    reader.close().await;
}

#[tokio::test]
async fn a_generic_broker_url_goes_over_tls_too() {
    let emulator = tls_emulator().await;
    let port = emulator.tls_addr().unwrap().port();
    let url = format!(
        "amqps://{}:{}@localhost:{port}",
        eventhubs_emulator::DEFAULT_KEY_NAME,
        eventhubs_emulator::DEFAULT_KEY
    );
    let (mut producer, mut outcomes) = Producer::builder()
        .amqp_broker(&url, ["eh1/Partitions/0"])
        .add_root_certificate_pem(emulator.tls_ca_pem().unwrap())
        .max_wait(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    producer
        .enqueue(EventData::new("broker over tls"))
        .await
        .unwrap();
    assert!(outcomes.next().await.unwrap().is_success());
    producer.close().await.unwrap();
    assert_eq!(emulator.events("eh1", "0").unwrap().len(), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_or_a_wrong_host_name_fails_clearly() {
    let emulator = tls_emulator().await;
    // Not trusting the CA: only the public roots.
    let cs = emulator
        .tls_connection_string_for("localhost", "eh1")
        .unwrap();
    let e = Producer::builder()
        .connection_string(&cs)
        .build()
        .await
        .unwrap_err();
    assert!(e.is_connection(), "{e}");
    assert!(
        chain(&e).contains("not signed by a certificate authority this client trusts"),
        "{}",
        chain(&e)
    );
    assert!(
        chain(&e).contains("add_root_certificate_pem"),
        "{}",
        chain(&e)
    );

    // Trusting it, but connecting by a name the certificate is not for.
    let other = TlsIdentity::generate(&["elsewhere.example"]).unwrap();
    let elsewhere = Emulator::builder()
        .hub("eh1", 1)
        .tls(other.clone(), "127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let cs = elsewhere
        .tls_connection_string_for("localhost", "eh1")
        .unwrap();
    let e = Producer::builder()
        .connection_string(&cs)
        .add_root_certificate_pem(other.ca_pem().unwrap())
        .build()
        .await
        .unwrap_err();
    assert!(
        chain(&e).contains("not for the host name 'localhost'"),
        "{}",
        chain(&e)
    );

    // A PEM that holds no certificate is refused before connecting.
    let e = Producer::builder()
        .connection_string(&cs)
        .add_root_certificate_pem("not a certificate")
        .build()
        .await
        .unwrap_err();
    assert!(
        e.is_config() && e.to_string().contains("no CERTIFICATE"),
        "{e}"
    );
}
