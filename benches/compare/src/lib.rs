//! What the contenders of the comparison share: their command line, the events they
//! send, and what they measure about themselves.
//!
//! Each contender is a process of its own. It connects, then measures a window that
//! starts just before its first event is handed over and ends when the last outcome
//! is in: wall time, its own CPU time (`clock_gettime`) and peak RSS (`/proc/self`),
//! batches, and,
//! when paced, each event's time from hand-over to outcome. It prints one
//! `RESULT key=value ...` line on stdout, which the runner (`src/bin/compare.rs`) parses.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The settings of one contender run; every contender takes the same flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The emulator's connection string (no `EntityPath`).
    pub connection_string: String,
    /// The hub to publish to.
    pub hub: String,
    /// Events to publish.
    pub events: u64,
    /// Body size in bytes (at least 16: an index and a timestamp lead every body).
    pub size: usize,
    /// The hub's partition count.
    pub partitions: u32,
    /// Whether events carry a partition key (1,000 distinct keys).
    pub keyed: bool,
    /// Pending events the producer may hold (the SDK: divided among the partitions).
    pub pending: usize,
    /// The longest an event waits in an unfilled batch.
    pub max_wait: Duration,
    /// Events per second to pace the hand-over at; 0 for as fast as the producer takes them.
    pub rate: u64,
    /// How long the window may last; a run still going then reports what it has.
    pub deadline: Duration,
}

impl Settings {
    /// Reads `--name value` pairs from the process arguments.
    pub fn from_args() -> Result<Self, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(name) = it.next() {
            let name = name
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --name, got {name}"))?;
            if name == "keyed" {
                map.insert("keyed".to_string(), "true".to_string());
                continue;
            }
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_string(), value.clone());
        }
        fn take<T: std::str::FromStr>(
            map: &HashMap<String, String>,
            name: &str,
            default: Option<T>,
        ) -> Result<T, String> {
            match map.get(name) {
                Some(v) => v.parse().map_err(|_| format!("--{name}: bad value {v}")),
                None => default.ok_or_else(|| format!("--{name} is required")),
            }
        }
        let settings = Settings {
            connection_string: take(&map, "connection-string", None)?,
            hub: take(&map, "hub", None)?,
            events: take(&map, "events", None)?,
            size: take(&map, "size", Some(100))?,
            partitions: take(&map, "partitions", None)?,
            keyed: map.contains_key("keyed"),
            pending: take(&map, "pending", Some(6000))?,
            max_wait: Duration::from_millis(take(&map, "max-wait-ms", Some(250))?),
            rate: take(&map, "rate", Some(0))?,
            deadline: Duration::from_secs(take(&map, "deadline-secs", Some(600))?),
        };
        if settings.size < 16 {
            return Err("--size must be at least 16".into());
        }
        if settings.partitions == 0 || settings.events == 0 || settings.pending == 0 {
            return Err("--partitions, --events and --pending must be positive".into());
        }
        Ok(settings)
    }

    /// The emulator's `host:port`, from the connection string's endpoint.
    pub fn host_port(&self) -> Result<String, String> {
        self.connection_string
            .split(';')
            .find_map(|part| part.strip_prefix("Endpoint=sb://"))
            .map(|endpoint| endpoint.trim_end_matches('/').to_string())
            .ok_or_else(|| "no Endpoint=sb://… in the connection string".to_string())
    }

    /// The value of `name` in the connection string.
    pub fn connection_string_part(&self, name: &str) -> Option<String> {
        self.connection_string.split(';').find_map(|part| {
            let (k, v) = part.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }
}

/// The partition key of event `i`: 1,000 distinct keys, in turn.
pub fn key(keys: &[String], i: u64) -> &str {
    &keys[(i % keys.len() as u64) as usize]
}

/// The 1,000 partition keys, made once so that no contender pays for formatting them.
pub fn keys() -> Vec<String> {
    (0..1000).map(|k| format!("device-{k}")).collect()
}

/// A body of `size` bytes: the event's index and the nanoseconds since `epoch` at
/// which it is handed over, then filler. Without an epoch (the throughput runs, which
/// measure no latency) the time is 0 and the clock is not read: at a million events a
/// second a clock read per event is a cost no contender should carry for nothing.
pub fn body(i: u64, size: usize, epoch: Option<Instant>) -> Vec<u8> {
    let mut body = vec![b'x'; size];
    body[..8].copy_from_slice(&i.to_le_bytes());
    let nanos = epoch.map_or(0, |e| e.elapsed().as_nanos() as u64);
    body[8..16].copy_from_slice(&nanos.to_le_bytes());
    body
}

/// The hand-over time written into a body by [`body`], as nanoseconds since the epoch.
pub fn handed_over_at(body: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(body.get(8..16)?.try_into().ok()?))
}

/// The CPU time this process has used (user and system, every thread), to the
/// nanosecond: `/proc/self/stat` counts in 10 ms ticks, which a smoke run's few
/// thousand events do not fill.
pub fn cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A length of time in the unit that suits it: `45 seconds`, `1 minute`, `12 minutes`.
pub fn duration_in_words(d: Duration) -> String {
    let secs = d.as_secs_f64();
    let (n, unit) = if secs < 90.0 {
        (secs.round(), "second")
    } else {
        ((secs / 60.0).round(), "minute")
    };
    format!("{n:.0} {unit}{}", if n == 1.0 { "" } else { "s" })
}

/// Microseconds of CPU per event, with the precision that keeps small values from
/// reading as zero: `12.3`, `1.25`, `0.042`.
pub fn micros(us: f64) -> String {
    if us >= 10.0 {
        format!("{us:.1}")
    } else if us >= 0.1 {
        format!("{us:.2}")
    } else {
        format!("{us:.3}")
    }
}

/// The peak resident set size of this process in KiB (`VmHWM` in `/proc/self/status`).
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// The resident set size of this process now, in KiB (`VmRSS`).
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// The anonymous part of the resident set now, in KiB (`RssAnon`): the heap, stacks
/// and other private memory, without the pages of the executable and libraries that
/// `VmRSS` also counts (code runs for the first time as new paths are taken).
pub fn anon_rss_kib() -> u64 {
    status_kib("RssAnon:")
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The measured window of a run: started just before the first event is handed over.
#[derive(Debug)]
pub struct Window {
    started: Instant,
    cpu: Duration,
}

impl Window {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self {
            cpu: cpu_time(),
            started: Instant::now(),
        }
    }

    /// Ends the window: the elapsed wall time and this process's CPU time within it.
    pub fn finish(&self) -> (Duration, Duration) {
        (self.started.elapsed(), cpu_time().saturating_sub(self.cpu))
    }
}

/// Hands events over at `rate` per second (when `rate` > 0): waits until event `i` is due.
pub async fn pace(start: tokio::time::Instant, rate: u64, i: u64) {
    if let Some(nanos) = (i * 1_000_000_000).checked_div(rate) {
        tokio::time::sleep_until(start + Duration::from_nanos(nanos)).await;
    }
}

/// What a contender reports about its run.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Events handed over.
    pub events: u64,
    /// Events reported stored.
    pub succeeded: u64,
    /// Events reported failed (or never reported, when the run timed out).
    pub failed: u64,
    /// Batches reported (succeeded or failed).
    pub batches: u64,
    /// Wall time of the window.
    pub elapsed: Duration,
    /// This process's CPU time within the window.
    pub cpu: Duration,
    /// Peak resident set size, KiB.
    pub peak_rss_kib: u64,
    /// Enqueue-to-outcome latencies in nanoseconds (paced runs only).
    pub latencies_ns: Vec<u64>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// Whether the deadline ended the run before every outcome was in.
    pub timed_out: bool,
}

/// A report that handlers and tasks add to while the run goes on.
pub type SharedReport = Arc<Mutex<Report>>;

/// Ends a run: the window's figures and peak RSS added to what was reported so far,
/// printed as the `RESULT` line.
pub fn finish(report: &SharedReport, window: &Window, settings: &Settings, timed_out: bool) {
    let (elapsed, cpu) = window.finish();
    let mut report = report.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report.elapsed = elapsed;
    report.cpu = cpu;
    report.events = settings.events;
    report.timed_out = timed_out;
    report.peak_rss_kib = peak_rss_kib();
    println!("{report}");
}

impl Report {
    /// The `q`-quantile of the latencies, in milliseconds.
    pub fn latency_ms(&mut self, q: f64) -> Option<f64> {
        if self.latencies_ns.is_empty() {
            return None;
        }
        self.latencies_ns.sort_unstable();
        let i = ((self.latencies_ns.len() as f64 - 1.0) * q).round() as usize;
        Some(self.latencies_ns[i] as f64 / 1e6)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut me = self.clone();
        write!(
            f,
            "RESULT events={} succeeded={} failed={} batches={} secs={:.4} cpu_secs={:.6} rss_kib={}",
            self.events,
            self.succeeded,
            self.failed,
            self.batches,
            self.elapsed.as_secs_f64(),
            self.cpu.as_secs_f64(),
            self.peak_rss_kib,
        )?;
        if let (Some(p50), Some(p99)) = (me.latency_ms(0.5), me.latency_ms(0.99)) {
            write!(f, " p50_ms={p50:.2} p99_ms={p99:.2}")?;
        }
        if self.timed_out {
            write!(f, " timed_out=1")?;
        }
        if let Some(e) = &self.first_error {
            write!(f, " error={:?}", e.replace(' ', "_"))?;
        }
        Ok(())
    }
}

/// Prints the usage error and exits with status 2.
pub fn usage(error: String) -> ! {
    eprintln!("{error}");
    eprintln!(
        "usage: --connection-string CS --hub NAME --events N --partitions P \
         [--size B] [--keyed] [--pending N] [--max-wait-ms MS] [--rate EVENTS_PER_S] \
         [--deadline-secs S]"
    );
    std::process::exit(2)
}

/// Bytes a data section of `len` bytes takes: descriptor (3), then vbin8 below 256
/// bytes or vbin32 (AMQP 1.0 §1.6.19, §3.2.6).
pub fn section_size(len: usize) -> usize {
    3 + if len < 256 { 2 } else { 5 } + len
}

/// How many events of `size` body bytes (and nothing else) fit in a batched message of
/// `max` bytes: each event is a whole message (one data section), which the batch
/// carries in a data section of its own.
pub fn events_per_full_batch(size: usize, max: usize) -> usize {
    max / section_size(section_size(size))
}

/// `cargo`, run from `root`, without the variables `cargo run` set for this process.
///
/// Build scripts such as ring's declare `rerun-if-env-changed` on `CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR` and the like. Inherited from `cargo run`, those values made an
/// inner build rebuild ring and everything above it, and the next plain `cargo run`
/// rebuild it all again (about a minute of CI each time).
pub fn cargo(root: &std::path::Path) -> std::process::Command {
    let program = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(program);
    cmd.current_dir(root);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "OUT_DIR",
            ]
            .contains(&name.as_ref())
        {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_full_batch_of_100_byte_events() {
        // 100 B body: inner message 3 + 2 + 100 = 105 bytes, its section in the batch
        // 3 + 2 + 105 = 110 bytes; 1 MiB / 110 = 9,532.
        assert_eq!(super::events_per_full_batch(100, 1 << 20), 9532);
        assert_eq!(super::section_size(300), 308);
    }

    #[test]
    fn durations_and_cpu_figures_read_in_sensible_units() {
        use std::time::Duration;
        assert_eq!(super::duration_in_words(Duration::from_secs(1)), "1 second");
        assert_eq!(
            super::duration_in_words(Duration::from_secs(45)),
            "45 seconds"
        );
        assert_eq!(
            super::duration_in_words(Duration::from_secs(95)),
            "2 minutes"
        );
        assert_eq!(
            super::duration_in_words(Duration::from_secs(60 * 60)),
            "60 minutes"
        );
        assert_eq!(super::micros(12.34), "12.3");
        assert_eq!(super::micros(1.254), "1.25");
        assert_eq!(super::micros(0.0421), "0.042");
    }

    #[test]
    fn cpu_time_counts_less_than_a_clock_tick() {
        // Spinning until the CPU clock moves at all: with 10 ms ticks the first move
        // would be 10 ms; to the nanosecond, it is far less.
        let start = super::cpu_time();
        let mut spun = 0u64;
        let moved = loop {
            spun = std::hint::black_box(spun.wrapping_add(1));
            let now = super::cpu_time();
            if now > start {
                break now - start;
            }
        };
        assert!(moved < std::time::Duration::from_millis(5), "{moved:?}");
    }
}
