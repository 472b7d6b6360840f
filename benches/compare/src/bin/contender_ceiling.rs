//! The ceiling: what fe2o3 alone does with no producer logic. Events are encoded and
//! packed into full batched messages (format `0x80013700`) before the window opens;
//! then one fe2o3 `Sender` per partition sends its partition's batches, one after
//! another, each waiting for its settlement. Events are spread evenly over the
//! partitions; keys play no part (nothing is routed). With `--batch-events N` a batch
//! holds at most N events; with `--rate R` each batch goes when its last event is
//! due at R events per second, as a producer would send the batch it filled then.

use compare::{Report, Settings, SharedReport, Window};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::messaging::{Batch, Data, Message, Outcome};
use fe2o3_amqp::types::primitives::Binary;
use fe2o3_amqp::{Connection, Sendable, Sender, Session};

/// The message format of a batched message.
const BATCH_FORMAT: u32 = 0x8001_3700;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("contender_ceiling: {what}: {e}");
    std::process::exit(1)
}

#[tokio::main]
async fn main() {
    let s = Settings::from_args().unwrap_or_else(|e| compare::usage(e));
    let endpoint = s.host_port().unwrap_or_else(|e| compare::usage(e));
    let key_name = s
        .connection_string_part("SharedAccessKeyName")
        .unwrap_or_default();
    let key = s
        .connection_string_part("SharedAccessKey")
        .unwrap_or_default();
    // SASL PLAIN with the shared key authorises the whole connection, so no `$cbs`
    // token is needed (the service accepts this too).
    let mut connection = Connection::builder()
        .container_id("ceiling")
        .sasl_profile(SaslProfile::Plain {
            username: key_name,
            password: key,
        })
        .max_frame_size(65536u32)
        .open(format!("amqp://{endpoint}").as_str())
        .await
        .unwrap_or_else(|e| fail("connect", e));
    let mut session = Session::begin(&mut connection)
        .await
        .unwrap_or_else(|e| fail("begin session", e));
    let mut senders = Vec::new();
    for p in 0..s.partitions {
        let sender = Sender::attach(
            &mut session,
            format!("ceiling-{p}"),
            format!("{}/Partitions/{p}", s.hub),
        )
        .await
        .unwrap_or_else(|e| fail("attach", e));
        senders.push(sender);
    }
    let max = senders[0]
        .max_message_size()
        .filter(|m| *m > 0)
        .unwrap_or(1 << 20) as usize;

    // Every partition's share, packed into full batches before the window opens.
    let mut work: Vec<Vec<Packed>> = Vec::new();
    let most = s.batch_events.unwrap_or(usize::MAX);
    for p in 0..s.partitions as u64 {
        let mut batches = Vec::new();
        let (mut sections, mut size) = (Vec::new(), 0);
        let mut i = p;
        while i < s.events {
            let inner = serde_amqp::to_vec(&Data(Binary::from(compare::body(i, s.size, None))))
                .unwrap_or_else(|e| fail("encode", e));
            let cost = compare::section_size(inner.len());
            if (size + cost > max || sections.len() == most) && !sections.is_empty() {
                let last = i - s.partitions as u64;
                let n = sections.len();
                batches.push((n, last, batch_message(std::mem::take(&mut sections))));
                size = 0;
            }
            size += cost;
            sections.push(Data(Binary::from(inner)));
            i += s.partitions as u64;
        }
        if !sections.is_empty() {
            let last = i - s.partitions as u64;
            batches.push((sections.len(), last, batch_message(sections)));
        }
        work.push(batches);
    }

    let window = Window::start();
    let paced_from = tokio::time::Instant::now();
    let rate = s.rate;
    let mut tasks = Vec::new();
    for (mut sender, batches) in senders.into_iter().zip(work) {
        tasks.push(tokio::spawn(async move {
            let mut report = Report::default();
            for (n, last, message) in batches {
                compare::pace(paced_from, rate, last).await;
                let sendable = Sendable::builder()
                    .message(message)
                    .message_format(BATCH_FORMAT)
                    .build();
                report.batches += 1;
                match sender.send(sendable).await {
                    Ok(Outcome::Accepted(_)) => report.succeeded += n as u64,
                    Ok(outcome) => {
                        report.failed += n as u64;
                        report.first_error.get_or_insert(format!("{outcome:?}"));
                    }
                    Err(e) => {
                        report.failed += n as u64;
                        report.first_error.get_or_insert(e.to_string());
                    }
                }
            }
            let _ = sender.close().await;
            report
        }));
    }
    let report = SharedReport::default();
    let run = async {
        for task in tasks {
            let r = task.await.expect("a sender task panicked");
            let mut report = report.lock().unwrap();
            report.succeeded += r.succeeded;
            report.failed += r.failed;
            report.batches += r.batches;
            if report.first_error.is_none() {
                report.first_error = r.first_error;
            }
        }
    };
    let timed_out = tokio::time::timeout(s.deadline, run).await.is_err();
    compare::finish(&report, &window, &s, timed_out);
    std::process::exit(0);
}

/// A batch packed before the window opens: its event count, the index of its last
/// event, and the message.
type Packed = (usize, u64, Message<Batch<Data>>);

fn batch_message(sections: Vec<Data>) -> Message<Batch<Data>> {
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: None,
        application_properties: None,
        body: Batch::from(sections),
        footer: None,
    }
}
