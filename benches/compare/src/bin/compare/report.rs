//! The Markdown report: the machine it ran on, how it ran, then one table per
//! throughput workload and one per latency workload, with medians over the rounds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

use crate::options::Options;
use crate::run::Run;
use crate::workloads::{Contender, Kind, Workload};

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or("?".into(), |kib| {
            format!("{:.0} GiB", kib as f64 / (1 << 20) as f64)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{model}, {cores} cores, {mem}, Linux {}, {rustc}",
        kernel.trim()
    )
}

pub(crate) type Results = BTreeMap<Contender, Vec<Run>>;

pub(crate) fn report(
    o: &Options,
    all: &[(Workload, Results)],
    started: Instant,
    command: &str,
) -> String {
    let mut md = String::new();
    let now = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    writeln!(
        md,
        "# Producer comparison{}\n",
        if o.smoke { " (smoke)" } else { "" }
    )
    .unwrap();
    writeln!(
        md,
        "Written by `{command}` on {now}, in {}; do not edit by hand.\n",
        compare::duration_in_words(started.elapsed())
    )
    .unwrap();
    writeln!(md, "- Machine: {}.", machine()).unwrap();
    writeln!(
        md,
        "- Each contender is its own process against one release `hubcat emulator` on \
         loopback (a fresh one per workload); contenders run interleaved (A B C A B C …), \
         {} round{}; figures are medians, with the range of events/s over the rounds.",
        o.rounds,
        if o.rounds == 1 { "" } else { "s" }
    )
    .unwrap();
    writeln!(
        md,
        "- Settings for all: `max_wait` 250 ms unless the workload says; pending events as the workload says \
         (the SDK bounds each partition, so it gets the total divided by the partition \
         count, rounded up: 6k over 4 partitions is its default of 1,500); default retries."
    )
    .unwrap();
    writeln!(
        md,
        "- Events/s: events reported stored ÷ the window, which opens before the first \
         event is handed over and closes when the last outcome is in. CPU: the client \
         process's user + system time in that window (`CLOCK_PROCESS_CPUTIME_ID`) ÷ events. RSS: \
         the client's peak (`VmHWM`). Batch fill: events per batch ÷ the events of the \
         workload's size that fit in the emulator's `max-message-size` of 1 MiB. Per \
         batch: the same window's CPU, system calls (a `raw_syscalls:sys_enter` counter \
         per thread, `perf_event_open`) and thread wake-ups (voluntary context switches \
         per thread, `/proc/self/task`; in a paced run, without those of the thread that \
         hands the events over and sleeps between them) ÷ batches reported.\n"
    )
    .unwrap();
    for (w, results) in all.iter().filter(|(w, _)| w.kind == Kind::Throughput) {
        writeln!(md, "## {}: {} events per contender\n", w.label(), w.events).unwrap();
        let spool = w.contenders.iter().any(|c| c.spool().is_some());
        if spool {
            writeln!(
                md,
                "Store and forward: each event is appended to a spool in the system's \
                 temporary directory as it is accepted, and marked done with its outcome. \
                 Disk bytes: what the client wrote to storage in the window \
                 (`write_bytes` of `/proc/self/io`) ÷ events.\n"
            )
            .unwrap();
        }
        if w.contenders.contains(&Contender::Stalled) {
            writeln!(
                md,
                "One partition stalled: the emulator stores nothing sent to partition 2 and \
                 never answers (`stall,partition=2`). The events routed there before the \
                 producer steered away fail at a 3 s delivery timeout, so this row's window \
                 closes with the last event stored; a target is at least 70% of the healthy \
                 producer's events/s.\n"
            )
            .unwrap();
        }
        if w.contenders.contains(&Contender::Receipts) {
            writeln!(
                md,
                "Receipts: each event through `enqueue_with_receipt`, its result read from the \
                 receipt (the outcome stream dropped); a target is at most 1.5× the client \
                 CPU per event of plain `enqueue`.\n"
            )
            .unwrap();
        }
        writeln!(
            md,
            "| contender | events/s (range) | vs this producer | client CPU-µs/event | peak RSS | events/batch | batch fill |{}",
            if spool { " disk bytes/event |" } else { "" }
        )
        .unwrap();
        writeln!(
            md,
            "|---|---|---|---|---|---|---|{}",
            if spool { "---|" } else { "" }
        )
        .unwrap();
        let ours = results
            .get(&Contender::Producer)
            .map(|r| median(r.iter().map(Run::rate).collect()))
            .unwrap_or(f64::NAN);
        let full = compare::events_per_full_batch(w.size, MAX_MESSAGE_SIZE) as f64;
        for (c, runs) in results {
            let rates: Vec<f64> = runs.iter().map(Run::rate).collect();
            let lo = rates.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = rates.iter().cloned().fold(0.0, f64::max);
            let r = median(rates.clone());
            let epb = median(runs.iter().map(Run::events_per_batch).collect());
            let mut cell = format!("{} ({}–{})", rate(r), rate(lo), rate(hi));
            let stalled: Vec<&Run> = runs.iter().filter(|r| r.timed_out).collect();
            if !stalled.is_empty() {
                let s = stalled[0];
                write!(
                    cell,
                    "; **stalled** in {} of {} rounds ({} of {} events in {:.0} s)",
                    stalled.len(),
                    runs.len(),
                    s.succeeded,
                    s.events,
                    s.secs
                )
                .unwrap();
            }
            let failed = median(runs.iter().map(|r| r.failed as f64).collect());
            if failed > 0.0 {
                write!(
                    cell,
                    "; {failed:.0} of {} events failed (median of the rounds)",
                    w.events
                )
                .unwrap();
                if let Some(e) = runs.iter().find_map(|r| r.error.as_ref()) {
                    write!(cell, " ({e})").unwrap();
                }
            }
            write!(
                md,
                "| {} | {cell} | {:.2}× | {} | {:.0} MB | {:.0} | {:.0}% |",
                c.label(),
                r / ours,
                compare::micros(median(runs.iter().map(Run::cpu_us_per_event).collect())),
                median(runs.iter().map(|r| r.rss_kib as f64 / 1024.0).collect()),
                epb,
                100.0 * epb / full,
            )
            .unwrap();
            if spool {
                let bytes: Vec<f64> = runs.iter().filter_map(Run::disk_bytes_per_event).collect();
                if bytes.is_empty() {
                    write!(md, " – |").unwrap();
                } else {
                    write!(md, " {:.0} |", median(bytes)).unwrap();
                }
            }
            writeln!(md).unwrap();
        }
        writeln!(md).unwrap();
    }
    for (w, results) in all.iter().filter(|(w, _)| w.kind == Kind::Latency) {
        writeln!(
            md,
            "## Latency: {}, {} events ({} s)\n",
            w.label(),
            w.events,
            w.events / w.rate
        )
        .unwrap();
        writeln!(
            md,
            "Enqueue-to-outcome time of every event: from just before it is handed over to \
             when its batch's outcome reaches the application.\n"
        )
        .unwrap();
        writeln!(
            md,
            "| contender | p50 | p99 | client CPU-µs/event | peak RSS |"
        )
        .unwrap();
        writeln!(md, "|---|---|---|---|---|").unwrap();
        for (c, runs) in results {
            writeln!(
                md,
                "| {} | {:.1} ms | {:.1} ms | {} | {:.0} MB |",
                c.label(),
                median(runs.iter().filter_map(|r| r.p50_ms).collect()),
                median(runs.iter().filter_map(|r| r.p99_ms).collect()),
                compare::micros(median(runs.iter().map(Run::cpu_us_per_event).collect())),
                median(runs.iter().map(|r| r.rss_kib as f64 / 1024.0).collect()),
            )
            .unwrap();
        }
        writeln!(md).unwrap();
    }
    for (w, results) in all.iter().filter(|(w, _)| w.kind == Kind::PerBatch) {
        per_batch(&mut md, w, results);
    }
    md
}

/// A per-batch workload's table: what each batch costs the client.
fn per_batch(md: &mut String, w: &Workload, results: &Results) {
    writeln!(
        md,
        "## Per batch: {}: {} events per contender\n",
        w.label(),
        w.events
    )
    .unwrap();
    let about = if w.rate > 0 {
        format!(
            "A steady sparse stream: events handed over at {} per second and published \
             within {} ms of the first in a batch; the ceiling sends what reaches each \
             partition in that time ({} events) as a batch, when its last event is due. \
             The producer's and the SDK's CPU includes their source sleeping before each \
             event (the ceiling's sleeps once per batch); the source's own wake-ups are \
             left out. Keyless events go to one partition at a time here (sticky \
             routing), so the producer's batches hold what all four partitions get in the \
             ceiling's: compare wake-ups per event too.",
            w.rate,
            w.max_wait_ms,
            w.ceiling_batch.unwrap_or(0)
        )
    } else {
        "One event per batch: keyed events over many partitions with a pending bound far \
         below the partition count, so each batch carries one event; the ceiling sends \
         one-event batches, the SDK's `ProducerClient` one `send_batch` of one event at a \
         time (its buffered producer, bounded to one event per partition here, waits out \
         `max_wait` for every batch; with 16 sends at a time the `ProducerClient` stalls)."
            .to_string()
    };
    writeln!(
        md,
        "{about} Targets: client CPU per batch at most a third of the Rust SDK's, and at \
         most 1.5 thread wake-ups per batch.\n"
    )
    .unwrap();
    writeln!(
        md,
        "| contender | events/s (range) | batches | events/batch | client CPU-µs/batch | vs Rust SDK | syscalls/batch | wake-ups/batch | wake-ups/event | client CPU-µs/event | peak RSS |"
    )
    .unwrap();
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|").unwrap();
    let sdk = results
        .get(&Contender::Sdk)
        .or_else(|| results.get(&Contender::SdkDirect))
        .map(|r| median(r.iter().map(Run::cpu_us_per_batch).collect()))
        .unwrap_or(f64::NAN);
    let figure = |v: Vec<f64>| {
        if v.is_empty() {
            "–".to_string()
        } else {
            format!("{:.1}", median(v))
        }
    };
    let per_event = |v: Vec<f64>| {
        if v.is_empty() {
            "–".to_string()
        } else {
            format!("{:.2}", median(v))
        }
    };
    for (c, runs) in results {
        let rates: Vec<f64> = runs.iter().map(Run::rate).collect();
        let lo = rates.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().cloned().fold(0.0, f64::max);
        let mut cell = format!(
            "{} ({}–{})",
            rate(median(rates.clone())),
            rate(lo),
            rate(hi)
        );
        let failed = median(runs.iter().map(|r| r.failed as f64).collect());
        if failed > 0.0 {
            write!(cell, "; {failed:.0} of {} events failed", w.events).unwrap();
        }
        if let Some(s) = runs.iter().find(|r| r.timed_out) {
            write!(
                cell,
                "; **stalled**: {} of {} events in {:.0} s",
                s.succeeded, s.events, s.secs
            )
            .unwrap();
        }
        let per_batch = median(runs.iter().map(Run::cpu_us_per_batch).collect());
        writeln!(
            md,
            "| {} | {cell} | {:.0} | {:.1} | {} | {:.2}× | {} | {} | {} | {} | {:.0} MB |",
            c.label(),
            median(runs.iter().map(|r| r.batches as f64).collect()),
            median(runs.iter().map(Run::events_per_batch).collect()),
            compare::micros(per_batch),
            per_batch / sdk,
            figure(runs.iter().filter_map(Run::syscalls_per_batch).collect()),
            figure(runs.iter().filter_map(Run::wakeups_per_batch).collect()),
            per_event(runs.iter().filter_map(Run::wakeups_per_event).collect()),
            compare::micros(median(runs.iter().map(Run::cpu_us_per_event).collect())),
            median(runs.iter().map(|r| r.rss_kib as f64 / 1024.0).collect()),
        )
        .unwrap();
    }
    writeln!(md).unwrap();
}

/// The emulator's `max-message-size` (the service's, 1 MiB).
pub(crate) const MAX_MESSAGE_SIZE: usize = 1 << 20;
