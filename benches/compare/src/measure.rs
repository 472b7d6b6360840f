//! What a contender measures about itself: CPU time to the nanosecond, resident
//! memory from `/proc/self/status`, and the [`Window`] that brackets a run.

use std::time::{Duration, Instant};

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

    /// The elapsed wall time and this process's CPU time so far.
    pub fn mark(&self) -> (Duration, Duration) {
        (self.started.elapsed(), cpu_time().saturating_sub(self.cpu))
    }

    /// Ends the window: the elapsed wall time and this process's CPU time within it.
    pub fn finish(&self) -> (Duration, Duration) {
        (self.started.elapsed(), cpu_time().saturating_sub(self.cpu))
    }
}

/// Bytes this process has caused to be written to storage (`write_bytes` in
/// `/proc/self/io`): counted as pages are dirtied, so writes the kernel has not yet
/// written back count too.
pub fn disk_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
