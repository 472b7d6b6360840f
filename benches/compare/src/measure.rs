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

/// Voluntary context switches so far of this process's threads, by thread id
/// (`voluntary_ctxt_switches` in `/proc/self/task/*/status`): each is a thread that
/// went to sleep waiting for something, so each is one wake-up.
pub fn voluntary_switches() -> std::collections::HashMap<u32, u64> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Default::default();
    };
    tasks
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let tid = entry.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let switches = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                .trim()
                .parse()
                .ok()?;
            Some((tid, switches))
        })
        .collect()
}

/// Counts the system calls of this process's threads, from when it is made: a
/// `raw_syscalls:sys_enter` tracepoint counter (`perf_event_open(2)`) on each thread
/// that exists then. Threads started later are not counted; a contender's runtime
/// starts its threads before its window opens. `None` where the kernel does not
/// allow it (`perf_event_paranoid`, no tracefs).
#[derive(Debug)]
pub struct SyscallCounter {
    fds: Vec<i32>,
}

/// `struct perf_event_attr` up to its first published size (`PERF_ATTR_SIZE_VER0`,
/// 64 bytes), which every kernel since 2.6.31 takes.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;

impl SyscallCounter {
    pub fn start() -> Option<Self> {
        let id: u64 = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .iter()
            .find_map(|root| {
                std::fs::read_to_string(format!("{root}/events/raw_syscalls/sys_enter/id")).ok()
            })?
            .trim()
            .parse()
            .ok()?;
        let mut fds = Vec::new();
        for entry in std::fs::read_dir("/proc/self/task").ok()? {
            let Some(tid) = entry
                .ok()
                .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
            else {
                continue;
            };
            let attr = PerfEventAttr {
                kind: PERF_TYPE_TRACEPOINT,
                size: std::mem::size_of::<PerfEventAttr>() as u32,
                config: id,
                ..PerfEventAttr::default()
            };
            // SAFETY: `attr` is a valid perf_event_attr of the size it declares; the
            // other arguments are plain integers (this thread, any CPU, no group, no
            // flags).
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    &attr as *const PerfEventAttr,
                    tid,
                    -1i32,
                    -1i32,
                    0u64,
                )
            };
            if fd < 0 {
                for fd in fds {
                    // SAFETY: closing descriptors this function opened.
                    unsafe { libc::close(fd) };
                }
                return None;
            }
            fds.push(fd as i32);
        }
        Some(Self { fds })
    }

    /// System calls counted so far.
    pub fn read(&self) -> u64 {
        self.fds
            .iter()
            .map(|&fd| {
                let mut count = 0u64;
                // SAFETY: reading 8 bytes into a u64 from a counter descriptor.
                let n = unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
                if n == 8 {
                    count
                } else {
                    0
                }
            })
            .sum()
    }
}

impl Drop for SyscallCounter {
    fn drop(&mut self) {
        for &fd in &self.fds {
            // SAFETY: closing descriptors this counter opened.
            unsafe { libc::close(fd) };
        }
    }
}

/// The measured window of a run: started just before the first event is handed over.
#[derive(Debug)]
pub struct Window {
    started: Instant,
    cpu: Duration,
    switches: std::collections::HashMap<u32, u64>,
    syscalls: Option<SyscallCounter>,
}

/// Wake-ups in a window: of every thread, and of the process's main thread alone
/// (where a contender's `#[tokio::main]` loop hands the events over, and a paced run
/// sleeps between them).
#[derive(Debug, Clone, Copy, Default)]
pub struct WakeUps {
    pub all: u64,
    pub main: u64,
}

impl Window {
    /// Starts measuring now.
    pub fn start() -> Self {
        let syscalls = SyscallCounter::start();
        Self {
            switches: voluntary_switches(),
            cpu: cpu_time(),
            started: Instant::now(),
            syscalls,
        }
    }

    /// The wake-ups (voluntary context switches) and system calls so far in the
    /// window (the latter where the kernel lets them be counted). Threads that ended
    /// within the window are not counted.
    pub fn counts(&self) -> (WakeUps, Option<u64>) {
        let main = std::process::id();
        let mut wake_ups = WakeUps::default();
        for (tid, now) in voluntary_switches() {
            let n = now.saturating_sub(self.switches.get(&tid).copied().unwrap_or(0));
            wake_ups.all += n;
            if tid == main {
                wake_ups.main += n;
            }
        }
        (wake_ups, self.syscalls.as_ref().map(SyscallCounter::read))
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
