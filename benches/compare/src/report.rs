//! A contender's [`Report`] of its run, and the `RESULT key=value ...` line it prints
//! for the runner to parse.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::measure::{peak_rss_kib, Window};
use crate::settings::Settings;

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
    /// Bytes the process wrote to storage in the window (`write_bytes` of
    /// `/proc/self/io`), for the contenders that write any.
    pub disk_bytes: Option<u64>,
    /// Voluntary context switches (thread wake-ups) in the window: of every thread,
    /// and of the main thread, which hands the events over.
    pub wakeups: Option<u64>,
    pub main_wakeups: Option<u64>,
    /// System calls in the window, where the kernel lets them be counted.
    pub syscalls: Option<u64>,
}

/// A report that handlers and tasks add to while the run goes on.
pub type SharedReport = Arc<Mutex<Report>>;

/// Ends a run: the window's figures and peak RSS added to what was reported so far,
/// printed as the `RESULT` line.
pub fn finish(report: &SharedReport, window: &Window, settings: &Settings, timed_out: bool) {
    let (wakeups, syscalls) = window.counts();
    {
        let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
        r.wakeups = Some(wakeups.all);
        r.main_wakeups = Some(wakeups.main);
        r.syscalls = syscalls;
    }
    finish_at(report, window.finish(), settings, timed_out);
}

/// As [`finish`], with the window closed at `(elapsed, cpu)`, a mark taken earlier.
pub fn finish_at(
    report: &SharedReport,
    (elapsed, cpu): (std::time::Duration, std::time::Duration),
    settings: &Settings,
    timed_out: bool,
) {
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
        if let Some(bytes) = self.disk_bytes {
            write!(f, " disk_bytes={bytes}")?;
        }
        if let Some(n) = self.wakeups {
            write!(f, " wakeups={n}")?;
        }
        if let Some(n) = self.main_wakeups {
            write!(f, " main_wakeups={n}")?;
        }
        if let Some(n) = self.syscalls {
            write!(f, " syscalls={n}")?;
        }
        if let Some(e) = &self.first_error {
            write!(f, " error={:?}", e.replace(' ', "_"))?;
        }
        Ok(())
    }
}
