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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contender {
    Producer,
    Sdk,
    Ceiling,
}

impl Contender {
    fn binary(self) -> &'static str {
        match self {
            Contender::Producer => "contender_producer",
            Contender::Sdk => "contender_sdk",
            Contender::Ceiling => "contender_ceiling",
        }
    }
    fn hub(self) -> &'static str {
        match self {
            Contender::Producer => "producer",
            Contender::Sdk => "sdk",
            Contender::Ceiling => "ceiling",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Contender::Producer => "this producer (`Producer::enqueue`)",
            Contender::Sdk => "Rust SDK `BufferedProducerClient` 0.16",
            Contender::Ceiling => "ceiling: fe2o3 alone, pre-built full batches",
        }
    }
}

#[derive(Debug, Clone)]
struct Workload {
    size: usize,
    partitions: u32,
    keyed: bool,
    pending: usize,
    events: u64,
    /// Events per second, for the latency workloads; 0 for throughput.
    rate: u64,
    contenders: Vec<Contender>,
}

impl Workload {
    fn label(&self) -> String {
        let size = if self.size >= 1024 {
            format!("{} KiB", self.size / 1024)
        } else {
            format!("{} B", self.size)
        };
        let pending = if self.pending >= 1000 {
            format!("{}k", self.pending / 1000)
        } else {
            self.pending.to_string()
        };
        let mut label = format!(
            "{size}, {} partitions, {}, {pending} pending",
            self.partitions,
            if self.keyed { "keyed" } else { "keyless" }
        );
        if self.rate > 0 {
            write!(label, ", paced at {} events/s", self.rate).unwrap();
        }
        label
    }
}

/// One contender's `RESULT` line.
#[derive(Debug, Clone, Default)]
struct Run {
    events: u64,
    succeeded: u64,
    failed: u64,
    batches: u64,
    secs: f64,
    cpu_secs: f64,
    rss_kib: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    timed_out: bool,
    error: Option<String>,
}

impl Run {
    fn parse(line: &str) -> Option<Run> {
        let rest = line.strip_prefix("RESULT ")?;
        let mut run = Run::default();
        for field in rest.split(' ') {
            let (k, v) = field.split_once('=')?;
            match k {
                "events" => run.events = v.parse().ok()?,
                "succeeded" => run.succeeded = v.parse().ok()?,
                "failed" => run.failed = v.parse().ok()?,
                "batches" => run.batches = v.parse().ok()?,
                "secs" => run.secs = v.parse().ok()?,
                "cpu_secs" => run.cpu_secs = v.parse().ok()?,
                "rss_kib" => run.rss_kib = v.parse().ok()?,
                "p50_ms" => run.p50_ms = v.parse().ok(),
                "p99_ms" => run.p99_ms = v.parse().ok(),
                "timed_out" => run.timed_out = v == "1",
                "error" => run.error = Some(v.trim_matches('"').replace('_', " ")),
                _ => {}
            }
        }
        Some(run)
    }

    /// Events reported stored per second of the window.
    fn rate(&self) -> f64 {
        self.succeeded as f64 / self.secs.max(1e-9)
    }

    /// Client CPU per reported event, µs.
    fn cpu_us_per_event(&self) -> f64 {
        self.cpu_secs * 1e6 / (self.succeeded + self.failed).max(1) as f64
    }

    fn events_per_batch(&self) -> f64 {
        (self.succeeded + self.failed) as f64 / self.batches.max(1) as f64
    }
}

struct Options {
    smoke: bool,
    rounds: usize,
    out: PathBuf,
    only: Option<String>,
    hubcat: Option<PathBuf>,
}

fn parse_options(root: &Path) -> Result<Options, String> {
    let mut o = Options {
        smoke: false,
        rounds: 3,
        out: root.join("benches/RESULTS.md"),
        only: None,
        hubcat: None,
    };
    let mut out_set = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--smoke" => o.smoke = true,
            "--rounds" => {
                o.rounds = value()?
                    .parse()
                    .ok()
                    .filter(|r| *r > 0)
                    .ok_or("--rounds must be a positive number")?
            }
            "--out" => {
                o.out = PathBuf::from(value()?);
                out_set = true;
            }
            "--only" => o.only = Some(value()?),
            "--hubcat" => o.hubcat = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if o.smoke {
        if !out_set {
            o.out = root.join("target/compare-smoke.md");
        }
        o.rounds = o.rounds.min(1);
    }
    Ok(o)
}

fn workloads(smoke: bool) -> Vec<Workload> {
    use Contender::*;
    let w = |size, partitions, keyed, pending, events| Workload {
        size,
        partitions,
        keyed,
        pending,
        events,
        rate: 0,
        contenders: if keyed {
            // The ceiling routes nothing, so keys change nothing for it: the keyless
            // workload's ceiling stands for both.
            vec![Producer, Sdk]
        } else {
            vec![Producer, Sdk, Ceiling]
        },
    };
    let latency = |events| Workload {
        size: 100,
        partitions: 4,
        keyed: false,
        pending: 6000,
        events,
        rate: 1000,
        contenders: vec![Producer, Sdk],
    };
    if smoke {
        return vec![
            w(100, 4, false, 6000, 5000),
            w(100, 4, true, 6000, 5000),
            latency(2000),
        ];
    }
    let mut all = Vec::new();
    for partitions in [4, 32, 1024] {
        for keyed in [false, true] {
            for pending in [6000, 100_000] {
                let events = if partitions == 1024 {
                    300_000
                } else {
                    1_000_000
                };
                all.push(w(100, partitions, keyed, pending, events));
            }
        }
    }
    for partitions in [4, 32, 1024] {
        for keyed in [false, true] {
            for pending in [6000, 100_000] {
                let events = if partitions == 1024 { 100_000 } else { 250_000 };
                all.push(w(1024, partitions, keyed, pending, events));
            }
        }
    }
    all.push(latency(20_000));
    all
}

fn cargo_build(root: &Path, args: &[&str]) -> Result<(), String> {
    let release = !cfg!(debug_assertions);
    let mut cmd = compare::cargo(root);
    cmd.arg("build").args(args);
    if release {
        cmd.arg("--release");
    }
    eprintln!("compare: {cmd:?}");
    let status = cmd.status().map_err(|e| format!("cargo: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("{cmd:?} failed: {status}"))
}

struct Emulator {
    child: Child,
    connection_string: String,
}

impl Emulator {
    fn start(hubcat: &Path, w: &Workload, log: &Path) -> Result<Emulator, String> {
        let mut cmd = Command::new(hubcat);
        cmd.args(["emulator", "--bind", "127.0.0.1:0"]);
        for c in &w.contenders {
            cmd.args(["--hub", &format!("{}:{}", c.hub(), w.partitions)]);
        }
        // Bounded storage: three rounds of a million events stay well within memory.
        cmd.args(["--retention-bytes", &(16u64 << 20).to_string()]);
        let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", hubcat.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("reading the emulator's stdout: {e}"))?;
        if line.trim().is_empty() {
            let _ = child.kill();
            return Err("the emulator printed no connection string".into());
        }
        Ok(Emulator {
            child,
            connection_string: line.trim().to_string(),
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_contender(
    dir: &Path,
    c: Contender,
    w: &Workload,
    connection_string: &str,
    deadline: Duration,
    log: &Path,
) -> Result<Run, String> {
    let mut cmd = Command::new(dir.join(c.binary()));
    cmd.args(["--connection-string", connection_string])
        .args(["--hub", c.hub()])
        .args(["--events", &w.events.to_string()])
        .args(["--size", &w.size.to_string()])
        .args(["--partitions", &w.partitions.to_string()])
        .args(["--pending", &w.pending.to_string()])
        .args(["--max-wait-ms", "250"])
        .args(["--rate", &w.rate.to_string()])
        .args(["--deadline-secs", &deadline.as_secs().to_string()]);
    if w.keyed {
        cmd.arg("--keyed");
    }
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("{}: {e}", c.binary()))?;
    let mut stdout = String::new();
    // The contender ends itself at its deadline; the read ends when it exits.
    let _ = child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout);
    let status = child.wait().map_err(|e| e.to_string())?;
    stdout.lines().find_map(Run::parse).ok_or_else(|| {
        format!(
            "{} exited with {status} and no RESULT line (see {})",
            c.binary(),
            log.display()
        )
    })
}

fn median(mut v: Vec<f64>) -> f64 {
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

fn rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn machine() -> String {
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

type Results = BTreeMap<Contender, Vec<Run>>;

fn report(o: &Options, all: &[(Workload, Results)], started: Instant, command: &str) -> String {
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
        "- Settings for all: `max_wait` 250 ms; pending events as the workload says \
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
         workload's size that fit in the emulator's `max-message-size` of 1 MiB.\n"
    )
    .unwrap();
    for (w, results) in all.iter().filter(|(w, _)| w.rate == 0) {
        writeln!(md, "## {}: {} events per contender\n", w.label(), w.events).unwrap();
        writeln!(
            md,
            "| contender | events/s (range) | vs this producer | client CPU-µs/event | peak RSS | events/batch | batch fill |"
        )
        .unwrap();
        writeln!(md, "|---|---|---|---|---|---|---|").unwrap();
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
            writeln!(
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
        }
        writeln!(md).unwrap();
    }
    for (w, results) in all.iter().filter(|(w, _)| w.rate > 0) {
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
    md
}

/// The emulator's `max-message-size` (the service's, 1 MiB).
const MAX_MESSAGE_SIZE: usize = 1 << 20;

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
                            "compare: {label} | round {round} | {:<8} {:>9.0} events/s  {} CPU-µs/event  {:>5.0} MB  {:>6.0} events/batch{}{}{}",
                            c.hub(),
                            run.rate(),
                            compare::micros(run.cpu_us_per_event()),
                            run.rss_kib as f64 / 1024.0,
                            run.events_per_batch(),
                            run.p99_ms.map_or(String::new(), |p| format!("  p50 {:.1} ms p99 {p:.1} ms", run.p50_ms.unwrap_or(f64::NAN))),
                            if run.timed_out { "  STALLED" } else { "" },
                            if run.failed > 0 { format!("  {} failed", run.failed) } else { String::new() },
                        );
                        if run.succeeded != run.events {
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
