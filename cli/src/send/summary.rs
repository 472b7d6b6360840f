//! What a `hubcat send` run reports: the outcomes it collects (and the failed
//! events it writes out), and the summary at the end.

use std::io::Write as _;
use std::time::Duration;

use futures_util::StreamExt;
use streaming_producer::{BatchOutcome, Outcomes};

use crate::progress::readable;

#[derive(Debug, Default)]
pub(super) struct Stats {
    events_ok: u64,
    events_failed: u64,
    /// Of the events published or failed, those an earlier run left in the spool.
    recovered_ok: u64,
    recovered_failed: u64,
    /// Of the failed events, those too large for any batch.
    events_too_large: u64,
    batches: u64,
    batch_bytes: u64,
}

pub(super) async fn collect(
    mut outcomes: Outcomes,
    mut failed_out: Option<std::io::BufWriter<std::fs::File>>,
    delimiter: u8,
) -> std::io::Result<Stats> {
    let mut stats = Stats::default();
    while let Some(BatchOutcome {
        partition,
        events,
        size_in_bytes,
        result,
        recovered,
        ..
    }) = outcomes.next().await
    {
        if recovered {
            match &result {
                Ok(()) => stats.recovered_ok += events.len() as u64,
                Err(_) => stats.recovered_failed += events.len() as u64,
            }
        }
        match result {
            Ok(()) => {
                stats.events_ok += events.len() as u64;
                stats.batches += 1;
                stats.batch_bytes += size_in_bytes as u64;
            }
            Err(e) => {
                stats.events_failed += events.len() as u64;
                if e.is_too_large() {
                    stats.events_too_large += events.len() as u64;
                    eprintln!("hubcat send: {e}; not published (counted as too long)");
                } else {
                    eprintln!(
                        "hubcat send: {} event(s) for partition {partition} not published: {}",
                        events.len(),
                        crate::chain(&e)
                    );
                }
                if let Some(out) = failed_out.as_mut() {
                    for body in events.bodies() {
                        out.write_all(body)?;
                        out.write_all(&[delimiter])?;
                    }
                }
            }
        }
    }
    if let Some(mut out) = failed_out {
        out.flush()?;
    }
    Ok(stats)
}

/// What a run did.
pub(super) struct Summary {
    pub(super) elapsed: Duration,
    pub(super) read: u64,
    pub(super) stats: Stats,
    pub(super) unparsable: u64,
    pub(super) lines_too_long: u64,
    pub(super) max_batch: usize,
    pub(super) read_failed: bool,
}

impl Summary {
    /// Lines over `--max-line-bytes` and events too large for a batch.
    fn too_long(&self) -> u64 {
        self.lines_too_long + self.stats.events_too_large
    }

    fn failures(&self) -> u64 {
        self.stats.events_failed + self.unparsable + self.lines_too_long
    }

    pub(super) fn ok(&self) -> bool {
        self.failures() == 0
            && !self.read_failed
            && self.stats.events_ok == self.read + self.stats.recovered_ok
    }

    /// Mean batch fill, in percent of the largest batch.
    fn fill(&self) -> f64 {
        if self.stats.batches == 0 {
            return 0.0;
        }
        100.0 * self.stats.batch_bytes as f64 / (self.stats.batches as f64 * self.max_batch as f64)
    }

    fn rate(&self) -> f64 {
        self.stats.events_ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(super) fn text(&self) -> String {
        let mut text = format!(
            "hubcat send: summary\n  \
             events sent      {}\n  \
             batches          {}\n  \
             mean batch fill  {:.1}% of {} bytes\n  \
             elapsed          {:.2} s\n  \
             events/s         {}\n  \
             failures         {} ({} unparsable, {} too long)\n",
            readable(self.stats.events_ok),
            readable(self.stats.batches),
            self.fill(),
            self.max_batch,
            self.elapsed.as_secs_f64(),
            readable(self.rate().round() as u64),
            readable(self.failures()),
            self.unparsable,
            self.too_long(),
        );
        if self.stats.recovered_ok + self.stats.recovered_failed > 0 {
            text.push_str(&format!(
                "  from the spool   {} sent, {} failed (left by an earlier run)\n",
                readable(self.stats.recovered_ok),
                readable(self.stats.recovered_failed)
            ));
        }
        if self.read_failed {
            text.push_str("  input            not read to the end (see above)\n");
        }
        text
    }

    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok(),
            "events_read": self.read,
            "events_sent": self.stats.events_ok,
            "events_failed": self.failures(),
            "unparsable": self.unparsable,
            "too_long": self.too_long(),
            "batches": self.stats.batches,
            "mean_batch_fill": self.fill() / 100.0,
            "max_batch_bytes": self.max_batch,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "events_per_second": self.rate(),
            "input_read_to_end": !self.read_failed,
            "recovered_sent": self.stats.recovered_ok,
            "recovered_failed": self.stats.recovered_failed,
        })
    }
}
