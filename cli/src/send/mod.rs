//! `hubcat send`: events from files or stdin into a hub.
//!
//! Files: `args` (the flags and their checks), `input` (reading and cutting the input
//! into events), `shape` (what an input becomes: key, partition, properties), `stats`
//! (`--stats`: the producer's statistics as JSON lines), `summary` (the outcomes
//! collected, and the summary at the end).

mod args;
mod input;
mod shape;
mod stats;
mod summary;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use streaming_producer::RetryPolicy;

use args::SummaryFormat;
pub(crate) use args::{parse_duration, parse_rate, SendArgs};
use input::{Inputs, Line};
use shape::Shape;
use summary::{collect, Summary};

use crate::progress::readable;

pub(crate) async fn run(args: SendArgs) -> ExitCode {
    // From here on SIGINT and SIGTERM stop the reading, and what was read is published.
    let mut stop = std::pin::pin!(crate::stop_signal());
    let builder = match args.hub.producer_builder() {
        Ok(builder) => builder,
        Err(e) => {
            eprintln!("hubcat send: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.idempotent && args.hub.amqp_url.is_some() {
        // Said in the flags' names; the library would refuse it too.
        eprintln!(
            "hubcat send: --idempotent needs Event Hubs' idempotent producers, which a \
             generic broker (--amqp-url) does not have"
        );
        return ExitCode::FAILURE;
    }
    let max_wait = Duration::from_millis(args.max_wait_ms);
    if args.delivery_timeout <= max_wait {
        // Checked here to be said in the flags' names; the library would refuse it too.
        eprintln!(
            "hubcat send: --delivery-timeout ({:?}) must be longer than --max-wait-ms ({:?}): \
             an event may wait that long in its batch before it is even sent",
            args.delivery_timeout, max_wait
        );
        return ExitCode::FAILURE;
    }
    let mut inputs = match Inputs::new(&args.files) {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("hubcat send: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = args
        .spool
        .apply(builder)
        .max_wait(max_wait)
        .max_pending_events(usize::try_from(args.max_pending).unwrap_or(usize::MAX))
        .delivery_timeout(args.delivery_timeout)
        .idempotent_retries(args.idempotent);
    if let Some(n) = args.retries {
        builder = builder.retry_policy(RetryPolicy::default().with_max_retries(n));
    }
    if let Some(t) = args.try_timeout {
        builder = builder.try_timeout(t);
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
    let stats_file = match args.stats.as_deref().map(stats::StatsFile::create) {
        Some(Err(e)) => {
            eprintln!("hubcat send: {e}");
            return ExitCode::FAILURE;
        }
        Some(Ok(file)) => Some(file),
        None => None,
    };
    let (mut producer, outcomes) = match builder.build().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hubcat send: {}", args.hub.explain(&e));
            return ExitCode::FAILURE;
        }
    };
    if let Some(p) = &args.partition {
        let ids = producer.partition_ids();
        if !ids.contains(p) {
            if args.hub.amqp_url.is_some() {
                eprintln!(
                    "hubcat send: --partition '{p}' is not one of the --address values ({})",
                    ids.join(", ")
                );
            } else {
                eprintln!(
                    "hubcat send: the hub has no partition '{p}' (its partitions: {})",
                    ids.join(", ")
                );
            }
            let _ = producer.close().await;
            return ExitCode::FAILURE;
        }
    }
    let shape = Shape::new(&args);
    let max_batch = producer.max_batch_bytes();
    let collector = tokio::spawn(collect(outcomes, failed_out, args.delimiter));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let durable_marks = args
        .print_durable
        .then(|| tokio::spawn(print_durable(producer.clone(), accepted.clone())));
    let stats_writer = stats_file.map(|file| stats::StatsWriter::start(producer.clone(), file));
    let started = Instant::now();
    let max_line = usize::try_from(args.max_line_bytes).unwrap_or(usize::MAX);
    let pace = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let (mut read, mut unparsed, mut too_long) = (0u64, Vec::new(), 0u64);
    let mut read_failed = false;
    let mut interrupted = None;
    let progress = {
        let producer = producer.clone();
        crate::progress::Progress::new("send", "events read", None, args.quiet, move || {
            format!("{} pending", readable(producer.total_pending() as u64))
        })
    };
    if !args.quiet && producer.recovered_events() > 0 {
        eprintln!(
            "hubcat send: {} events an earlier run left in the spool are published first",
            readable(producer.recovered_events() as u64)
        );
    }
    if !args.quiet {
        let names: Vec<String> = if args.files.is_empty() {
            vec!["stdin".to_owned()]
        } else {
            args.files
                .iter()
                .map(|f| match f.to_str() {
                    Some("-") => "stdin".to_owned(),
                    _ => f.display().to_string(),
                })
                .collect()
        };
        eprintln!("hubcat send: connected; reading {}", names.join(", "));
    }
    loop {
        if let Some(pace) = pace {
            // Paced by the schedule, not by sleeps in a row, so the rate holds on average.
            let due = started + pace.mul_f64(read as f64);
            tokio::select! {
                biased;
                signal = &mut stop => {
                    interrupted = Some(signal);
                    break;
                }
                () = tokio::time::sleep_until(due.into()) => {}
            }
        }
        let line = tokio::select! {
            biased;
            signal = &mut stop => {
                interrupted = Some(signal);
                break;
            }
            line = inputs.next(max_line, args.delimiter) => line,
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                eprintln!("hubcat send: {e} (after {read} events)");
                read_failed = true;
                break;
            }
        };
        read += 1;
        progress.inc(1);
        let line = match line {
            Line::Bytes(bytes) => bytes,
            Line::TooLong(len) => {
                eprintln!(
                    "hubcat send: line {read} has {len} bytes, more than --max-line-bytes \
                     {max_line}; not published (counted as too long)"
                );
                too_long += 1;
                continue;
            }
        };
        match shape.event(line) {
            Ok(event) => {
                if let Err(e) = producer.enqueue(event).await {
                    eprintln!("hubcat send: {}", crate::chain(e.error()));
                    break;
                }
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err((line, why)) => {
                eprintln!("hubcat send: line {read} skipped: {why}");
                unparsed.push(line);
            }
        }
    }
    progress.finish();
    if let Some(signal) = interrupted {
        eprintln!(
            "hubcat send: {signal}: stopped reading after {read} events; publishing what was read"
        );
    }
    if let Err(e) = producer.close().await {
        eprintln!("hubcat send: closing failed: {}", crate::chain(&e));
    }
    if let Some(marks) = durable_marks {
        marks.abort();
    }
    if let Some(writer) = stats_writer {
        writer.finish(&producer).await;
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
                        f.write_all(&[args.delimiter])
                    })
                });
            if let Err(e) = appended {
                eprintln!("hubcat send: writing {} failed: {e}", path.display());
            }
        }
    }
    let summary = Summary {
        elapsed: started.elapsed(),
        read,
        stats,
        unparsable: unparsed.len() as u64,
        lines_too_long: too_long,
        max_batch,
        read_failed,
    };
    match args.summary {
        SummaryFormat::Json => println!("{}", summary.json()),
        SummaryFormat::Text if !args.quiet => eprint!("{}", summary.text()),
        SummaryFormat::Text => {}
    }
    if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints `durable N` on stdout each time the first `N` events accepted are durable
/// in the spool (`--print-durable`).
async fn print_durable(
    producer: streaming_producer::Producer,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let mut said = 0;
    loop {
        let n = accepted.load(std::sync::atomic::Ordering::Relaxed);
        if n == said {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        if producer.wait_durable().await.is_err() {
            return;
        }
        println!("durable {n}");
        said = n;
    }
}
