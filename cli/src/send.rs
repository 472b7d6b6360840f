//! `hubcat send`: newline-delimited events from stdin into a hub.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use streaming_producer::{BatchOutcome, EventData, Outcomes, Producer};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Connection string of the namespace (or of the hub, with EntityPath).
    #[arg(long, env = "EVENTHUBS_CONNECTION_STRING", hide_env_values = true)]
    connection_string: String,
    /// The event hub, if the connection string has no EntityPath.
    #[arg(long)]
    hub: Option<String>,
    /// Each line is JSON; publish it with this field's value as the partition key.
    #[arg(long, value_name = "FIELD", conflicts_with = "partition")]
    key_field: Option<String>,
    /// Publish every event to this partition id.
    #[arg(long, value_name = "ID")]
    partition: Option<String>,
    /// How long the oldest event of a batch may wait, in milliseconds.
    #[arg(long, default_value_t = 250)]
    max_wait_ms: u64,
    /// How many events may be pending at once.
    #[arg(long, default_value_t = 2500)]
    max_pending: usize,
    /// Write the events that failed here, one per line.
    #[arg(long, value_name = "FILE")]
    failed_out: Option<PathBuf>,
}

/// What a line becomes.
fn event_for(line: String, args: &SendArgs) -> Result<EventData, (String, String)> {
    let mut event = EventData::new(line.clone().into_bytes());
    if let Some(p) = &args.partition {
        event = event.with_partition_id(p.clone());
    }
    if let Some(field) = &args.key_field {
        let key = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(map)) => match map.get(field) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(serde_json::Value::Bool(b)) => b.to_string(),
                Some(_) => {
                    return Err((line, format!("field '{field}' is not a string or number")))
                }
                None => return Err((line, format!("no field '{field}'"))),
            },
            Ok(_) => return Err((line, "not a JSON object".into())),
            Err(e) => return Err((line, format!("not JSON: {e}"))),
        };
        event = event.with_partition_key(key);
    }
    Ok(event)
}

#[derive(Debug, Default)]
struct Stats {
    events_ok: u64,
    events_failed: u64,
    batches: u64,
    batch_bytes: u64,
}

async fn collect(
    mut outcomes: Outcomes,
    mut failed_out: Option<std::io::BufWriter<std::fs::File>>,
) -> std::io::Result<Stats> {
    let mut stats = Stats::default();
    while let Some(BatchOutcome {
        partition,
        events,
        size_in_bytes,
        result,
        ..
    }) = outcomes.next().await
    {
        match result {
            Ok(()) => {
                stats.events_ok += events.len() as u64;
                stats.batches += 1;
                stats.batch_bytes += size_in_bytes as u64;
            }
            Err(e) => {
                stats.events_failed += events.len() as u64;
                tracing::warn!(partition, events = events.len(), "publishing failed: {e}");
                if let Some(out) = failed_out.as_mut() {
                    for event in &events {
                        out.write_all(event.body())?;
                        out.write_all(b"\n")?;
                    }
                }
            }
        }
    }
    if let Some(mut out) = failed_out {
        out.flush()?;
    }
    Ok(stats)
}

pub(crate) async fn run(args: SendArgs) -> ExitCode {
    let mut builder = Producer::builder()
        .connection_string(&args.connection_string)
        .max_wait(Duration::from_millis(args.max_wait_ms))
        .max_pending_events(args.max_pending.max(1));
    if let Some(hub) = &args.hub {
        builder = builder.hub(hub.clone());
    }
    let failed_out = match &args.failed_out {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("hubcat send: cannot create {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let (mut producer, outcomes) = match builder.build().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hubcat send: {}", crate::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let max_batch = producer.max_batch_bytes();
    let collector = tokio::spawn(collect(outcomes, failed_out));
    let started = Instant::now();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let (mut read, mut unparsed) = (0u64, Vec::new());
    let mut last_progress = Instant::now();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                eprintln!("hubcat send: reading stdin failed: {e}");
                break;
            }
        };
        read += 1;
        match event_for(line, &args) {
            Ok(event) => {
                if let Err(e) = producer.enqueue(event).await {
                    eprintln!("hubcat send: {}", crate::chain(e.error()));
                    break;
                }
            }
            Err((line, why)) => {
                tracing::warn!(line = read, "skipped: {why}");
                unparsed.push(line);
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "hubcat send: {read} lines read, {} pending, {:.0} lines/s",
                producer.total_pending(),
                read as f64 / secs
            );
        }
    }
    if let Err(e) = producer.close().await {
        eprintln!("hubcat send: closing failed: {}", crate::chain(&e));
    }
    let stats = match collector.await {
        Ok(Ok(stats)) => stats,
        Ok(Err(e)) => {
            eprintln!("hubcat send: writing failed events failed: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("hubcat send: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.failed_out {
        if !unparsed.is_empty() {
            let appended = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .and_then(|mut f| unparsed.iter().try_for_each(|l| writeln!(f, "{l}")));
            if let Err(e) = appended {
                eprintln!("hubcat send: writing {} failed: {e}", path.display());
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failures = stats.events_failed + unparsed.len() as u64;
    let fill = if stats.batches > 0 {
        100.0 * stats.batch_bytes as f64 / (stats.batches as f64 * max_batch as f64)
    } else {
        0.0
    };
    eprintln!("hubcat send: summary");
    eprintln!("  events sent      {}", stats.events_ok);
    eprintln!("  batches          {}", stats.batches);
    eprintln!("  mean batch fill  {fill:.1}% of {max_batch} bytes");
    eprintln!(
        "  events/s         {:.0}",
        stats.events_ok as f64 / elapsed.max(1e-9)
    );
    eprintln!(
        "  failures         {failures} ({} unparsable lines)",
        unparsed.len()
    );
    if failures == 0 && stats.events_ok == read {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streaming_producer::Routing;

    fn args(key_field: Option<&str>, partition: Option<&str>) -> SendArgs {
        SendArgs {
            connection_string: String::new(),
            hub: None,
            key_field: key_field.map(str::to_owned),
            partition: partition.map(str::to_owned),
            max_wait_ms: 250,
            max_pending: 10,
            failed_out: None,
        }
    }

    #[test]
    fn the_key_field_of_a_json_line_becomes_the_partition_key() {
        let a = args(Some("user"), None);
        let e = event_for(r#"{"user":"u1","n":1}"#.into(), &a).unwrap();
        assert_eq!(e.routing(), &Routing::PartitionKey("u1".into()));
        let e = event_for(r#"{"user":42}"#.into(), &a).unwrap();
        assert_eq!(e.routing(), &Routing::PartitionKey("42".into()));
        assert_eq!(e.body().as_ref(), br#"{"user":42}"#);
    }

    #[test]
    fn lines_without_the_key_are_refused_with_a_reason() {
        let a = args(Some("user"), None);
        for (line, why) in [
            ("not json", "not JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"other":1}"#, "no field 'user'"),
            (r#"{"user":{"a":1}}"#, "not a string or number"),
        ] {
            let (back, reason) = event_for(line.into(), &a).unwrap_err();
            assert_eq!(back, line);
            assert!(reason.contains(why), "{line}: {reason}");
        }
    }

    #[test]
    fn a_partition_flag_routes_every_line_there() {
        let e = event_for("plain".into(), &args(None, Some("3"))).unwrap();
        assert_eq!(e.routing(), &Routing::PartitionId("3".into()));
    }
}
