//! A generic AMQP 1.0 broker (`ProducerBuilder::amqp_broker`), tried on the emulator
//! reached as a plain broker: SASL PLAIN with its key, no `$cbs`, and each partition's
//! address given as a target address. Brokers written by others (RabbitMQ, Qpid
//! Proton's) are tried by `tests/brokers/run.sh`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{bodies, chain, emulator, outcomes_for};
use eventhubs_emulator::{Emulator, EmulatorHandle};
use futures_util::{SinkExt, StreamExt};
use streaming_producer::{
    BatchOutcome, EnqueueError, EventData, Producer, ProducerBuilder, RetryPolicy,
};

const KEY_NAME: &str = "BrokerTest";
const KEY: &str = "s3cret/with:odd@chars";

async fn keyed_emulator(hubs: &[(&str, u32)]) -> EmulatorHandle {
    let mut builder = Emulator::builder().key(KEY_NAME, KEY);
    for (hub, partitions) in hubs {
        builder = builder.hub(*hub, *partitions);
    }
    builder.start().await.unwrap()
}

/// The emulator as a broker: `amqp://KEYNAME:KEY@host:port`, the key percent-encoded.
fn url(emulator: &EmulatorHandle, password: &str) -> String {
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("amqp://{KEY_NAME}:{encoded}@{}", emulator.addr())
}

fn addresses(hub: &str, partitions: u32) -> Vec<String> {
    (0..partitions)
        .map(|p| format!("{hub}/Partitions/{p}"))
        .collect()
}

fn broker(emulator: &EmulatorHandle, partitions: u32) -> ProducerBuilder {
    Producer::builder()
        .amqp_broker(&url(emulator, KEY), addresses("eh1", partitions))
        .max_wait(Duration::from_millis(5))
        .try_timeout(Duration::from_secs(10))
        .retry_policy(RetryPolicy::default().with_initial_delay(Duration::from_millis(10)))
}

fn keyed(i: usize) -> EventData {
    let key = format!("key-{}", i % 37);
    EventData::new(format!("{key}:{i}"))
        .with_partition_key(key)
        .with_content_type("text/plain")
        .with_message_id(format!("m{i}"))
        .with_property("n", i as i64)
        .with_property("source", "broker-test")
}

#[tokio::test]
async fn keyed_events_land_where_event_hubs_would_put_them_intact_and_in_order() {
    let emulator = keyed_emulator(&[("eh1", 4), ("eh2", 4)]).await;
    let (mut producer, outcomes) = broker(&emulator, 4).build().await.unwrap();
    assert_eq!(producer.partition_ids(), addresses("eh1", 4));
    // Read as they come: unread outcomes hold the producer's capacity.
    let reported = tokio::spawn(outcomes.collect::<Vec<BatchOutcome>>());
    let events = 3000;
    let mut all = futures_util::stream::iter((0..events).map(|i| Ok::<_, EnqueueError>(keyed(i))));
    producer.send_all(&mut all).await.unwrap();
    producer.close().await.unwrap();
    let reported = reported.await.unwrap();
    assert!(
        reported.iter().all(BatchOutcome::is_success),
        "{reported:?}"
    );
    assert_eq!(
        reported.iter().map(|o| o.events.len()).sum::<usize>(),
        events
    );
    // Batches of several events, each sent as messages of their own.
    assert!(reported.iter().any(|o| o.events.len() > 1));

    // The same keys through Event Hubs' own path, to the twin hub.
    let (mut reference, reference_outcomes) = Producer::builder()
        .connection_string(&emulator.connection_string_for("eh2"))
        .build()
        .await
        .unwrap();
    for i in 0..37 {
        reference.send(keyed(i)).await.unwrap();
    }
    reference.close().await.unwrap();
    drop(reference_outcomes);
    let mut partition_of_key = HashMap::new();
    for p in 0..4 {
        for e in emulator.events("eh2", &p.to_string()).unwrap() {
            partition_of_key.insert(e.partition_key().unwrap(), p.to_string());
        }
    }
    assert_eq!(partition_of_key.len(), 37);

    let mut stored = 0;
    for p in 0..4 {
        let mut last_of_key: HashMap<String, usize> = HashMap::new();
        for e in emulator.events("eh1", &p.to_string()).unwrap() {
            stored += 1;
            let key = e.partition_key().expect("x-opt-partition-key");
            assert_eq!(partition_of_key[&key], p.to_string(), "{key}");
            let body = String::from_utf8(e.body()).unwrap();
            let (body_key, n) = body.split_once(':').unwrap();
            let n: usize = n.parse().unwrap();
            assert_eq!(body_key, key);
            if let Some(last) = last_of_key.insert(key.clone(), n) {
                assert!(last < n, "{key}: {n} after {last}");
            }
            let message = e.message().unwrap();
            let properties = message.properties.unwrap();
            assert_eq!(properties.content_type.unwrap().as_str(), "text/plain");
            assert_eq!(
                format!("{:?}", properties.message_id.unwrap()),
                format!("String(\"m{n}\")")
            );
            let application = message.application_properties.unwrap();
            assert_eq!(
                format!("{:?}", application.0.get("n").unwrap()),
                format!("Long({n})")
            );
            assert_eq!(
                format!("{:?}", application.0.get("source").unwrap()),
                "String(\"broker-test\")"
            );
        }
    }
    assert_eq!(stored, events);
}

#[tokio::test]
async fn a_released_message_is_sent_again_alone_and_the_batch_succeeds() {
    let emulator = keyed_emulator(&[("eh1", 1)]).await;
    emulator.add_fault("release,every=4,count=1".parse().unwrap());
    let (mut producer, mut outcomes) = broker(&emulator, 1)
        .max_wait(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    for i in 0..10 {
        producer
            .enqueue(EventData::new(format!("e{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let o = outcomes_for(&mut outcomes, 10).await;
    assert_eq!(o.len(), 1, "one outcome for the batch");
    assert!(o[0].is_success(), "{:?}", o[0].result);
    // The retry sent only the released one: each is stored once, that one last.
    let stored = bodies(&emulator, "0");
    assert_eq!(stored.len(), 10, "{stored:?}");
    assert_eq!(stored.last().map(String::as_str), Some("e3"));
    producer.close().await.unwrap();
}

#[tokio::test]
async fn a_refusal_fails_the_batch_with_it_and_says_others_were_stored() {
    let emulator = keyed_emulator(&[("eh1", 1)]).await;
    emulator.add_fault(
        "reject,condition=amqp:not-allowed,description=no e2,every=3,count=1"
            .parse()
            .unwrap(),
    );
    let (mut producer, mut outcomes) = broker(&emulator, 1)
        .max_wait(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    for i in 0..6 {
        producer
            .enqueue(EventData::new(format!("e{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let o = outcomes_for(&mut outcomes, 6).await;
    assert_eq!(o.len(), 1);
    let error = o[0].result.as_ref().unwrap_err();
    assert_eq!(error.condition(), Some("amqp:not-allowed"), "{error}");
    // Five of the six were accepted: the outcome says the batch may be stored.
    assert!(error.is_ambiguous(), "{error}");
    assert_eq!(bodies(&emulator, "0"), ["e0", "e1", "e3", "e4", "e5"]);
    producer.close().await.unwrap();
}

#[tokio::test]
async fn a_broker_that_stops_answering_fails_every_event_in_time() {
    let emulator = keyed_emulator(&[("eh1", 2)]).await;
    emulator.add_fault("stall".parse().unwrap());
    let (mut producer, mut outcomes) = broker(&emulator, 2)
        .try_timeout(Duration::from_millis(500))
        .delivery_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    for i in 0..50 {
        producer.enqueue(keyed(i)).await.unwrap();
    }
    let closing = tokio::spawn(async move { producer.close().await });
    let reported = outcomes_for(&mut outcomes, 50).await;
    for o in &reported {
        let error = o.result.as_ref().unwrap_err();
        assert!(error.is_timeout(), "{error}");
        // Transferred and never settled: they may have been stored.
        assert!(error.is_ambiguous(), "{error}");
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), closing)
        .await
        .expect("close is bounded");
}

#[tokio::test]
async fn a_wrong_password_or_no_broker_fails_the_build_and_a_wrong_address_its_events() {
    let emulator = keyed_emulator(&[("eh1", 2)]).await;
    let e = Producer::builder()
        .amqp_broker(&url(&emulator, "wrong"), addresses("eh1", 2))
        .build()
        .await
        .unwrap_err();
    assert!(e.is_auth(), "{e}");
    assert!(e.to_string().contains("wrong user name or password"), "{e}");
    assert!(
        !e.to_string().contains("wrong\""),
        "the password stays out: {e}"
    );

    // Nothing listening: the build fails at once rather than wait to reconnect.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("amqp://{}", closed.local_addr().unwrap());
    drop(closed);
    let started = std::time::Instant::now();
    let e = Producer::builder()
        .amqp_broker(&nobody, ["q"])
        .build()
        .await
        .unwrap_err();
    assert!(e.is_connection(), "{e}");
    assert!(
        chain(&e).contains("cannot connect to amqp://127.0.0.1"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Like Event Hubs, the emulator refuses a link by a detach right after its attach,
    // so a wrong address shows in the outcome of what is sent to it.
    let (mut producer, mut outcomes) = Producer::builder()
        .amqp_broker(
            &url(&emulator, KEY),
            ["eh1/Partitions/0", "nohub/Partitions/0"],
        )
        .max_wait(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    for address in ["nohub/Partitions/0", "eh1/Partitions/0"] {
        let event = EventData::new(address).with_partition_id(address);
        producer.enqueue(event).await.unwrap();
    }
    let mut reported = outcomes_for(&mut outcomes, 2).await;
    reported.sort_by(|a, b| a.partition.cmp(&b.partition));
    assert!(reported[0].is_success(), "{:?}", reported[0].result);
    let e = reported[1].result.as_ref().unwrap_err();
    assert!(e.is_not_found() && !e.is_ambiguous(), "{e}");
    assert!(e.to_string().contains("nohub/Partitions/0"), "{e}");
    producer.close().await.unwrap();
}

#[tokio::test]
async fn options_that_need_event_hubs_are_refused_at_build() {
    let emulator = emulator(1).await;
    let url = format!("amqp://{}", emulator.addr());
    let cases: Vec<(ProducerBuilder, &str)> = vec![
        (
            Producer::builder()
                .amqp_broker(&url, ["q"])
                .idempotent_retries(true),
            "idempotent_retries",
        ),
        (
            Producer::builder()
                .amqp_broker(&url, ["q"])
                .partition_refresh_interval(Duration::from_secs(5)),
            "partition_refresh_interval",
        ),
        (
            Producer::builder()
                .connection_string(&emulator.connection_string_for("eh1"))
                .amqp_broker(&url, ["q"]),
            "a connection string",
        ),
        (
            Producer::builder().amqp_broker(&url, ["q"]).hub("eh1"),
            "a hub",
        ),
        (
            Producer::builder().amqp_broker(&url, Vec::<String>::new()),
            "at least one address",
        ),
        (Producer::builder().amqp_broker(&url, ["q", "q"]), "twice"),
        (Producer::builder().amqp_broker(&url, ["q", " "]), "empty"),
        (
            Producer::builder().amqp_broker("http://h", ["q"]),
            "scheme 'http'",
        ),
    ];
    for (builder, says) in cases {
        let e = builder.build().await.unwrap_err();
        assert!(e.is_config(), "{says}: {e}");
        assert!(e.to_string().contains(says), "{says}: {e}");
    }
    // Nothing connected for any of them.
    assert_eq!(emulator.connection_count(), 0);
}
