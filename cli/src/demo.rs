//! `hubcat demo`: the whole job in one process — an emulator, generated events streamed
//! through the producer, a live progress bar, and a summary checked against what the
//! hub stored.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use streaming_producer::{EventData, Producer, PropertyValue};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many events to publish.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Body size of each event, in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Partitions of the embedded emulator's hub.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024),
          conflicts_with = "connection_string")]
    partitions: u32,
    /// Route by this many distinct partition keys (0: keyless, sent to one partition at
    /// a time in runs, the producer's sticky routing).
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Publish at most this many events per second (default: as fast as possible).
    #[arg(long, value_name = "PER_SECOND", value_parser = crate::send::parse_rate)]
    rate: Option<f64>,
    /// How many events may be pending.
    #[arg(long, default_value_t = 100_000)]
    max_pending: usize,
    /// How long the oldest event of a batch may wait, in milliseconds.
    #[arg(long, default_value_t = 250)]
    max_wait_ms: u64,
    /// Idempotent retries: a batch retried after a lost acknowledgement is stored
    /// once (try it with `--fault drop-connection,every=20`).
    #[arg(long)]
    idempotent: bool,
    /// A fault for the embedded emulator (same grammar as `hubcat emulator --fault`).
    #[arg(long = "fault", value_name = "SPEC", value_parser = crate::parse_fault,
          conflicts_with = "connection_string")]
    faults: Vec<eventhubs_emulator::Fault>,
    /// Publish to a real hub instead of the embedded emulator. Only this flag does:
    /// the demo does not read EVENTHUBS_CONNECTION_STRING, so that one exported for
    /// `hubcat send` does not take it over.
    #[arg(long)]
    connection_string: Option<String>,
    /// The hub, with --connection-string (if it has no EntityPath).
    #[arg(long)]
    hub: Option<String>,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    spool: crate::spool::SpoolArgs,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The most bytes of event bodies the demo lets be pending.
const MAX_PENDING_BYTES: usize = 256 << 20;

pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    for (flag, value) in [
        ("--count", args.count),
        ("--size", args.size as u64),
        ("--max-pending", args.max_pending as u64),
    ] {
        if value == 0 {
            eprintln!("hubcat demo: {flag} must be positive");
            return ExitCode::FAILURE;
        }
    }
    if let (Some(hub), None) = (&args.hub, &args.connection_string) {
        eprintln!(
            "hubcat demo: --hub {hub} names a hub of --connection-string, and there is none: \
             without it the demo runs an embedded emulator with a hub of its own"
        );
        return ExitCode::FAILURE;
    }
    if args.connection_string.is_none()
        && std::env::var_os(crate::hub::CONNECTION_STRING_ENV).is_some()
        && !args.quiet
    {
        eprintln!(
            "hubcat demo: running on an embedded emulator ({} is for send, tail and \
             info; give --connection-string to publish to a real hub)",
            crate::hub::CONNECTION_STRING_ENV
        );
    }
    // The pending bound in bytes follows the bound in events, up to a ceiling that
    // keeps large events from taking gigabytes; say so when it binds.
    let wanted = args.max_pending.saturating_mul(args.size);
    let pending_bytes = wanted.clamp(1 << 20, MAX_PENDING_BYTES);
    if wanted > MAX_PENDING_BYTES && !args.quiet {
        eprintln!(
            "hubcat demo: {} pending events of {} bytes would hold {} MiB; pending bodies are \
             capped at {} MiB (about {} events)",
            crate::progress::readable(args.max_pending as u64),
            crate::progress::readable(args.size as u64),
            crate::progress::readable((wanted >> 20) as u64),
            MAX_PENDING_BYTES >> 20,
            crate::progress::readable((MAX_PENDING_BYTES / args.size) as u64),
        );
    }
    let mut emulator: Option<eventhubs_emulator::EmulatorHandle> = None;
    let (connection_string, hub) = match &args.connection_string {
        Some(cs) => (cs.clone(), args.hub.clone()),
        None => {
            let mut builder = eventhubs_emulator::Emulator::builder().hub_config(
                eventhubs_emulator::HubConfig::new("demo", args.partitions)
                    .retention(eventhubs_emulator::Retention::Bytes(64 << 20)),
            );
            for fault in &args.faults {
                builder = builder.fault(fault.clone());
            }
            match builder.start().await {
                Ok(e) => {
                    let cs = e.connection_string();
                    emulator = Some(e);
                    (cs, Some("demo".to_owned()))
                }
                Err(e) => {
                    eprintln!("hubcat demo: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let mut builder = args
        .spool
        .apply(Producer::builder())
        .connection_string(&connection_string)
        .max_pending_events(args.max_pending)
        .max_pending_bytes(pending_bytes)
        .max_wait(Duration::from_millis(args.max_wait_ms))
        .idempotent_retries(args.idempotent);
    if let Some(hub) = hub {
        builder = builder.hub(hub);
    }
    let (mut producer, mut outcomes) = match builder.build().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "hubcat demo: {}",
                crate::hub::explain(&e, args.hub.is_some(), false)
            );
            return ExitCode::FAILURE;
        }
    };
    let max_batch = producer.max_batch_bytes();
    let partitions = producer.partition_ids();

    let bar = Arc::new(crate::progress::Progress::new(
        "demo",
        "events published",
        Some(args.count),
        args.quiet,
        String::new,
    ));

    // Enqueue times, indexed by event number, for enqueue-to-outcome latency.
    let started = Instant::now();
    let enqueued_at: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.count).map(|_| AtomicU64::new(0)).collect());
    let reader = {
        let enqueued_at = enqueued_at.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed, mut batches, mut bytes) = (0u64, 0u64, 0u64, 0u64);
            let mut latencies = Vec::new();
            let mut first_error = None;
            let mut recovered = 0u64;
            while let Some(outcome) = outcomes.next().await {
                if outcome.recovered {
                    // Left in the spool by an earlier run: not this run's events.
                    recovered += outcome.events.len() as u64;
                    continue;
                }
                let now = started.elapsed();
                for event in &outcome.events {
                    if let Some((_, PropertyValue::Long(n))) = event.properties().first() {
                        if let Some(at) = enqueued_at.get(*n as usize) {
                            let at = at.load(Ordering::Relaxed);
                            latencies.push(now.saturating_sub(Duration::from_micros(at)));
                        }
                    }
                }
                match &outcome.result {
                    Ok(()) => {
                        ok += outcome.events.len() as u64;
                        batches += 1;
                        bytes += outcome.size_in_bytes as u64;
                    }
                    Err(e) => {
                        failed += outcome.events.len() as u64;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
                bar.inc(outcome.events.len() as u64);
            }
            (
                ok,
                failed,
                batches,
                bytes,
                latencies,
                first_error,
                recovered,
            )
        })
    };

    let body = bytes::Bytes::from(vec![b'.'; args.size]);
    let pace = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    for n in 0..args.count {
        if let Some(pace) = pace {
            let due = started + pace.mul_f64(n as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let mut event = EventData::new(body.clone()).with_property("n", n as i64);
        if args.keys > 0 {
            event = event.with_partition_key(format!("key-{}", n % args.keys));
        }
        enqueued_at[n as usize].store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Err(e) = producer.enqueue(event).await {
            eprintln!("hubcat demo: {}", crate::chain(e.error()));
            break;
        }
    }
    if let Err(e) = producer.close().await {
        eprintln!("hubcat demo: closing failed: {}", crate::chain(&e));
    }
    let (ok, failed, batches, bytes, mut latencies, first_error, recovered) = match reader.await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hubcat demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    bar.finish();
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let fill = if batches > 0 {
        100.0 * bytes as f64 / (batches as f64 * max_batch as f64)
    } else {
        0.0
    };
    println!("hubcat demo summary");
    println!(
        "  publishing            {}",
        if args.idempotent {
            "idempotent (retries are stored once)"
        } else {
            "at least once (a retry after a lost acknowledgement may store twice)"
        }
    );
    let n = crate::progress::readable;
    println!("  events published      {} of {}", n(ok), n(args.count));
    println!("  failures              {}", n(failed));
    if recovered > 0 {
        println!(
            "  from the spool        {} (left by an earlier run)",
            n(recovered)
        );
    }
    println!("  elapsed               {elapsed:.2} s");
    println!(
        "  events/s              {}",
        n((ok as f64 / elapsed.max(1e-9)).round() as u64)
    );
    println!("  batches               {}", n(batches));
    println!("  mean batch fill       {fill:.1}% of {max_batch} bytes");
    println!(
        "  latency p50 / p99     {:.1} ms / {:.1} ms (enqueue to outcome)",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    if let Some(e) = &first_error {
        println!("  first error           {e}");
    }
    let mut read_back_ok = true;
    if let Some(emulator) = emulator {
        println!("  per partition (read back from the emulator):");
        let mut stored_total = 0u64;
        let mut empty = 0;
        for id in &partitions {
            let stored = emulator
                .partition_info("demo", id)
                .map(|i| (i.last_sequence_number + 1) as u64)
                .unwrap_or(0);
            stored_total += stored;
            empty += usize::from(stored == 0);
            println!("    partition {id:>4}        {}", n(stored));
        }
        if args.keys == 0 && empty > 0 && ok > 0 {
            // Sticky routing: a new user expects keyless events spread evenly.
            println!(
                "  (keyless events go to one partition at a time, in runs of up to a quarter \
                 of --max-pending ({} events here) and at most a batch ({} bytes): fewer \
                 events leave partitions empty; --keys N spreads them by key)",
                n(args.max_pending as u64 / 4),
                n(max_batch as u64)
            );
        }
        read_back_ok = stored_total == ok + recovered;
        println!(
            "  read back             {} stored, {}",
            n(stored_total),
            if read_back_ok {
                "equal to what was published"
            } else {
                "NOT equal to what was published"
            }
        );
        emulator.shutdown().await;
    }
    if failed == 0 && ok == args.count && read_back_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
