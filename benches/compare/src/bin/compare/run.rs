//! One contender's [`Run`]: its `RESULT` line parsed, and the figures derived from it.

/// One contender's `RESULT` line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Run {
    pub(crate) events: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) batches: u64,
    pub(crate) secs: f64,
    pub(crate) cpu_secs: f64,
    pub(crate) rss_kib: u64,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
    pub(crate) timed_out: bool,
    pub(crate) error: Option<String>,
    pub(crate) disk_bytes: Option<u64>,
    pub(crate) wakeups: Option<u64>,
    pub(crate) main_wakeups: Option<u64>,
    pub(crate) syscalls: Option<u64>,
    /// Whether events were handed over paced (the main thread then sleeps between
    /// them: the event source's wake-ups, not the producer's).
    pub(crate) paced: bool,
}

impl Run {
    pub(crate) fn parse(line: &str) -> Option<Run> {
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
                "disk_bytes" => run.disk_bytes = v.parse().ok(),
                "wakeups" => run.wakeups = v.parse().ok(),
                "main_wakeups" => run.main_wakeups = v.parse().ok(),
                "syscalls" => run.syscalls = v.parse().ok(),
                "error" => run.error = Some(v.trim_matches('"').replace('_', " ")),
                _ => {}
            }
        }
        Some(run)
    }

    /// Events reported stored per second of the window.
    pub(crate) fn rate(&self) -> f64 {
        self.succeeded as f64 / self.secs.max(1e-9)
    }

    /// Client CPU per reported event, µs.
    pub(crate) fn cpu_us_per_event(&self) -> f64 {
        self.cpu_secs * 1e6 / (self.succeeded + self.failed).max(1) as f64
    }

    /// Bytes written to storage per reported event, for the runs that say.
    pub(crate) fn disk_bytes_per_event(&self) -> Option<f64> {
        Some(self.disk_bytes? as f64 / (self.succeeded + self.failed).max(1) as f64)
    }

    /// Client CPU per reported batch, µs.
    pub(crate) fn cpu_us_per_batch(&self) -> f64 {
        self.cpu_secs * 1e6 / self.batches.max(1) as f64
    }

    /// The client's thread wake-ups; in a paced run, those of the threads other than
    /// the one handing the events over.
    fn client_wakeups(&self) -> Option<u64> {
        let source = if self.paced { self.main_wakeups? } else { 0 };
        Some(self.wakeups?.saturating_sub(source))
    }

    /// Thread wake-ups per reported batch, the source's left out.
    pub(crate) fn wakeups_per_batch(&self) -> Option<f64> {
        Some(self.client_wakeups()? as f64 / self.batches.max(1) as f64)
    }

    /// Thread wake-ups per event handed over, the source's left out.
    pub(crate) fn wakeups_per_event(&self) -> Option<f64> {
        let events = (self.succeeded + self.failed).max(1) as f64;
        Some(self.client_wakeups()? as f64 / events)
    }

    /// System calls per reported batch, where they were counted.
    pub(crate) fn syscalls_per_batch(&self) -> Option<f64> {
        Some(self.syscalls? as f64 / self.batches.max(1) as f64)
    }

    pub(crate) fn events_per_batch(&self) -> f64 {
        (self.succeeded + self.failed) as f64 / self.batches.max(1) as f64
    }
}
