//! The spool flags `hubcat send` and `hubcat demo` share.

use std::path::PathBuf;

use clap::Args;
use streaming_producer::{Durability, ProducerBuilder};

#[derive(Debug, Args)]
pub(crate) struct SpoolArgs {
    /// Store and forward: keep every accepted event in a log in DIR until its outcome
    /// is known. A run killed part-way leaves its unpublished events there; the next
    /// run on DIR publishes them first (even with empty input).
    #[arg(long, value_name = "DIR")]
    pub(crate) spool: Option<PathBuf>,
    /// When the spool's writes count as durable: `group` (each group of appends is
    /// synced, the default), an interval such as `100ms` (synced at most that often), or
    /// `os` (handed to the operating system, never synced).
    #[arg(long, value_name = "POLICY", requires = "spool", value_parser = parse_sync)]
    pub(crate) spool_sync: Option<Durability>,
    /// The most bytes the spool may hold on disk (default 1 GiB); reading waits while
    /// it is full.
    #[arg(long, value_name = "BYTES", requires = "spool")]
    pub(crate) max_spool_bytes: Option<u64>,
}

impl SpoolArgs {
    pub(crate) fn apply(&self, mut builder: ProducerBuilder) -> ProducerBuilder {
        if let Some(dir) = &self.spool {
            builder = builder.spool(dir);
        }
        if let Some(sync) = self.spool_sync {
            builder = builder.spool_durability(sync);
        }
        if let Some(bytes) = self.max_spool_bytes {
            builder = builder.max_spool_bytes(bytes);
        }
        builder
    }
}

fn parse_sync(text: &str) -> Result<Durability, String> {
    match text.trim() {
        "group" => Ok(Durability::Group),
        "os" => Ok(Durability::Os),
        other => match crate::send::parse_duration(other) {
            Ok(d) if !d.is_zero() => Ok(Durability::Interval(d)),
            _ => Err(format!(
                "'{text}' is not a spool sync policy: use group, os, or an interval such as 100ms"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sync_policies_parse() {
        assert_eq!(parse_sync("group"), Ok(Durability::Group));
        assert_eq!(parse_sync("os"), Ok(Durability::Os));
        assert_eq!(
            parse_sync("100ms"),
            Ok(Durability::Interval(Duration::from_millis(100)))
        );
        for bad in ["0s", "always", ""] {
            assert!(parse_sync(bad)
                .unwrap_err()
                .contains("not a spool sync policy"));
        }
    }
}
