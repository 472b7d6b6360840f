//! A contender's command line: the [`Settings`] every contender takes, and the usage
//! error it exits with.

use std::collections::HashMap;
use std::time::Duration;

/// The settings of one contender run; every contender takes the same flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The emulator's connection string (no `EntityPath`).
    pub connection_string: String,
    /// The hub to publish to.
    pub hub: String,
    /// Events to publish.
    pub events: u64,
    /// Body size in bytes (at least 16: an index and a timestamp lead every body).
    pub size: usize,
    /// The hub's partition count.
    pub partitions: u32,
    /// Whether events carry a partition key (1,000 distinct keys).
    pub keyed: bool,
    /// Pending events the producer may hold (the SDK: divided among the partitions).
    pub pending: usize,
    /// The longest an event waits in an unfilled batch.
    pub max_wait: Duration,
    /// Events per second to pace the hand-over at; 0 for as fast as the producer takes them.
    pub rate: u64,
    /// How long the window may last; a run still going then reports what it has.
    pub deadline: Duration,
    /// Store and forward with this spool durability (`group`, `100ms`, `os`), for the
    /// contenders that take it.
    pub spool: Option<String>,
    /// Each event enqueued with a receipt, its result read from the receipt (not from
    /// the outcome stream), for the contenders that take it.
    pub receipts: bool,
    /// Each event sent as a batch of its own, up to `pending` sends at a time, rather
    /// than through a buffered producer (the SDK contender's `ProducerClient` mode).
    pub direct: bool,
    /// The producer's delivery timeout, if not its default (for runs where a
    /// partition never answers).
    pub delivery_timeout: Option<Duration>,
    /// The window closes with the last event stored rather than the last outcome:
    /// events a stalled partition holds fail only at their delivery timeout, which
    /// says nothing of the rate the others were published at.
    pub until_stored: bool,
    /// The most events in one batch, for the contenders that pack their own (the
    /// ceiling): its batches then match the producer's on small-batch workloads.
    pub batch_events: Option<usize>,
}

impl Settings {
    /// Reads `--name value` pairs from the process arguments.
    pub fn from_args() -> Result<Self, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(name) = it.next() {
            let name = name
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --name, got {name}"))?;
            if ["keyed", "receipts", "until-stored", "direct"].contains(&name) {
                map.insert(name.to_string(), "true".to_string());
                continue;
            }
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_string(), value.clone());
        }
        fn take<T: std::str::FromStr>(
            map: &HashMap<String, String>,
            name: &str,
            default: Option<T>,
        ) -> Result<T, String> {
            match map.get(name) {
                Some(v) => v.parse().map_err(|_| format!("--{name}: bad value {v}")),
                None => default.ok_or_else(|| format!("--{name} is required")),
            }
        }
        let settings = Settings {
            connection_string: take(&map, "connection-string", None)?,
            hub: take(&map, "hub", None)?,
            events: take(&map, "events", None)?,
            size: take(&map, "size", Some(100))?,
            partitions: take(&map, "partitions", None)?,
            keyed: map.contains_key("keyed"),
            pending: take(&map, "pending", Some(6000))?,
            max_wait: Duration::from_millis(take(&map, "max-wait-ms", Some(250))?),
            rate: take(&map, "rate", Some(0))?,
            deadline: Duration::from_secs(take(&map, "deadline-secs", Some(600))?),
            spool: map.get("spool").cloned(),
            receipts: map.contains_key("receipts"),
            direct: map.contains_key("direct"),
            until_stored: map.contains_key("until-stored"),
            batch_events: map
                .get("batch-events")
                .map(|v| {
                    v.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("--batch-events: bad value {v}"))
                })
                .transpose()?,
            delivery_timeout: map
                .get("delivery-timeout-ms")
                .map(|v| {
                    v.parse()
                        .map_err(|_| format!("--delivery-timeout-ms: bad value {v}"))
                })
                .transpose()?
                .map(Duration::from_millis),
        };
        if settings.size < 16 {
            return Err("--size must be at least 16".into());
        }
        if settings.partitions == 0 || settings.events == 0 || settings.pending == 0 {
            return Err("--partitions, --events and --pending must be positive".into());
        }
        Ok(settings)
    }

    /// The emulator's `host:port`, from the connection string's endpoint.
    pub fn host_port(&self) -> Result<String, String> {
        self.connection_string
            .split(';')
            .find_map(|part| part.strip_prefix("Endpoint=sb://"))
            .map(|endpoint| endpoint.trim_end_matches('/').to_string())
            .ok_or_else(|| "no Endpoint=sb://… in the connection string".to_string())
    }

    /// The value of `name` in the connection string.
    pub fn connection_string_part(&self, name: &str) -> Option<String> {
        self.connection_string.split(';').find_map(|part| {
            let (k, v) = part.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }
}

/// Prints the usage error and exits with status 2.
pub fn usage(error: String) -> ! {
    eprintln!("{error}");
    eprintln!(
        "usage: --connection-string CS --hub NAME --events N --partitions P \
         [--size B] [--keyed] [--pending N] [--max-wait-ms MS] [--rate EVENTS_PER_S] \
         [--deadline-secs S] [--spool group|100ms|os] [--receipts] \
         [--delivery-timeout-ms MS] [--until-stored] [--batch-events N] [--direct]"
    );
    std::process::exit(2)
}
