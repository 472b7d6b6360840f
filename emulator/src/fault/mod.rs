//! Fault scripts: misbehaviour injected into the send path on purpose.
//!
//! A fault has a kind (what happens), a scope (which hub or partition) and a trigger
//! (every N-th matching transfer, or with probability p from a seeded generator, so runs
//! are repeatable). Faults are checked in the order they were added; the first that fires
//! decides the fate of a transfer.
//!
//! The text form, used by `hubcat emulator --fault`, is `KIND[,key=value]...`:
//!
//! | kind | effect | keys |
//! |---|---|---|
//! | `reject` | rejected disposition with `condition` (default `amqp:internal-error`) | `condition`, `description` |
//! | `throttle` | rejected with `com.microsoft:server-busy` | |
//! | `release` | released disposition | |
//! | `delay` | the events are stored, the disposition is sent after `ms` | `ms` |
//! | `stall` | nothing is stored and no disposition is ever sent | |
//! | `detach` | the link is detached with `condition` (default `amqp:link:detach-forced`) | `condition`, `description` |
//! | `drop-connection` | the events are stored, then the connection is dropped before settling | |
//! | `slow-attach` | the attach of a publishing link is answered after `ms` | `ms` |
//!
//! `slow-attach` fires on attaches (counted over the attaches in its scope), the others
//! on transfers.
//!
//! Every kind accepts `every=N` or `p=0.05` (default: every transfer), `hub=NAME`,
//! `partition=ID`, `seed=N` (for `p`) and `count=N` (stop after firing N times).
//!
//! ```
//! use eventhubs_emulator::Fault;
//! let fault: Fault = "reject,condition=amqp:internal-error,every=3,hub=eh1".parse().unwrap();
//! assert_eq!(fault.to_string(), "reject,condition=amqp:internal-error,every=3,hub=eh1");
//! assert!("explode".parse::<Fault>().is_err());
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a fault does to the transfer it fires on.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Settle with `rejected` and this error condition.
    Reject {
        /// AMQP error condition symbol.
        condition: String,
        /// Error description.
        description: Option<String>,
    },
    /// Settle with `released`.
    Release,
    /// Store the events, then settle after this long.
    Delay(Duration),
    /// Store nothing and never settle.
    Stall,
    /// Detach the link with this error condition; nothing is stored.
    Detach {
        /// AMQP error condition symbol.
        condition: String,
        /// Error description.
        description: Option<String>,
    },
    /// Store the events, then drop the connection before settling: the ambiguous failure.
    DropConnection,
    /// Reject with `com.microsoft:server-busy`.
    Throttle,
    /// Answer the attach of a publishing link after this long.
    SlowAttach(Duration),
}

impl FaultKind {
    /// Whether the fault fires on attaches rather than on transfers.
    pub fn on_attach(&self) -> bool {
        matches!(self, FaultKind::SlowAttach(_))
    }
}

/// When a fault fires, counted over the transfers in its scope.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// On every N-th transfer (N ≥ 1).
    Every(u64),
    /// With this probability, from a generator seeded with `seed`.
    Probability {
        /// In `0.0..=1.0`.
        p: f64,
        /// Seed of the generator.
        seed: u64,
    },
}

/// A fault to inject; build it in code or parse it from text.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// When it happens.
    pub trigger: Trigger,
    /// Only transfers to this hub (case-insensitive), if set.
    pub hub: Option<String>,
    /// Only transfers to this partition, if set.
    pub partition: Option<String>,
    /// Stop after firing this many times, if set.
    pub limit: Option<u64>,
}

impl Fault {
    /// A fault of this kind on every transfer, everywhere.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            trigger: Trigger::Every(1),
            hub: None,
            partition: None,
            limit: None,
        }
    }

    /// Fires on every N-th transfer in scope.
    pub fn every(mut self, n: u64) -> Self {
        self.trigger = Trigger::Every(n.max(1));
        self
    }

    /// Fires with probability `p`, from a generator seeded with `seed`.
    pub fn probability(mut self, p: f64, seed: u64) -> Self {
        self.trigger = Trigger::Probability { p, seed };
        self
    }

    /// Only on this hub.
    pub fn hub(mut self, hub: impl Into<String>) -> Self {
        self.hub = Some(hub.into());
        self
    }

    /// Only on this partition.
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        self.partition = Some(partition.into());
        self
    }

    /// Fires at most `n` times.
    pub fn times(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }
}

/// A fault text that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultParseError(String);

impl fmt::Display for FaultParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid fault spec: {}", self.0)
    }
}

impl std::error::Error for FaultParseError {}

impl FromStr for Fault {
    type Err = FaultParseError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |m: String| FaultParseError(m);
        let mut parts = spec.split(',').map(str::trim);
        let kind_name = parts.next().unwrap_or_default();
        let mut kv = Vec::new();
        for part in parts {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| err(format!("'{part}' is not key=value")))?;
            kv.push((k, v));
        }
        let get = |key: &str| kv.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let allowed: &[&str] = match kind_name {
            "reject" | "detach" => &["condition", "description"],
            "delay" | "slow-attach" => &["ms"],
            "throttle" | "release" | "stall" | "drop-connection" => &[],
            other => {
                return Err(err(format!(
                    "unknown kind '{other}' (expected reject, throttle, release, delay, stall, detach, drop-connection or slow-attach)"
                )))
            }
        };
        for (k, _) in &kv {
            if !allowed.contains(k)
                && !["every", "p", "seed", "hub", "partition", "count"].contains(k)
            {
                return Err(err(format!("'{kind_name}' does not take '{k}'")));
            }
        }
        let description = get("description").map(str::to_owned);
        let kind = match kind_name {
            "reject" => FaultKind::Reject {
                condition: get("condition")
                    .unwrap_or(eventhubs_protocol::INTERNAL_ERROR)
                    .to_owned(),
                description,
            },
            "detach" => FaultKind::Detach {
                condition: get("condition")
                    .unwrap_or("amqp:link:detach-forced")
                    .to_owned(),
                description,
            },
            "delay" | "slow-attach" => {
                let ms = get("ms").ok_or_else(|| err(format!("{kind_name} needs ms=N")))?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| err(format!("ms '{ms}' is not a number")))?;
                let after = Duration::from_millis(ms);
                if kind_name == "delay" {
                    FaultKind::Delay(after)
                } else {
                    FaultKind::SlowAttach(after)
                }
            }
            "throttle" => FaultKind::Throttle,
            "release" => FaultKind::Release,
            "stall" => FaultKind::Stall,
            _ => FaultKind::DropConnection,
        };
        let number = |key: &str| -> Result<Option<u64>, FaultParseError> {
            get(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| err(format!("{key} '{v}' is not a whole number")))
                })
                .transpose()
        };
        let trigger = match (get("every"), get("p")) {
            (Some(_), Some(_)) => return Err(err("give either every or p, not both".into())),
            (_, Some(p)) => {
                let p: f64 = p
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=1.0).contains(p))
                    .ok_or_else(|| err(format!("p '{p}' is not a probability in 0..=1")))?;
                Trigger::Probability {
                    p,
                    seed: number("seed")?.unwrap_or(0x5EED),
                }
            }
            _ => match number("every")? {
                Some(0) => return Err(err("every must be at least 1".into())),
                n => Trigger::Every(n.unwrap_or(1)),
            },
        };
        Ok(Fault {
            kind,
            trigger,
            hub: get("hub").map(str::to_owned),
            partition: get("partition").map(str::to_owned),
            limit: number("count")?,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_error = |f: &mut fmt::Formatter<'_>, name, c: &str, d: &Option<String>| {
            write!(f, "{name},condition={c}")?;
            match d {
                Some(d) => write!(f, ",description={d}"),
                None => Ok(()),
            }
        };
        match &self.kind {
            FaultKind::Reject {
                condition,
                description,
            } => with_error(f, "reject", condition, description)?,
            FaultKind::Detach {
                condition,
                description,
            } => with_error(f, "detach", condition, description)?,
            FaultKind::Delay(d) => write!(f, "delay,ms={}", d.as_millis())?,
            FaultKind::Release => f.write_str("release")?,
            FaultKind::Stall => f.write_str("stall")?,
            FaultKind::DropConnection => f.write_str("drop-connection")?,
            FaultKind::Throttle => f.write_str("throttle")?,
            FaultKind::SlowAttach(d) => write!(f, "slow-attach,ms={}", d.as_millis())?,
        }
        match &self.trigger {
            Trigger::Every(n) => write!(f, ",every={n}")?,
            Trigger::Probability { p, seed } => write!(f, ",p={p},seed={seed}")?,
        }
        if let Some(h) = &self.hub {
            write!(f, ",hub={h}")?;
        }
        if let Some(p) = &self.partition {
            write!(f, ",partition={p}")?;
        }
        if let Some(n) = self.limit {
            write!(f, ",count={n}")?;
        }
        Ok(())
    }
}

/// A fault with its counters, shared by every connection.
#[derive(Debug)]
pub(crate) struct ActiveFault {
    pub(crate) fault: Fault,
    pub(crate) seen: AtomicU64,
    pub(crate) fired: AtomicU64,
}

impl ActiveFault {
    pub(crate) fn new(fault: Fault) -> Arc<Self> {
        Arc::new(Self {
            fault,
            seen: AtomicU64::new(0),
            fired: AtomicU64::new(0),
        })
    }

    /// Counts a transfer (`attach` false) or attach to `hub`/`partition` and says
    /// whether the fault fires on it.
    pub(crate) fn check(&self, hub: &str, partition: &str, attach: bool) -> Option<&FaultKind> {
        let f = &self.fault;
        if f.kind.on_attach() != attach
            || f.hub
                .as_deref()
                .is_some_and(|h| !h.eq_ignore_ascii_case(hub))
            || f.partition.as_deref().is_some_and(|p| p != partition)
        {
            return None;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        let fires = match f.trigger {
            Trigger::Every(every) => n.is_multiple_of(every),
            Trigger::Probability { p, seed } => unit_interval(splitmix64(seed ^ n)) < p,
        };
        if !fires {
            return None;
        }
        let fired = self.fired.fetch_add(1, Ordering::Relaxed);
        match f.limit {
            Some(limit) if fired >= limit => None,
            _ => Some(&f.kind),
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed, seedable generator.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit_interval(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
