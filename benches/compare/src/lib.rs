//! What the contenders of the comparison share: their command line, the events they
//! send, and what they measure about themselves.
//!
//! Each contender is a process of its own. It connects, then measures a window that
//! starts just before its first event is handed over and ends when the last outcome
//! is in: wall time, its own CPU time (`clock_gettime`) and peak RSS (`/proc/self`),
//! batches, and,
//! when paced, each event's time from hand-over to outcome. It prints one
//! `RESULT key=value ...` line on stdout, which the runner (`src/bin/compare/`) parses.
//!
//! The crate root re-exports everything; the modules divide it by concern: `settings`
//! (the command line), `events` (what is sent), `measure` (CPU and memory),
//! `report` (the `RESULT` line) and `units` (figures in words).

mod events;
mod measure;
mod report;
mod settings;
mod units;

pub use events::{
    body, events_per_full_batch, handed_over_at, key, keys, pace, pace_blocking, section_size,
};
pub use measure::{
    anon_rss_kib, cpu_time, disk_write_bytes, peak_rss_kib, rss_kib, voluntary_switches,
    SyscallCounter, WakeUps, Window,
};
pub use report::{finish, finish_at, Report, SharedReport};
pub use settings::{usage, Settings};
pub use units::{duration_in_words, micros};

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
