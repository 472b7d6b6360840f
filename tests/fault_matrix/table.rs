//! Printing the matrix: one Markdown table row per case under a header printed once,
//! and a summary of the errors of failed outcomes.

use std::time::Duration;

use streaming_producer::BatchOutcome;

use crate::check::Tally;
use crate::setup::Setup;

/// The distinct errors of failed outcomes, most frequent first.
pub(crate) fn errors(outcomes: &[BatchOutcome]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for o in outcomes {
        if let Err(e) = &o.result {
            let text = e.to_string();
            match counts.iter_mut().find(|(t, _)| *t == text) {
                Some((_, n)) => *n += o.events.len(),
                None => counts.push((text, o.events.len())),
            }
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
        .iter()
        .map(|(t, n)| format!("{n} × {t}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The header of the table [`row`] prints: the case, its delivery mode and retry count,
/// then the [`Tally`] (events sent, reported published, reported failed, of those
/// reported ambiguous, events stored at least once, extra copies stored, events reported
/// published but not stored) and how long the producer took to close (for the repeated
/// scenario, the whole run).
pub(crate) const HEADER: &str = "\
| case | mode | max retries | sent | succeeded | failed | ambiguous | stored | duplicates | lost | took |
|---|---|---|---|---|---|---|---|---|---|---|";

/// Prints one row of the table, after [`HEADER`] if no row came before it. Each starts
/// on a line of its own, not after the harness's `test name ... `, so that `grep '^|'`
/// finds them all.
pub(crate) fn row(case: &str, setup: &Setup, t: &Tally, close: Duration) {
    static HEADER_ONCE: std::sync::Once = std::sync::Once::new();
    HEADER_ONCE.call_once(|| println!("\n{HEADER}"));
    println!(
        "\n| {case} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} s |",
        setup.mode(),
        if setup.retries { "3" } else { "0" },
        t.sent,
        t.succeeded,
        t.failed,
        t.ambiguous,
        t.stored,
        t.duplicates,
        t.lost,
        close.as_secs_f64()
    );
}
