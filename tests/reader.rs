//! Reading a hub back (`Reader`), and producers and readers built from a fully
//! qualified namespace and a credential instead of a connection string; against the
//! in-process emulator over real AMQP.

use std::time::{Duration, SystemTime};

use eventhubs_emulator::{Emulator, EmulatorHandle, DEFAULT_KEY, DEFAULT_KEY_NAME};
use futures_util::{SinkExt, Stream, StreamExt};
use streaming_producer::{
    EventData, Producer, PropertyValue, Reader, ReceivedEvent, SasTokenCredential,
    SharedKeyCredential, StartPosition,
};

async fn emulator(partitions: u32) -> EmulatorHandle {
    Emulator::builder()
        .hub("eh1", partitions)
        .start()
        .await
        .unwrap()
}

async fn reader(emulator: &EmulatorHandle) -> Reader {
    Reader::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap()
}

async fn publish(emulator: &EmulatorHandle, events: Vec<EventData>) {
    let (mut producer, _outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh1"))
        .max_wait(Duration::from_millis(5))
        .build()
        .await
        .unwrap();
    for event in events {
        producer.feed(event).await.unwrap();
    }
    producer.close().await.unwrap();
}

/// The next `n` events of a read, failing on an error or a wait of 10 s.
async fn take(
    read: &mut (impl Stream<Item = Result<ReceivedEvent, streaming_producer::Error>> + Unpin),
    n: usize,
) -> Vec<ReceivedEvent> {
    let mut got = Vec::new();
    while got.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), read.next())
            .await
            .expect("an event within 10 s")
            .expect("the read goes on")
            .expect("no error");
        got.push(next);
    }
    got
}

fn bodies(events: &[ReceivedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8(e.body.to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_read_from_the_start_gets_every_event_with_what_the_service_stamped() {
    let emulator = emulator(2).await;
    let before = SystemTime::now() - Duration::from_secs(1);
    let events = (0..5)
        .map(|i| {
            EventData::new(format!("e{i}"))
                .with_partition_id("1")
                .with_property("n", i64::from(i))
                .with_content_type("text/plain")
        })
        .chain([EventData::new("keyed").with_partition_key("k1")])
        .collect();
    publish(&emulator, events).await;

    let reader = reader(&emulator).await;
    let hub = reader.hub_properties().await.unwrap();
    assert_eq!(hub.name, "eh1");
    assert_eq!(hub.partition_ids, ["0", "1"]);
    assert_eq!(reader.hub(), "eh1");

    let mut read = Box::pin(reader.read("1", StartPosition::Earliest));
    let got = take(&mut read, 5).await;
    assert_eq!(bodies(&got), ["e0", "e1", "e2", "e3", "e4"]);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.partition, "1");
        assert_eq!(e.sequence_number, i as i64);
        assert!(!e.offset.is_empty());
        assert!(e.enqueued_time.is_some_and(|t| t >= before), "{e:?}");
        assert_eq!(
            e.properties,
            [("n".to_owned(), PropertyValue::Long(i as i64))]
        );
        assert_eq!(e.content_type.as_deref(), Some("text/plain"));
        assert_eq!(e.partition_key, None);
    }
    // The keyed event went to the partition its key hashes to, key and all.
    let in_zero = emulator.events("eh1", "0").unwrap().len();
    let (keyed_partition, before_it) = if in_zero == 1 { ("0", 0) } else { ("1", 5) };
    let mut keyed = Box::pin(reader.read(keyed_partition, StartPosition::Earliest));
    let all = take(&mut keyed, before_it + 1).await;
    let last = all.last().unwrap();
    assert_eq!(&last.body[..], b"keyed");
    assert_eq!(last.partition_key.as_deref(), Some("k1"));
    reader.close().await;
}

#[tokio::test]
async fn a_read_starts_where_it_is_told() {
    let emulator = emulator(1).await;
    publish(
        &emulator,
        (0..10).map(|i| EventData::new(format!("old{i}"))).collect(),
    )
    .await;
    let reader = reader(&emulator).await;

    let mut from_seven = Box::pin(reader.read("0", StartPosition::SequenceNumber(7)));
    assert_eq!(
        bodies(&take(&mut from_seven, 3).await),
        ["old7", "old8", "old9"]
    );

    let future = SystemTime::now() + Duration::from_secs(3600);
    let mut after_future = Box::pin(reader.read("0", StartPosition::EnqueuedTime(future)));
    let mut latest = Box::pin(reader.read("0", StartPosition::Latest));
    // Nothing yet for either: the latest read waits for new events.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), latest.next())
            .await
            .is_err()
    );
    publish(&emulator, vec![EventData::new("new")]).await;
    assert_eq!(bodies(&take(&mut latest, 1).await), ["new"]);
    assert_eq!(bodies(&take(&mut from_seven, 1).await), ["new"]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), after_future.next())
            .await
            .is_err(),
        "nothing was enqueued after an hour from now"
    );
    reader.close().await;
}

#[tokio::test]
async fn a_read_of_an_unknown_partition_ends_with_an_error() {
    let emulator = emulator(1).await;
    let reader = reader(&emulator).await;
    let mut read = Box::pin(reader.read("7", StartPosition::Earliest));
    let first = tokio::time::timeout(Duration::from_secs(10), read.next())
        .await
        .unwrap()
        .unwrap();
    let e = first.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(
        read.next().await.is_none(),
        "the stream ends after its error"
    );
    let e = reader.partition_properties("7").await.unwrap_err();
    assert!(e.is_not_found() || !e.is_retryable(), "{e}");
}

#[tokio::test]
async fn a_reader_of_a_hub_that_does_not_exist_fails_to_build_naming_it() {
    let emulator = emulator(1).await;
    let e = Reader::builder()
        .connection_string(&emulator.connection_string())
        .hub("nosuchhub")
        .build()
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("'nosuchhub'"), "{e}");
}

#[tokio::test]
async fn a_producer_built_from_a_namespace_and_a_credential_publishes() {
    let emulator = emulator(2).await;
    let namespace = emulator.addr().to_string();
    let (mut producer, mut outcomes) = Producer::builder()
        .fully_qualified_namespace(&namespace)
        .use_development_emulator(true)
        .hub("eh1")
        .credential(SharedKeyCredential::new(DEFAULT_KEY_NAME, DEFAULT_KEY))
        .max_wait(Duration::from_millis(5))
        .build()
        .await
        .unwrap();
    producer
        .send(EventData::new("from a namespace").with_partition_id("0"))
        .await
        .unwrap();
    producer.close().await.unwrap();
    let outcome = outcomes.next().await.unwrap();
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);

    let reader = Reader::builder()
        .fully_qualified_namespace(&namespace)
        .use_development_emulator(true)
        .hub("eh1")
        .credential(SharedKeyCredential::new(DEFAULT_KEY_NAME, DEFAULT_KEY))
        .build()
        .await
        .unwrap();
    let mut read = Box::pin(reader.read("0", StartPosition::Earliest));
    assert_eq!(bodies(&take(&mut read, 1).await), ["from a namespace"]);
    reader.close().await;
}

#[tokio::test]
async fn a_namespace_with_a_ready_made_sas_token_publishes() {
    let emulator = emulator(1).await;
    let expires = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    // Signed for the hub, as a token service would hand one out.
    let token = eventhubs_protocol::sas::sign(
        "amqps://127.0.0.1/eh1",
        DEFAULT_KEY_NAME,
        DEFAULT_KEY,
        expires,
    );
    let (mut producer, mut outcomes) = Producer::builder()
        .fully_qualified_namespace(emulator.addr().to_string())
        .use_development_emulator(true)
        .hub("eh1")
        .credential(SasTokenCredential::new(token).unwrap())
        .max_wait(Duration::from_millis(5))
        .build()
        .await
        .unwrap();
    producer.send(EventData::new("with a SAS")).await.unwrap();
    producer.close().await.unwrap();
    assert!(outcomes.next().await.unwrap().result.is_ok());
    assert_eq!(
        emulator.events("eh1", "0").unwrap()[0].body(),
        b"with a SAS"
    );
}

#[tokio::test]
async fn a_namespace_without_a_hub_or_credential_or_with_a_connection_string_is_refused() {
    let emulator = emulator(1).await;
    let namespace = emulator.addr().to_string();
    let build =
        |b: streaming_producer::ProducerBuilder| async move { b.build().await.unwrap_err() };

    let e = build(
        Producer::builder()
            .fully_qualified_namespace(&namespace)
            .use_development_emulator(true)
            .hub("eh1"),
    )
    .await;
    assert!(
        e.is_config() && e.to_string().contains("no credential"),
        "{e}"
    );

    let e = build(
        Producer::builder()
            .fully_qualified_namespace(&namespace)
            .use_development_emulator(true)
            .credential(SharedKeyCredential::new(DEFAULT_KEY_NAME, DEFAULT_KEY)),
    )
    .await;
    assert!(e.to_string().contains("no event hub named"), "{e}");

    let e = build(
        Producer::builder()
            .fully_qualified_namespace(&namespace)
            .connection_string(&emulator.connection_string_for("eh1")),
    )
    .await;
    assert!(e.is_config() && e.to_string().contains("not both"), "{e}");

    let e = build(Producer::builder().fully_qualified_namespace("not a host")).await;
    assert!(
        e.is_config() && e.to_string().contains("'not a host'"),
        "{e}"
    );

    let e = build(Producer::builder()).await;
    assert!(
        e.is_config() && e.to_string().contains("no namespace"),
        "{e}"
    );

    // Without the emulator flag the namespace is the service's: TLS, which the
    // emulator does not speak, and the error says what to do.
    let e = build(
        Producer::builder()
            .fully_qualified_namespace(&namespace)
            .hub("eh1")
            .credential(SharedKeyCredential::new(DEFAULT_KEY_NAME, DEFAULT_KEY))
            .try_timeout(Duration::from_secs(10)),
    )
    .await;
    assert!(e.to_string().contains("does not speak TLS"), "{e}");
}
