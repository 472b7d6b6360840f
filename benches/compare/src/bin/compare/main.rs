//! The comparison runner: builds `hubcat` and the contenders, starts one release
//! `hubcat emulator` per workload, runs the contenders in interleaved rounds
//! (A B C A B C …), each as its own process, and writes the medians as Markdown.
//!
//! ```text
//! cargo run --release --manifest-path benches/compare/Cargo.toml                # benches/RESULTS.md
//! cargo run --release --manifest-path benches/compare/Cargo.toml -- --smoke      # a few thousand events
//! ```
//!
//! Flags: `--smoke` (one round of small workloads, written to
//! `target/compare-smoke.md`, failing if any event is not reported stored);
//! `--rounds N` (default 3); `--out PATH`; `--only TEXT` (workloads whose label holds
//! TEXT); `--hubcat PATH` (skip building it).
//!
//! The modules divide the runner by concern: `options` (the flags), `workloads` (what
//! is compared), `launch` (building and starting the processes), `run` (a contender's
//! `RESULT` line) and `report` (the Markdown).

mod launch;
mod options;
mod report;
mod run;
mod workloads;

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use launch::{cargo_build, run_contender, Emulator};
use options::parse_options;
use report::{report, Results};
use workloads::{workloads, Workload};

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let o = match parse_options(&root) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("compare: {e}");
            eprintln!(
                "usage: compare [--smoke] [--rounds N] [--out PATH] [--only TEXT] [--hubcat PATH]"
            );
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let hubcat = match &o.hubcat {
        Some(h) => h.clone(),
        None => {
            if let Err(e) = cargo_build(&root, &["-p", "hubcat"]) {
                eprintln!("compare: {e}");
                return ExitCode::FAILURE;
            }
            root.join("target").join(profile).join("hubcat")
        }
    };
    let manifest = root.join("benches/compare/Cargo.toml");
    if let Err(e) = cargo_build(
        &root,
        &["--bins", "--manifest-path", &manifest.to_string_lossy()],
    ) {
        eprintln!("compare: {e}");
        return ExitCode::FAILURE;
    }
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let logs = root.join("target/compare-logs");
    let _ = std::fs::create_dir_all(&logs);
    let deadline = Duration::from_secs(if o.smoke { 60 } else { 45 });

    let mut all: Vec<(Workload, Results)> = Vec::new();
    let mut problems = Vec::new();
    for w in workloads(o.smoke) {
        if o.only
            .as_ref()
            .is_some_and(|t| !w.label().contains(t.as_str()))
        {
            continue;
        }
        let label = w.label();
        let slug: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let emulator =
            match Emulator::start(&hubcat, &w, &logs.join(format!("{slug}.emulator.log"))) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("compare: {label}: {e}");
                    return ExitCode::FAILURE;
                }
            };
        let mut results = Results::new();
        for round in 1..=o.rounds {
            for &c in &w.contenders {
                let log = logs.join(format!("{slug}.{}.{round}.log", c.hub()));
                match run_contender(&bin_dir, c, &w, &emulator.connection_string, deadline, &log) {
                    Ok(run) => {
                        eprintln!(
                            "compare: {label} | round {round} | {:<8} {:>9.0} events/s  {} CPU-µs/event  {:>5.0} MB  {:>6.0} events/batch  {} CPU-µs/batch  {} wake-ups/batch{}{}{}",
                            c.hub(),
                            run.rate(),
                            compare::micros(run.cpu_us_per_event()),
                            run.rss_kib as f64 / 1024.0,
                            run.events_per_batch(),
                            compare::micros(run.cpu_us_per_batch()),
                            run.wakeups_per_batch().map_or("–".into(), |w| format!("{w:.2}")),
                            run.p99_ms.map_or(String::new(), |p| format!("  p50 {:.1} ms p99 {p:.1} ms", run.p50_ms.unwrap_or(f64::NAN))),
                            if run.timed_out { "  STALLED" } else { "" },
                            if run.failed > 0 { format!("  {} failed", run.failed) } else { String::new() },
                        );
                        // With a partition stalled, the events routed there before
                        // the producer steered away fail by design; every event must
                        // still have its outcome.
                        let accounted = if c.expects_failures() {
                            run.succeeded + run.failed == run.events && !run.timed_out
                        } else {
                            run.succeeded == run.events
                        };
                        if !accounted {
                            problems.push(format!(
                                "{label}: {} reported {} of {} events stored{}",
                                c.hub(),
                                run.succeeded,
                                run.events,
                                run.error
                                    .as_ref()
                                    .map_or(String::new(), |e| format!(" ({e})"))
                            ));
                        }
                        results.entry(c).or_default().push(run);
                    }
                    Err(e) => {
                        eprintln!("compare: {label}: {e}");
                        problems.push(format!("{label}: {e}"));
                    }
                }
            }
        }
        drop(emulator);
        all.push((w, results));
    }
    let command = if o.smoke {
        "cargo run --release --manifest-path benches/compare/Cargo.toml -- --smoke"
    } else {
        "cargo run --release --manifest-path benches/compare/Cargo.toml"
    };
    let mut md = report(&o, &all, started, command);
    if !problems.is_empty() {
        writeln!(md, "## Runs that did not store every event\n").unwrap();
        for p in &problems {
            writeln!(md, "- {p}").unwrap();
        }
    }
    if let Some(dir) = o.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&o.out, &md) {
        eprintln!("compare: {}: {e}", o.out.display());
        return ExitCode::FAILURE;
    }
    print!("{md}");
    eprintln!("compare: wrote {}", o.out.display());
    // The full run records stalls and failures as findings; the smoke run fails on them.
    if o.smoke && !problems.is_empty() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
