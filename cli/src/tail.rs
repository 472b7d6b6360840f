//! `hubcat tail`: read events back from a hub's partitions to stdout.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use clap::{Args, ValueEnum};
use futures_util::stream::{self, BoxStream, StreamExt};
use futures_util::FutureExt as _;
use serde_json::{json, Map, Value};
use streaming_producer::{Error, PartitionProperties, PropertyValue, ReceivedEvent, StartPosition};

use crate::hub::HubArgs;
use crate::info::rfc3339;

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    hub: HubArgs,
    /// A partition id to read; repeat for several (default: all).
    #[arg(long = "partition", value_name = "ID")]
    partitions: Vec<String>,
    /// The consumer group to read through.
    #[arg(long, default_value = "$Default")]
    consumer_group: String,
    /// Where to start in each partition: `start` (the oldest retained event), `end`
    /// (only new events), `seq:N` (sequence number N on) or `time:RFC3339` (events
    /// stored after that time, e.g. `time:2026-12-03T10:00:00Z`).
    #[arg(long, value_name = "POSITION", default_value = "start", value_parser = parse_from)]
    from: StartPosition,
    /// Stop after this many events (in all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Keep waiting for new events; without it, tail stops at the last event each
    /// partition held when it started.
    #[arg(long)]
    follow: bool,
    /// `body`: each event's body on a line of its own. `json`: a JSON object per line
    /// with the partition, sequence number, offset, enqueued time, key, content type,
    /// properties and body (`body_base64` if it is not UTF-8).
    #[arg(long, value_enum, default_value_t = TailFormat::Body)]
    format: TailFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TailFormat {
    Body,
    Json,
}

fn parse_from(text: &str) -> Result<StartPosition, String> {
    match text {
        "start" | "earliest" | "beginning" => return Ok(StartPosition::Earliest),
        "end" | "latest" => return Ok(StartPosition::Latest),
        _ => {}
    }
    if let Some(n) = text.strip_prefix("seq:") {
        return n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(StartPosition::SequenceNumber)
            .ok_or_else(|| format!("'{n}' is not a sequence number (0 or more)"));
    }
    if let Some(t) = text.strip_prefix("time:") {
        return humantime::parse_rfc3339_weak(t)
            .map(StartPosition::EnqueuedTime)
            .map_err(|e| format!("'{t}' is not an RFC 3339 time like 2026-12-03T10:00:00Z: {e}"));
    }
    Err(format!(
        "'{text}' is not a position: use start, end, seq:N or time:RFC3339"
    ))
}

pub(crate) async fn run(args: TailArgs) -> ExitCode {
    let stop = crate::stop_signal();
    tokio::select! {
        result = tail(&args) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hubcat tail: {e}");
                ExitCode::FAILURE
            }
        },
        _ = stop => ExitCode::SUCCESS,
    }
}

/// The last sequence number to read from a partition when not following; `None` if
/// nothing in it is at or after `from`, so there is nothing to read.
fn last_to_read(p: &PartitionProperties, from: &StartPosition) -> Option<i64> {
    if p.is_empty {
        return None;
    }
    let last = p.last_enqueued_sequence_number;
    let any = match from {
        StartPosition::Earliest => true,
        StartPosition::Latest => false,
        StartPosition::SequenceNumber(n) => *n <= last,
        StartPosition::EnqueuedTime(t) => p.last_enqueued_time.is_some_and(|l| l > *t),
    };
    any.then_some(last)
}

async fn tail(args: &TailArgs) -> Result<(), String> {
    if args.hub.amqp_url.is_some() {
        return tail_broker(args).await;
    }
    let reader = args.hub.reader(&args.consumer_group).await?;
    let hub = reader
        .hub_properties()
        .await
        .map_err(|e| args.hub.explain(&e))?;
    let partitions = if args.partitions.is_empty() {
        hub.partition_ids.clone()
    } else {
        if let Some(unknown) = args
            .partitions
            .iter()
            .find(|p| !hub.partition_ids.contains(p))
        {
            return Err(format!(
                "the hub '{}' has no partition '{unknown}' (its partitions: {})",
                hub.name,
                hub.partition_ids.join(", ")
            ));
        }
        args.partitions.clone()
    };
    let mut reads = Vec::new();
    for id in &partitions {
        let last = if args.follow {
            None
        } else {
            let properties = reader
                .partition_properties(id)
                .await
                .map_err(|e| format!("partition {id}: {}", args.hub.explain(&e)))?;
            match last_to_read(&properties, &args.from) {
                Some(last) => Some(last),
                None => continue,
            }
        };
        let read = reader.read(id, args.from.clone());
        let read = match last {
            // Up to and including the last event it held at the start.
            Some(last) => {
                stream::unfold((read.boxed(), false), move |(mut read, done)| async move {
                    if done {
                        return None;
                    }
                    let item = read.next().await?;
                    let done = matches!(&item, Ok(e) if e.sequence_number >= last) || item.is_err();
                    Some((item, (read, done)))
                })
                .boxed()
            }
            None => read.boxed(),
        };
        reads.push(read);
    }
    let consumer_group = args.consumer_group.clone();
    let hub_name = hub.name.clone();
    let result = drain(args, reads, None, |e| {
        if e.is_not_found() {
            // The hub and its partitions were found above: what a read finds missing
            // is the consumer group.
            format!(
                "the hub '{hub_name}' has no consumer group '{consumer_group}' (check \
                 --consumer-group; '$Default' is always there)"
            )
        } else {
            args.hub.explain(e)
        }
    })
    .await;
    reader.close().await;
    result
}

/// How long `tail` without `--follow` waits for a broker's next message before it
/// takes the queues as read to the end (a queue has no last sequence number to stop
/// at).
const BROKER_IDLE: Duration = Duration::from_secs(2);

/// `hubcat tail --amqp-url`: the messages of the broker's queues, taken off them.
async fn tail_broker(args: &TailArgs) -> Result<(), String> {
    if args.from != StartPosition::Earliest {
        return Err("--from: a broker's queue is read from its head (take --from start)".into());
    }
    if args.consumer_group != "$Default" {
        return Err("--consumer-group: a broker's queue has no consumer groups".into());
    }
    let addresses = &args.hub.addresses;
    if let Some(unknown) = args.partitions.iter().find(|p| !addresses.contains(p)) {
        return Err(format!(
            "--partition '{unknown}' is not one of the --address values ({})",
            addresses.join(", ")
        ));
    }
    let reader = args.hub.reader(&args.consumer_group).await?;
    let read = if args.partitions.is_empty() {
        addresses
    } else {
        &args.partitions
    };
    let reads = read
        .iter()
        .map(|a| reader.read(a, StartPosition::Earliest).boxed())
        .collect();
    let idle = (!args.follow).then_some(BROKER_IDLE);
    let result = drain(args, reads, idle, |e| args.hub.explain(e)).await;
    reader.close().await;
    result
}

/// Writes the events of `reads` to stdout until they end, `--count` is reached, the
/// reader of stdout goes away or, with `idle`, no event has come for that long.
async fn drain<'a>(
    args: &TailArgs,
    reads: Vec<BoxStream<'a, Result<ReceivedEvent, Error>>>,
    idle: Option<Duration>,
    explain: impl Fn(&Error) -> String,
) -> Result<(), String> {
    let mut events = stream::select_all(reads);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut written = 0u64;
    let result = loop {
        if args.count.is_some_and(|n| written >= n) {
            break Ok(());
        }
        // Whatever is written is flushed before waiting for more.
        let next = match events.next().now_or_never() {
            Some(next) => next,
            None => {
                if out.flush().is_err() {
                    break Ok(());
                }
                match idle {
                    Some(idle) => match tokio::time::timeout(idle, events.next()).await {
                        Ok(next) => next,
                        Err(_) => break Ok(()),
                    },
                    None => events.next().await,
                }
            }
        };
        let event = match next {
            None => break Ok(()),
            Some(Err(e)) => break Err(explain(&e)),
            Some(Ok(event)) => event,
        };
        if write_event(&mut out, &event, args.format).is_err() {
            // The reader of stdout went away (`| head`): that is the end.
            break Ok(());
        }
        written += 1;
    };
    let _ = out.flush();
    result
}

fn write_event(
    out: &mut impl std::io::Write,
    event: &ReceivedEvent,
    format: TailFormat,
) -> std::io::Result<()> {
    match format {
        TailFormat::Body => {
            out.write_all(&event.body)?;
            out.write_all(b"\n")
        }
        TailFormat::Json => {
            serde_json::to_writer(&mut *out, &event_json(event))?;
            out.write_all(b"\n")
        }
    }
}

fn event_json(e: &ReceivedEvent) -> Value {
    let mut object = Map::new();
    object.insert("partition".into(), json!(e.partition));
    object.insert("sequence_number".into(), json!(e.sequence_number));
    object.insert("offset".into(), json!(e.offset));
    object.insert(
        "enqueued_time".into(),
        json!(e.enqueued_time.map(|t| rfc3339(Some(t)))),
    );
    object.insert("partition_key".into(), json!(e.partition_key));
    if let Some(ct) = &e.content_type {
        object.insert("content_type".into(), json!(ct));
    }
    if let Some(id) = &e.message_id {
        object.insert("message_id".into(), json!(id));
    }
    let properties: Map<String, Value> = e
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), property_json(v)))
        .collect();
    object.insert("properties".into(), Value::Object(properties));
    match std::str::from_utf8(&e.body) {
        Ok(text) => object.insert("body".into(), json!(text)),
        Err(_) => object.insert(
            "body_base64".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(&e.body)),
        ),
    };
    Value::Object(object)
}

fn property_json(v: &PropertyValue) -> Value {
    match v {
        PropertyValue::String(s) => json!(s),
        PropertyValue::Long(n) => json!(n),
        PropertyValue::Int(n) => json!(n),
        PropertyValue::Double(d) => json!(d),
        PropertyValue::Bool(b) => json!(b),
        PropertyValue::Binary(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        PropertyValue::Timestamp(ms) => {
            let time = u64::try_from(*ms)
                .ok()
                .map(|ms| SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms));
            json!(rfc3339(time))
        }
    }
}
