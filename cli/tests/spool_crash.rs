//! The crash loop: `hubcat send --spool DIR --idempotent` is killed with SIGKILL at
//! random points (while reading and appending, while batches are on the wire, around
//! the spool's syncs) and run again on the same spool; the last run has empty input.
//! Read back from the emulator, every event a run had reported durable
//! (`--print-durable`) is stored, none is stored twice, and each partition holds its
//! events in the order they were read.
//!
//! `SPOOL_CRASH_KILLS` sets the number of kills (10 by default, as `cargo test` and
//! `.ci/run` run it; `SPOOL_CRASH_KILLS=50` is the long run), `SPOOL_CRASH_SEED` the
//! kill times, `SPOOL_CRASH_RUN_MS` the longest a run lives before its kill (500 ms by
//! default), `SPOOL_CRASH_RATE` events per second to pace the input at (default: as
//! fast as it is read), and `SPOOL_CRASH_EVENTS` a number of durable events to go on
//! killing until (the soak: `SPOOL_CRASH_EVENTS=10000000 SPOOL_CRASH_RUN_MS=6000
//! SPOOL_CRASH_RATE=150000`). The spool's size on disk is sampled while each run
//! lives; its peak is printed and bounded.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::hubcat;
use eventhubs_emulator::{Emulator, Fault, HubConfig, Retention};

/// A small deterministic generator (xorshift64*), so a failing seed can be rerun.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One run of `hubcat send`; killed after `kill_after` unless it is `None` (then its
/// input is empty and it is waited for).
struct Run {
    /// The last `durable N` it printed.
    durable: u64,
    /// The largest the spool directory was while it ran.
    peak_bytes: u64,
    /// Events it found in the spool at start.
    found: u64,
    stderr: String,
    success: bool,
}

/// The spool's bound in the loop: small enough that unpaced input fills it (then
/// reading waits), so the loop covers a full spool too.
const MAX_SPOOL_BYTES: u64 = 64 << 20;

fn run(
    cs: &str,
    dir: &std::path::Path,
    index: u64,
    kill_after: Option<Duration>,
    idempotent: bool,
    rate: Option<u64>,
) -> Run {
    let mut child = hubcat()
        .args(["send", "--connection-string", cs, "--print-durable"])
        .args(idempotent.then_some("--idempotent"))
        .args([
            "--key-delimiter",
            "\\t",
            "--max-wait-ms",
            "5",
            "--try-timeout",
            "2s",
        ])
        .args(["--max-spool-bytes", &MAX_SPOOL_BYTES.to_string()])
        .args(rate.map(|r| format!("--rate={r}")))
        .arg("--spool")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hubcat send");
    let mut stdin = child.stdin.take().unwrap();
    let writer = kill_after.map(|_| {
        std::thread::spawn(move || {
            // As much input as the run can read before it is killed (the write fails
            // then).
            for i in 0..50_000_000u64 {
                let line = format!("key-{}\tr{index:03}-{i:08}\n", i % 61);
                if stdin.write_all(line.as_bytes()).is_err() {
                    return;
                }
            }
        })
    });
    let durable = Arc::new(Mutex::new(0u64));
    let stdout = child.stdout.take().unwrap();
    let marks = {
        let durable = durable.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(n) = line.strip_prefix("durable ") {
                    *durable.lock().unwrap() = n.parse().unwrap();
                }
            }
        })
    };
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (dir, sampling) = (dir.to_owned(), sampling.clone());
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(dir_bytes(&dir));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let success = match kill_after {
        Some(after) => {
            std::thread::sleep(after);
            child.kill().unwrap();
            child.wait().unwrap();
            false
        }
        None => child.wait().unwrap().success(),
    };
    if let Some(writer) = writer {
        writer.join().unwrap();
    }
    marks.join().unwrap();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_bytes = sampler.join().unwrap();
    let stderr = errors.join().unwrap();
    let found = stderr
        .lines()
        .find_map(|l| {
            l.strip_suffix(" events an earlier run left in the spool are published first")
        })
        .and_then(|l| l.strip_prefix("hubcat send: "))
        .map_or(0, |n| n.replace(',', "").parse().unwrap());
    let durable = *durable.lock().unwrap();
    Run {
        durable,
        peak_bytes,
        found,
        stderr,
        success,
    }
}

/// What the files in `dir` hold, in bytes.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// What a crash loop found.
struct Loop {
    duplicates: usize,
    lost: usize,
    out_of_order: usize,
}

#[test]
fn killed_runs_lose_nothing_durable_and_store_nothing_twice() {
    let found = crash_loop(true);
    assert_eq!(found.duplicates, 0, "events stored twice");
    assert_eq!(found.lost, 0, "events reported durable and not stored");
    assert_eq!(found.out_of_order, 0, "events out of order on a partition");
}

/// Without idempotent retries delivery across a crash is at least once: nothing
/// durable is lost, and a batch stored just before a kill is stored again.
#[test]
fn without_idempotence_killed_runs_lose_nothing_durable() {
    let found = crash_loop(false);
    assert_eq!(found.lost, 0, "events reported durable and not stored");
}

fn crash_loop(idempotent: bool) -> Loop {
    let kills = env("SPOOL_CRASH_KILLS", 10);
    let until = env("SPOOL_CRASH_EVENTS", 0);
    let run_ms = env("SPOOL_CRASH_RUN_MS", 500).max(50);
    let rate = Some(env("SPOOL_CRASH_RATE", 0)).filter(|r| *r > 0);
    let mut rng = Rng(env("SPOOL_CRASH_SEED", 0x5eed_cafe).max(1));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Some batches are stored but their verdict is late: a kill then leaves stored
    // batches in the spool, which the next run must not store again.
    let emulator = runtime
        .block_on(
            Emulator::builder()
                // Everything is kept, so every event can be looked for (the default
                // keeps 256 MiB per partition, less than a soak publishes).
                .hub_config(HubConfig::new("eh1", 4).retention(Retention::Events(usize::MAX)))
                .fault("delay,ms=40,every=3".parse::<Fault>().unwrap())
                .start(),
        )
        .unwrap();
    let cs = emulator.connection_string_for("eh1");
    let dir = std::env::temp_dir().join(format!(
        "hubcat-spool-crash-{}-{idempotent}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut durable = Vec::new();
    let mut found = 0;
    let mut peaks = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut index = 0;
    loop {
        let more = index < kills || durable.iter().sum::<u64>() < until;
        let kill_after = more.then(|| Duration::from_millis(30 + rng.below(run_ms)));
        let run = run(&cs, &dir, index, kill_after, idempotent, rate);
        found += run.found;
        failures.extend(
            run.stderr
                .lines()
                .filter(|l| l.contains("not published"))
                .map(|l| format!("run {index}: {l}")),
        );
        peaks.push(run.peak_bytes);
        durable.push(run.durable);
        index += 1;
        if kill_after.is_none() {
            assert!(run.success, "the last run failed:\n{}", run.stderr);
            break;
        }
    }
    let kills = index - 1;
    for failure in failures.iter().take(20) {
        println!("{failure}");
    }
    let peak = peaks.iter().max().copied().unwrap_or(0);
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "spool on disk, peak per run (MiB): first {:.1}, last {:.1}, highest {:.1}",
        mib(peaks[0]),
        mib(*peaks.last().unwrap()),
        mib(peak)
    );
    // Bounded: the spool's bound, and the record that crossed it, whatever the number
    // of events and kills (unpaced input is read faster than it is published, so
    // runs leave backlogs; a soak paced below the publishing rate stays flat).
    assert!(
        peak <= MAX_SPOOL_BYTES + (2 << 20),
        "the spool grew to {peak} bytes: {peaks:?}"
    );
    // Read back: every event once, in order per partition.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut stored_per_run: BTreeMap<u64, u64> = BTreeMap::new();
    let mut out_of_order = 0;
    for partition in ["0", "1", "2", "3"] {
        let mut last: Option<(u64, u64)> = None;
        for event in emulator.events("eh1", partition).unwrap() {
            let body = String::from_utf8(event.body()).unwrap();
            let (run, i) = body[1..].split_once('-').unwrap();
            let at = (run.parse::<u64>().unwrap(), i.parse::<u64>().unwrap());
            if last.is_some_and(|l| l >= at) {
                out_of_order += 1;
            }
            last = Some(at);
            *stored_per_run.entry(at.0).or_default() += 1;
            *seen.entry(body).or_default() += 1;
        }
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    let mut lost = 0;
    for (run, &n) in durable.iter().enumerate() {
        for i in 0..n {
            if !seen.contains_key(&format!("r{run:03}-{i:08}")) {
                lost += 1;
            }
        }
    }
    let reported: u64 = durable.iter().sum();
    let mode = if idempotent {
        "idempotent"
    } else {
        "at least once"
    };
    println!("| mode | kills | events reported durable | events stored | found in the spool at restarts | duplicates | lost | out of order |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {mode} | {kills} | {reported} | {} | {found} | {duplicates} | {lost} | {out_of_order} |",
        seen.len()
    );
    assert!(reported > 0, "no run got as far as a durable event");
    assert!(found > 0, "no kill left anything in the spool");
    // The last run left the spool empty.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    drop(emulator);
    Loop {
        duplicates,
        lost,
        out_of_order,
    }
}
