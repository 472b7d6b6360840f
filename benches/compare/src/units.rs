//! Figures in the units that suit them, for the runner's tables: durations in words
//! and CPU microseconds per event.

use std::time::Duration;

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
