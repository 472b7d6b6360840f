//! Microsoft's Rust Event Hubs SDK (`azure_messaging_eventhubs` 0.16) against
//! `hubcat emulator`: management calls, `create_batch` + `send_batch` to a partition,
//! by key and through the gateway, and the buffered producer.
//!
//! Prints one `PASS name` or `FAIL name: why` line per check, like the Python and JS
//! suites. Every event that a check reports sent is appended to `$RS_SENT` as
//! `hub<TAB>body<TAB>partition<TAB>key` so that the Python consumer can read the hubs
//! back. Env: `EH_CS` (the emulator's connection string), `RS_TAG` (a tag unique to
//! this run, in every body), `RS_SENT`, `EH_MAX_MESSAGE_SIZE` (optional).
//!
//! The SDK always dials TLS for the namespace of a connection string, so it reaches the
//! plain emulator through `with_custom_endpoint("amqp://HOST:PORT")`.

use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_messaging_eventhubs::{
    BufferedProducerClient, EnqueueEventOptions, EventDataBatchOptions, ProducerClient,
};

type Result<T> = std::result::Result<T, String>;

struct Env {
    cs: String,
    endpoint: String,
    tag: String,
    sent: Mutex<std::fs::File>,
    max_message_size: Option<u64>,
}

impl Env {
    fn record(&self, hub: &str, bodies: &[String], partition: Option<&str>, key: Option<&str>) {
        let mut f = self.sent.lock().unwrap();
        for b in bodies {
            let _ = writeln!(
                f,
                "{hub}\t{b}\t{}\t{}",
                partition.unwrap_or(""),
                key.unwrap_or("")
            );
        }
        let _ = f.flush();
    }

    fn bodies(&self, what: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("rs-{}-{what}-{i}", self.tag))
            .collect()
    }

    async fn producer(&self, hub: &str) -> Result<ProducerClient> {
        ProducerClient::builder()
            .with_custom_endpoint(format!("amqp://{}", self.endpoint))
            .open_with_connection_string(&self.cs, Some(hub))
            .await
            .map_err(|e| format!("open: {e}"))
    }
}

fn expect(cond: bool, why: impl Into<String>) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(why.into())
    }
}

/// Runs a check with a time limit; a hang is a failure, not a stuck suite.
async fn check<F: Future<Output = Result<()>>>(name: &str, limit: Duration, f: F) {
    let result = match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
    };
    match result {
        Ok(()) => println!("PASS {name}"),
        Err(why) => println!("FAIL {name}: {}", why.replace('\n', " ")),
    }
    std::io::stdout().flush().ok();
}

/// Hub and partition properties, then at once a batch for partition "1" on the same
/// client: the sequence that once hung (the SDK authorises each partition path with a
/// `$cbs` token of its own, then attaches).
async fn properties_then_partition_send(env: &Env) -> Result<()> {
    let hub = "rsprops";
    let p = env.producer(hub).await?;
    let props = p
        .get_eventhub_properties()
        .await
        .map_err(|e| e.to_string())?;
    expect(props.name == hub, format!("name {:?}", props.name))?;
    expect(
        props.partition_ids == ["0", "1", "2", "3"],
        format!("partition ids {:?}", props.partition_ids),
    )?;
    for id in &props.partition_ids {
        let pp = p
            .get_partition_properties(id)
            .await
            .map_err(|e| e.to_string())?;
        expect(
            &pp.id == id,
            format!("partition {id} reported as {:?}", pp.id),
        )?;
        expect(
            pp.eventhub == hub,
            format!("partition {id} of hub {:?}", pp.eventhub),
        )?;
    }
    let bodies = env.bodies("after-props", 5);
    send_batch(&p, &bodies, Some("1"), None).await?;
    env.record(hub, &bodies, Some("1"), None);
    p.close().await.map_err(|e| format!("close: {e}"))
}

async fn send_batch(
    p: &ProducerClient,
    bodies: &[String],
    partition: Option<&str>,
    key: Option<&str>,
) -> Result<()> {
    let batch = p
        .create_batch(Some(EventDataBatchOptions {
            partition_id: partition.map(str::to_string),
            partition_key: key.map(str::to_string),
            ..Default::default()
        }))
        .await
        .map_err(|e| format!("create_batch: {e}"))?;
    for b in bodies {
        let added = batch
            .try_add_event_data(b.as_bytes().to_vec(), None)
            .map_err(|e| format!("try_add_event_data: {e}"))?;
        expect(added, "an event did not fit an empty batch")?;
    }
    p.send_batch(batch, None)
        .await
        .map_err(|e| format!("send_batch: {e}"))
}

async fn send_batches(env: &Env) -> Result<()> {
    let hub = "rssend";
    let p = env.producer(hub).await?;
    let to_partition = env.bodies("pid", 20);
    send_batch(&p, &to_partition, Some("2"), None).await?;
    env.record(hub, &to_partition, Some("2"), None);
    let gateway = env.bodies("gateway", 20);
    send_batch(&p, &gateway, None, None).await?;
    env.record(hub, &gateway, None, None);
    for key in ["alpha", "bravo", "charlie"] {
        let keyed = env.bodies(&format!("key-{key}"), 5);
        send_batch(&p, &keyed, None, Some(key)).await?;
        env.record(hub, &keyed, None, Some(key));
    }
    p.close().await.map_err(|e| format!("close: {e}"))
}

async fn batch_limit(env: &Env, max: u64) -> Result<()> {
    let producer = env.producer("rssend").await?;
    let p = &producer;
    let fits = |body: usize| async move {
        let batch = p
            .create_batch(None)
            .await
            .map_err(|e| format!("create_batch: {e}"))?;
        batch
            .try_add_event_data(vec![b'x'; body], None)
            .map_err(|e| format!("try_add_event_data: {e}"))
    };
    // A body of the whole announced size cannot fit with its envelope; had the SDK
    // seen the 1 MiB default instead, it would have.
    expect(
        !fits(max as usize).await?,
        format!("a {max}-byte body fit a batch of the announced max-message-size"),
    )?;
    // The SDK weighs the first event twice (once as the batch's envelope), so a
    // quarter of the size is what surely fits.
    expect(
        fits(max as usize / 4).await?,
        "a quarter of the announced max-message-size did not fit",
    )?;
    producer.close().await.map_err(|e| format!("close: {e}"))
}

async fn buffered(env: &Env) -> Result<()> {
    let hub = "rsbuf";
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let (ok2, failed2) = (ok.clone(), failed.clone());
    let producer = BufferedProducerClient::builder()
        .with_custom_endpoint(format!("amqp://{}", env.endpoint))
        .with_max_wait_time(azure_core::time::Duration::milliseconds(200))
        .with_on_send_succeeded(move |c| {
            let ok = ok2.clone();
            async move {
                ok.fetch_add(c.events.len(), Ordering::SeqCst);
            }
        })
        .with_on_send_failed(move |c| {
            let failed = failed2.clone();
            async move {
                failed.lock().unwrap().push(format!(
                    "{} events on partition {}: {}",
                    c.events.len(),
                    c.partition_id,
                    c.error
                ));
            }
        })
        .open_with_connection_string(&env.cs, Some(hub))
        .await
        .map_err(|e| format!("open: {e}"))?;
    let plain = env.bodies("buffered", 300);
    let to_partition = env.bodies("buffered-pid", 100);
    let keyed = env.bodies("buffered-key", 100);
    for (i, b) in plain.iter().enumerate() {
        producer
            .enqueue_event(b.as_bytes().to_vec(), None)
            .await
            .map_err(|e| format!("enqueue {i}: {e}"))?;
    }
    for b in &to_partition {
        let options = EnqueueEventOptions {
            partition_id: Some("3".into()),
            ..Default::default()
        };
        producer
            .enqueue_event(b.as_bytes().to_vec(), Some(options))
            .await
            .map_err(|e| format!("enqueue: {e}"))?;
    }
    for b in &keyed {
        let options = EnqueueEventOptions {
            partition_key: Some("delta".into()),
            ..Default::default()
        };
        producer
            .enqueue_event(b.as_bytes().to_vec(), Some(options))
            .await
            .map_err(|e| format!("enqueue: {e}"))?;
    }
    producer.close().await.map_err(|e| format!("close: {e}"))?;
    let failed = failed.lock().unwrap().clone();
    expect(failed.is_empty(), format!("failed batches: {failed:?}"))?;
    let n = ok.load(Ordering::SeqCst);
    expect(n == 500, format!("{n} of 500 events reported sent"))?;
    env.record(hub, &plain, None, None);
    env.record(hub, &to_partition, Some("3"), None);
    env.record(hub, &keyed, None, Some("delta"));
    Ok(())
}

async fn wrong_key_refused(env: &Env) -> Result<()> {
    let cs: Vec<String> = env
        .cs
        .split(';')
        .map(|part| match part.split_once('=') {
            Some(("SharedAccessKey", _)) => "SharedAccessKey=bm90IHRoZSBrZXk=".to_string(),
            _ => part.to_string(),
        })
        .collect();
    let cs = cs.join(";");
    let opened = ProducerClient::builder()
        .with_custom_endpoint(format!("amqp://{}", env.endpoint))
        .with_retry_options(azure_messaging_eventhubs::RetryOptions {
            max_retries: 0,
            ..Default::default()
        })
        .open_with_connection_string(&cs, Some("rssend"))
        .await;
    let p = match opened {
        Err(_) => return Ok(()),
        Ok(p) => p,
    };
    let bodies = env.bodies("wrong-key", 1);
    match send_batch(&p, &bodies, None, None).await {
        Err(_) => Ok(()),
        Ok(()) => Err("a batch signed with the wrong key was accepted".into()),
    }
}

// A current-thread runtime: fe2o3-amqp 0.16.2, which this SDK version pins, records a
// sent delivery as unsettled only after handing the transfer to its session task. On a
// multi-threaded runtime that task can take the emulator's disposition (sent within
// microseconds on loopback) in between, drop it as unknown, and the send waits for
// good. Here the session task cannot run between the two steps (tests/interop/README.md).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    // The SDK's own logs, on stderr, when RUST_LOG asks for them (`RUST_LOG=debug`).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
    let cs = std::env::var("EH_CS").expect("EH_CS: the emulator's connection string");
    let endpoint = cs
        .split(';')
        .find_map(|p| p.strip_prefix("Endpoint=sb://"))
        .map(|e| e.trim_end_matches('/').to_string())
        .expect("an Endpoint=sb://HOST:PORT in EH_CS");
    let sent = std::env::var("RS_SENT").expect("RS_SENT: where to append what was sent");
    let env = Env {
        cs,
        endpoint,
        tag: std::env::var("RS_TAG").unwrap_or_else(|_| "0".into()),
        sent: Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&sent)
                .expect("RS_SENT must be writable"),
        ),
        max_message_size: std::env::var("EH_MAX_MESSAGE_SIZE")
            .ok()
            .and_then(|v| v.parse().ok()),
    };
    let limit = Duration::from_secs(30);
    check(
        "rs.properties_then_send_batch.partition_1",
        limit,
        properties_then_partition_send(&env),
    )
    .await;
    check(
        "rs.send_batch.partition_gateway_key",
        limit,
        send_batches(&env),
    )
    .await;
    if let Some(max) = env.max_message_size {
        check(
            "rs.create_batch.max_message_size",
            limit,
            batch_limit(&env, max),
        )
        .await;
    }
    check("rs.buffered.500_on_success", limit, buffered(&env)).await;
    check("rs.auth.wrong_key_refused", limit, wrong_key_refused(&env)).await;
}
