//! Progress on stderr: a live bar when stderr is a terminal that takes escape codes, a
//! plain line every few seconds otherwise (logs, CI), nothing when quiet.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// How often a plain progress line is written.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Whether stderr may carry escape codes: it is a terminal and `NO_COLOR` is unset
/// (or empty), as <https://no-color.org> asks.
pub(crate) fn escapes() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A rate as whole things a second, grouped in thousands: `964,250/s`.
fn per_second(rate: f64) -> String {
    format!("{}/s", readable(rate.round() as u64))
}

/// A count of done things, shown as it grows.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    count: Arc<AtomicU64>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// `what` names the things counted ("events published"); `total`, if known, gives
    /// a bar rather than a spinner; `extra` adds to each plain line (pending events,
    /// say).
    pub(crate) fn new(
        command: &'static str,
        what: &'static str,
        total: Option<u64>,
        quiet: bool,
        extra: impl Fn() -> String + Send + 'static,
    ) -> Self {
        let count = Arc::new(AtomicU64::new(0));
        if quiet {
            return Self {
                bar: None,
                count,
                ticker: None,
            };
        }
        if escapes() {
            let (bar, template) = match total {
                Some(n) => (
                    ProgressBar::new(n),
                    "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {msg} ({rate}, eta {eta})",
                ),
                None => (
                    ProgressBar::new_spinner(),
                    "{spinner} [{elapsed_precise}] {human_pos} {msg} ({rate})",
                ),
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    // Whole events a second, grouped like the other counts (indicatif's
                    // own `per_sec` prints four decimals).
                    .with_key(
                        "rate",
                        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = w.write_str(&per_second(state.per_sec()));
                        },
                    ),
            );
            bar.set_message(what);
            bar.enable_steady_tick(Duration::from_millis(200));
            return Self {
                bar: Some(bar),
                count,
                ticker: None,
            };
        }
        let ticker = {
            let count = count.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::now() + PLAIN_EVERY,
                    PLAIN_EVERY,
                );
                loop {
                    tick.tick().await;
                    let done = count.load(Ordering::Relaxed);
                    let secs = started.elapsed().as_secs_f64();
                    let of = total.map_or_else(String::new, |n| format!(" of {}", readable(n)));
                    let extra = extra();
                    let extra = if extra.is_empty() {
                        extra
                    } else {
                        format!(", {extra}")
                    };
                    eprintln!(
                        "hubcat {command}: {}{of} {what} ({}{extra}), {:.0} s",
                        readable(done),
                        per_second(done as f64 / secs.max(1e-9)),
                        secs
                    );
                }
            })
        };
        Self {
            bar: None,
            count,
            ticker: Some(ticker),
        }
    }

    pub(crate) fn inc(&self, n: u64) {
        self.count.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Clears the bar, or stops the plain lines.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let Some(ticker) = &self.ticker {
            ticker.abort();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn readable(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn rates_are_whole_and_grouped() {
        assert_eq!(super::per_second(964_249.778), "964,250/s");
        assert_eq!(super::per_second(0.4), "0/s");
    }

    #[test]
    fn numbers_are_grouped_in_thousands() {
        assert_eq!(readable(0), "0");
        assert_eq!(readable(999), "999");
        assert_eq!(readable(1000), "1,000");
        assert_eq!(readable(1_234_567), "1,234,567");
    }
}
