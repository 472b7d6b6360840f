//! `hubcat send`: newline-delimited events from stdin into a hub.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use streaming_producer::{BatchOutcome, EventData, Outcomes, Producer};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

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
    /// The longest an event may take from being read to being published (retries and
    /// reconnects included); events still unpublished then count as failures. E.g.
    /// `30s`, `2m`, `500ms`; a bare number is seconds.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    delivery_timeout: Duration,
    /// Write the events that failed here, one per line.
    #[arg(long, value_name = "FILE")]
    failed_out: Option<PathBuf>,
    /// Refuse lines that are not UTF-8 (counted as failures) instead of publishing
    /// their bytes as they are.
    #[arg(long)]
    strict_utf8: bool,
    /// The longest line accepted, in bytes; a longer one is counted as a failure.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_line_bytes: u64,
}

/// A duration as `250ms`, `30s`, `2m` or `1h`; a bare number is seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 30s, 2m or 500ms)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "'{other}' in '{text}' is not a unit (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("'{text}' is out of range"))
}

/// One line of input.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Its bytes, without the line end (`\n` or `\r\n`).
    Bytes(Vec<u8>),
    /// A line longer than the limit: how many bytes it had. Only the limit's worth is
    /// ever held in memory.
    TooLong(u64),
}

/// Reads the next line, holding at most `max` bytes of it; `None` at the end of input.
/// A last line without a line end counts.
async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let (mut line, mut total, mut too_long) = (Vec::new(), 0u64, false);
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            if total == 0 && line.is_empty() {
                return Ok(None);
            }
            break;
        }
        let end = available.iter().position(|b| *b == b'\n');
        let chunk = &available[..end.unwrap_or(available.len())];
        total += chunk.len() as u64;
        if !too_long {
            if line.len() + chunk.len() > max.saturating_add(1) {
                // One byte over the limit is allowed for a `\r` before the `\n`.
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(end.is_some());
        reader.consume(used);
        if end.is_some() {
            break;
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
        total -= 1;
    }
    if too_long || total > max as u64 {
        return Ok(Some(Line::TooLong(total)));
    }
    Ok(Some(Line::Bytes(line)))
}

/// What a line becomes: an event whose body is the line's bytes, or the line handed
/// back with why it was refused.
fn event_for(line: Vec<u8>, args: &SendArgs) -> Result<EventData, (Vec<u8>, String)> {
    if args.strict_utf8 {
        if let Err(e) = std::str::from_utf8(&line) {
            return Err((line, format!("not UTF-8 ({e})")));
        }
    }
    let key = match &args.key_field {
        None => None,
        Some(field) => Some(match serde_json::from_slice::<serde_json::Value>(&line) {
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
        }),
    };
    let mut event = EventData::new(line);
    if let Some(p) = &args.partition {
        event = event.with_partition_id(p.clone());
    }
    if let Some(key) = key {
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
    // From here on SIGINT and SIGTERM stop the reading, and what was read is published.
    let mut stop = std::pin::pin!(crate::stop_signal());
    let mut builder = Producer::builder()
        .connection_string(&args.connection_string)
        .max_wait(Duration::from_millis(args.max_wait_ms))
        .max_pending_events(args.max_pending.max(1))
        .delivery_timeout(args.delivery_timeout);
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
    let mut input = BufReader::new(tokio::io::stdin());
    let max_line = usize::try_from(args.max_line_bytes).unwrap_or(usize::MAX);
    let (mut read, mut unparsed, mut too_long) = (0u64, Vec::new(), 0u64);
    let mut read_failed = false;
    let mut interrupted = None;
    let mut last_progress = Instant::now();
    eprintln!("hubcat send: connected; reading lines from stdin");
    loop {
        let line = tokio::select! {
            biased;
            signal = &mut stop => {
                interrupted = Some(signal);
                break;
            }
            line = next_line(&mut input, max_line) => line,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                eprintln!("hubcat send: reading stdin failed after {read} lines: {e}");
                read_failed = true;
                break;
            }
        };
        read += 1;
        let line = match line {
            Line::Bytes(bytes) => bytes,
            Line::TooLong(len) => {
                eprintln!(
                    "hubcat send: line {read} has {len} bytes, more than --max-line-bytes \
                     {max_line}; not published (counted as a failure)"
                );
                too_long += 1;
                continue;
            }
        };
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
    if let Some(signal) = interrupted {
        eprintln!(
            "hubcat send: {signal}: stopped reading after {read} lines; publishing what was read"
        );
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
                .and_then(|mut f| {
                    unparsed.iter().try_for_each(|l| {
                        f.write_all(l)?;
                        f.write_all(b"\n")
                    })
                });
            if let Err(e) = appended {
                eprintln!("hubcat send: writing {} failed: {e}", path.display());
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failures = stats.events_failed + unparsed.len() as u64 + too_long;
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
        "  failures         {failures} ({} unparsable lines, {too_long} too long)",
        unparsed.len()
    );
    if read_failed {
        eprintln!("  input            not read to the end (see above)");
    }
    if failures == 0 && !read_failed && stats.events_ok == read {
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
            delivery_timeout: Duration::from_secs(120),
            failed_out: None,
            strict_utf8: false,
            max_line_bytes: 1 << 20,
        }
    }

    #[test]
    fn the_key_field_of_a_json_line_becomes_the_partition_key() {
        let a = args(Some("user"), None);
        let e = event_for(br#"{"user":"u1","n":1}"#.to_vec(), &a).unwrap();
        assert_eq!(e.routing(), &Routing::PartitionKey("u1".into()));
        let e = event_for(br#"{"user":42}"#.to_vec(), &a).unwrap();
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
            let (back, reason) = event_for(line.as_bytes().to_vec(), &a).unwrap_err();
            assert_eq!(back, line.as_bytes());
            assert!(reason.contains(why), "{line}: {reason}");
        }
    }

    #[test]
    fn a_partition_flag_routes_every_line_there() {
        let e = event_for(b"plain".to_vec(), &args(None, Some("3"))).unwrap();
        assert_eq!(e.routing(), &Routing::PartitionId("3".into()));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_published_as_bytes_or_refused_when_strict() {
        let bytes = b"caf\xe9 \xff".to_vec();
        let e = event_for(bytes.clone(), &args(None, None)).unwrap();
        assert_eq!(e.body().as_ref(), bytes.as_slice());
        let strict = SendArgs {
            strict_utf8: true,
            ..args(None, None)
        };
        let (back, why) = event_for(bytes.clone(), &strict).unwrap_err();
        assert_eq!(back, bytes);
        assert!(why.contains("not UTF-8"), "{why}");
    }

    async fn lines_of(input: &[u8], max: usize, chunk: usize) -> Vec<Line> {
        // A reader that hands out `chunk` bytes at a time, so lines span reads.
        let mut reader = BufReader::with_capacity(chunk, input);
        let mut out = Vec::new();
        while let Some(line) = next_line(&mut reader, max).await.unwrap() {
            out.push(line);
        }
        out
    }

    #[test]
    fn durations_take_units_and_bare_numbers_are_seconds() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").unwrap_err().contains("soon"));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("1e400").is_err());
    }

    #[tokio::test]
    async fn lines_keep_their_bytes_and_long_ones_are_measured_not_held() {
        let input = b"one\r\n\ntw\xffo\n0123456789abcdef\nlast";
        for chunk in [1, 3, 64] {
            assert_eq!(
                lines_of(input, 8, chunk).await,
                [
                    Line::Bytes(b"one".to_vec()),
                    Line::Bytes(Vec::new()),
                    Line::Bytes(b"tw\xffo".to_vec()),
                    Line::TooLong(16),
                    Line::Bytes(b"last".to_vec()),
                ],
                "chunk {chunk}"
            );
        }
        assert_eq!(
            lines_of(b"12345678\r\n", 8, 4).await,
            [Line::Bytes(b"12345678".to_vec())]
        );
        assert_eq!(lines_of(b"123456789\n", 8, 4).await, [Line::TooLong(9)]);
        assert!(lines_of(b"", 8, 4).await.is_empty());
    }
}
