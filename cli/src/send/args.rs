//! `hubcat send`'s flags and their parsers: every value is checked before anything
//! connects.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::hub::HubArgs;

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// Files to read, in order; none (or `-`) reads stdin.
    #[arg(value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) hub: HubArgs,
    #[command(flatten)]
    pub(crate) spool: crate::spool::SpoolArgs,
    /// With --spool: print `durable N` on stdout each time the first N events read
    /// (and accepted) are durable in the spool, for a script to mark its input.
    #[arg(long, requires = "spool")]
    pub(crate) print_durable: bool,
    /// Write the producer's statistics (per partition and in total: pending, in
    /// flight, published, failed, retries, last error, batch fill, send latency) to
    /// FILE as a JSON line every second, and once more at the end.
    #[arg(long, value_name = "FILE")]
    pub(crate) stats: Option<PathBuf>,
    /// What ends an event in the input: one character, or `\n` (the default; a `\r`
    /// before it is dropped), `\t` or `\0`.
    #[arg(long, value_name = "CHAR", default_value = "\\n", value_parser = parse_delimiter)]
    pub(crate) delimiter: u8,
    /// The partition key of every event.
    #[arg(long, value_name = "KEY", group = "routing")]
    pub(crate) key: Option<String>,
    /// Each event is a JSON object; its partition key is this field. Nested fields as
    /// `user.id` or as a JSON pointer, `/user/id`.
    #[arg(long, value_name = "PATH", group = "routing")]
    pub(crate) key_field: Option<String>,
    /// Each event is its key, this character, then its body: `--key-delimiter '\t'`
    /// reads `KEY<TAB>BODY`.
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter, group = "routing")]
    pub(crate) key_delimiter: Option<u8>,
    /// Publish every event to this partition id (checked against the hub at start).
    #[arg(long, value_name = "ID", group = "routing")]
    pub(crate) partition: Option<String>,
    /// An application property on every event, as `name=value`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,
    /// The content type of every event, e.g. `application/json`.
    #[arg(long, value_name = "TYPE")]
    pub(crate) content_type: Option<String>,
    /// Read at most this many events per second (default: as fast as the hub takes
    /// them).
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    pub(crate) rate: Option<f64>,
    /// Idempotent retries: a batch retried after a lost acknowledgement is stored once.
    #[arg(long)]
    pub(crate) idempotent: bool,
    /// How many times a failed batch is tried again (default 3).
    #[arg(long, value_name = "N")]
    pub(crate) retries: Option<u32>,
    /// The longest one try of a batch may take, e.g. `10s` (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub(crate) try_timeout: Option<Duration>,
    /// How long the oldest event of a batch may wait, in milliseconds.
    #[arg(long, default_value_t = 250)]
    pub(crate) max_wait_ms: u64,
    /// How many events may be pending at once.
    #[arg(long, default_value_t = 2500, value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    pub(crate) max_pending: u64,
    /// The longest an event may take from being read to being published (retries and
    /// reconnects included); events still unpublished then count as failures. E.g.
    /// `30s`, `2m`, `500ms`; a bare number is seconds.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_positive_duration)]
    pub(crate) delivery_timeout: Duration,
    /// Write the events that failed here, one per line (ended by the delimiter).
    #[arg(long, value_name = "FILE")]
    pub(crate) failed_out: Option<PathBuf>,
    /// Refuse events that are not UTF-8 (counted as failures) instead of publishing
    /// their bytes as they are.
    #[arg(long)]
    pub(crate) strict_utf8: bool,
    /// The longest event accepted, in bytes; a longer one is counted as a failure.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_line_bytes: u64,
    /// No progress and no text summary; errors still go to stderr.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// The summary as `text` on stderr (the default) or as one `json` object on stdout.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub(crate) summary: SummaryFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SummaryFormat {
    Text,
    Json,
}

/// A duration as `250ms`, `30s`, `2m` or `1h`; a bare number is seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try 30s, 2m or 500ms)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "'{other}' in '{text}' is not a unit (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("'{text}' is out of range"))
}

/// A duration that is more than zero.
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(format!("'{text}' must be more than zero"));
    }
    Ok(d)
}

/// One byte: a single ASCII character, or `\n`, `\t`, `\r`, `\0`, `\\`.
pub(crate) fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "\\n" => Ok(b'\n'),
        "\\t" => Ok(b'\t'),
        "\\r" => Ok(b'\r'),
        "\\0" => Ok(0),
        "\\\\" => Ok(b'\\'),
        _ if text.len() == 1 && text.is_ascii() => Ok(text.as_bytes()[0]),
        _ => Err(format!(
            "'{text}' is not one character (or \\n, \\t, \\r, \\0)"
        )),
    }
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("'{text}' is not name=value")),
    }
}

/// Events per second, more than zero (`hubcat send` and `hubcat demo` alike: no
/// `--rate` at all is what means no limit).
pub(crate) fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "'{text}' is not a rate: give events per second, more than zero (without \
             --rate there is no limit)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_bare_numbers_are_seconds() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").unwrap_err().contains("soon"));
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("1e400").is_err());
        assert!(parse_positive_duration("0s")
            .unwrap_err()
            .contains("more than zero"));
    }

    #[test]
    fn delimiters_headers_and_rates_are_checked() {
        assert_eq!(parse_delimiter("\\n"), Ok(b'\n'));
        assert_eq!(parse_delimiter("\\0"), Ok(0));
        assert_eq!(parse_delimiter(","), Ok(b','));
        assert!(parse_delimiter("ab").is_err());
        assert!(parse_delimiter("é").is_err());
        assert_eq!(
            parse_header("source=cli=1"),
            Ok(("source".into(), "cli=1".into()))
        );
        assert!(parse_header("=x").is_err());
        assert!(parse_header("novalue").is_err());
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        for bad in ["0", "-1", "inf", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
