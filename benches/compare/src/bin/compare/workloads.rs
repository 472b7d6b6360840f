//! What is compared: the [`Contender`]s (each a binary of this package, publishing to
//! a hub of its own) and the [`Workload`]s they run, the full set or the smoke run's.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Contender {
    Producer,
    Sdk,
    /// The SDK's `ProducerClient`, each event a batch of its own.
    SdkDirect,
    Ceiling,
    /// This producer with store and forward, by the spool's durability policy.
    SpoolGroup,
    SpoolInterval,
    SpoolOs,
    /// This producer with a receipt per event, results read from the receipts.
    Receipts,
    /// This producer on a hub whose partition 2 never answers (keyless routing
    /// steers around it).
    Stalled,
}

impl Contender {
    pub(crate) fn binary(self) -> &'static str {
        match self {
            Contender::Producer
            | Contender::SpoolGroup
            | Contender::SpoolInterval
            | Contender::SpoolOs
            | Contender::Receipts
            | Contender::Stalled => "contender_producer",
            Contender::Sdk | Contender::SdkDirect => "contender_sdk",
            Contender::Ceiling => "contender_ceiling",
        }
    }
    /// The spool's durability policy (`--spool`), for the store-and-forward contenders.
    pub(crate) fn spool(self) -> Option<&'static str> {
        match self {
            Contender::SpoolGroup => Some("group"),
            Contender::SpoolInterval => Some("100ms"),
            Contender::SpoolOs => Some("os"),
            _ => None,
        }
    }
    pub(crate) fn hub(self) -> &'static str {
        match self {
            Contender::Producer => "producer",
            Contender::Sdk => "sdk",
            Contender::SdkDirect => "sdk-direct",
            Contender::Ceiling => "ceiling",
            Contender::SpoolGroup => "spool-group",
            Contender::SpoolInterval => "spool-100ms",
            Contender::SpoolOs => "spool-os",
            Contender::Receipts => "receipts",
            Contender::Stalled => "stalled",
        }
    }
    pub(crate) fn label(self) -> &'static str {
        match self {
            Contender::Producer => "this producer (`Producer::enqueue`)",
            Contender::Sdk => "Rust SDK `BufferedProducerClient` 0.16",
            Contender::SdkDirect => "Rust SDK `ProducerClient` 0.16, a one-event batch per send",
            Contender::Ceiling => "ceiling: fe2o3 alone, pre-built full batches",
            Contender::SpoolGroup => "this producer, spool synced per group of appends",
            Contender::SpoolInterval => "this producer, spool synced every 100 ms",
            Contender::SpoolOs => "this producer, spool left to the OS (never synced)",
            Contender::Receipts => "this producer, a receipt per event (`enqueue_with_receipt`)",
            Contender::Stalled => "this producer, partition 2 stalled (adaptive keyless routing)",
        }
    }

    /// Extra flags of its contender binary.
    pub(crate) fn flags(self) -> &'static [&'static str] {
        match self {
            Contender::Receipts => &["--receipts"],
            Contender::SdkDirect => &["--direct"],
            // The events routed to the stalled partition before the producer noticed
            // fail after this, so that the run ends.
            Contender::Stalled => &["--delivery-timeout-ms", "3000", "--until-stored"],
            _ => &[],
        }
    }

    /// Whether some of its events fail by design (those a stalled partition held
    /// before the producer steered away from it).
    pub(crate) fn expects_failures(self) -> bool {
        self == Contender::Stalled
    }

    /// The emulator's fault scripts for its hub.
    pub(crate) fn faults(self) -> Option<String> {
        match self {
            Contender::Stalled => Some(format!("stall,hub={},partition=2", self.hub())),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Workload {
    pub(crate) size: usize,
    pub(crate) partitions: u32,
    pub(crate) keyed: bool,
    pub(crate) pending: usize,
    pub(crate) events: u64,
    /// Events per second, for the paced workloads; 0 for as fast as they go.
    pub(crate) rate: u64,
    /// The producers' `max_wait`.
    pub(crate) max_wait_ms: u64,
    /// What the workload measures, and so which table it goes in.
    pub(crate) kind: Kind,
    /// The most events in one of the ceiling's batches (`--batch-events`), so that it
    /// sends the batches the producer does.
    pub(crate) ceiling_batch: Option<usize>,
    pub(crate) contenders: Vec<Contender>,
}

/// What a workload measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Events per second and CPU per event, as fast as the contenders go.
    Throughput,
    /// Enqueue-to-outcome time, paced.
    Latency,
    /// What each batch costs: small batches, as fast as they go or paced.
    PerBatch,
}

impl Workload {
    pub(crate) fn label(&self) -> String {
        let size = if self.size >= 1024 {
            format!("{} KiB", self.size / 1024)
        } else {
            format!("{} B", self.size)
        };
        let pending = if self.pending >= 1000 {
            format!("{}k", self.pending / 1000)
        } else {
            self.pending.to_string()
        };
        let mut label = format!(
            "{size}, {} partitions, {}, {pending} pending",
            self.partitions,
            if self.keyed { "keyed" } else { "keyless" }
        );
        if self.rate > 0 {
            write!(label, ", paced at {} events/s", self.rate).unwrap();
        }
        if self.max_wait_ms != 250 {
            write!(label, ", max wait {} ms", self.max_wait_ms).unwrap();
        }
        if self.contenders.iter().any(|c| c.spool().is_some()) {
            label.push_str(", store and forward");
        }
        if self.contenders.contains(&Contender::Receipts) {
            label.push_str(", receipts");
        }
        if self.contenders.contains(&Contender::Stalled) {
            label.push_str(", one partition stalled");
        }
        label
    }
}

pub(crate) fn workloads(smoke: bool) -> Vec<Workload> {
    use Contender::*;
    let w = |size, partitions, keyed, pending, events| Workload {
        size,
        partitions,
        keyed,
        pending,
        events,
        rate: 0,
        max_wait_ms: 250,
        kind: Kind::Throughput,
        ceiling_batch: None,
        contenders: if keyed {
            // The ceiling routes nothing, so keys change nothing for it: the keyless
            // workload's ceiling stands for both.
            vec![Producer, Sdk]
        } else {
            vec![Producer, Sdk, Ceiling]
        },
    };
    let latency = |events| Workload {
        size: 100,
        partitions: 4,
        keyed: false,
        pending: 6000,
        events,
        rate: 1000,
        max_wait_ms: 250,
        kind: Kind::Latency,
        ceiling_batch: None,
        contenders: vec![Producer, Sdk],
    };
    // One event per batch: keyed over many partitions with a small pending bound, so
    // each event is a batch of its own (the ceiling sends one-event batches).
    // The SDK's buffered producer holds a partition's buffer until it is due (its
    // bound of 16 ÷ 128 partitions rounds up to one event, and it stalls at a few
    // events a second), so the SDK sends its one-event batches itself, one at a time
    // (see contender_sdk).
    let one_event = |events| Workload {
        kind: Kind::PerBatch,
        ceiling_batch: Some(1),
        contenders: vec![Producer, SdkDirect, Ceiling],
        ..w(100, 128, true, 16, events)
    };
    // A steady sparse stream: 2,000 events/s over 4 partitions, published within
    // 10 ms; the ceiling sends what reaches each partition in 10 ms as a batch.
    let sparse = |events| Workload {
        rate: 2000,
        max_wait_ms: 10,
        kind: Kind::PerBatch,
        ceiling_batch: Some(5),
        contenders: vec![Producer, Sdk, Ceiling],
        ..w(100, 4, false, 6000, events)
    };
    // The spool's cost, beside the producer without one.
    let spooled = |events| Workload {
        contenders: vec![Producer, SpoolGroup, SpoolInterval, SpoolOs],
        ..w(100, 4, false, 6000, events)
    };
    // A receipt per event, beside plain enqueue.
    let receipts = |events| Workload {
        contenders: vec![Producer, Receipts],
        ..w(100, 4, false, 6000, events)
    };
    // Keyless over 4 partitions with one stalled, beside all healthy.
    let stalled = |events| Workload {
        contenders: vec![Producer, Stalled],
        ..w(100, 4, false, 6000, events)
    };
    if smoke {
        return vec![
            w(100, 4, false, 6000, 5000),
            w(100, 4, true, 6000, 5000),
            latency(2000),
            spooled(5000),
            receipts(5000),
            stalled(20_000),
            // Without the SDK's `ProducerClient`: now and then it stalls on this
            // workload (a few of the 200 events sent in the minute), which would fail
            // the smoke run for the SDK's sake; the full run reports it.
            Workload {
                contenders: vec![Producer, Ceiling],
                ..one_event(200)
            },
            sparse(2000),
        ];
    }
    let mut all = Vec::new();
    for partitions in [4, 32, 1024] {
        for keyed in [false, true] {
            for pending in [6000, 100_000] {
                let events = if partitions == 1024 {
                    300_000
                } else {
                    1_000_000
                };
                all.push(w(100, partitions, keyed, pending, events));
            }
        }
    }
    for partitions in [4, 32, 1024] {
        for keyed in [false, true] {
            for pending in [6000, 100_000] {
                let events = if partitions == 1024 { 100_000 } else { 250_000 };
                all.push(w(1024, partitions, keyed, pending, events));
            }
        }
    }
    all.push(latency(20_000));
    all.push(spooled(1_000_000));
    all.push(receipts(1_000_000));
    all.push(stalled(1_000_000));
    all.push(one_event(50_000));
    all.push(sparse(20_000));
    all
}
