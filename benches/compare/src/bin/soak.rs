//! The soak: millions of keyed events through one producer into a `hubcat emulator`
//! that injects a random mix of faults, with the producer's resident memory sampled
//! every second. The emulator is a process of its own (with bounded retention), so the
//! memory measured is the producer's alone.
//!
//! ```text
//! cargo run --release --manifest-path benches/compare/Cargo.toml --bin soak -- --events 10000000
//! ```
//!
//! Flags: `--events N` (default 10,000,000); `--at-least-once` (default: idempotent
//! retries); `--hubcat PATH` (default: build the release `hubcat`).
//!
//! It fails (exit status 1) unless every accepted event has exactly one outcome, and
//! the partitions' stored counts agree with the outcomes: at least every event
//! reported published, and with idempotence no more than those plus the ones
//! reported as maybe stored.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use streaming_producer::{EventData, Producer, RetryPolicy};

/// The system allocator, counting the bytes the process holds: the heap it asks for
/// and has not given back. Printed next to RSS, it tells memory the program keeps
/// from memory the allocator keeps (freed, but not returned to the system).
struct Counting;

static LIVE: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter
// is updated besides.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's guarantees about `layout` are passed on.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc` and `dealloc`.
        let new = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size as u64, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

const PARTITIONS: u32 = 4;
const KEYS: u64 = 1000;

/// Each a small probability per transfer, so that every kind fires during a long run.
const FAULTS: &[&str] = &[
    "reject,p=0.002,seed=1",
    "throttle,p=0.002,seed=2",
    "release,p=0.002,seed=3",
    "detach,p=0.001,seed=4",
    "drop-connection,p=0.001,seed=5",
    "delay,ms=1500,p=0.0005,seed=6",
    "stall,p=0.0005,seed=7",
];

struct Args {
    events: u64,
    idempotent: bool,
    hubcat: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        events: 10_000_000,
        idempotent: true,
        hubcat: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--events" => {
                args.events = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--events needs a positive count")?;
            }
            "--at-least-once" => args.idempotent = false,
            "--hubcat" => args.hubcat = Some(it.next().ok_or("--hubcat needs a path")?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hubcat(given: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return Ok(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = compare::cargo(&root)
        .args(["build", "--release", "-p", "hubcat"])
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building hubcat failed: {status}"));
    }
    Ok(root.join("target/release/hubcat"))
}

fn start_emulator(hubcat: &PathBuf) -> Result<(Emulator, String), String> {
    let mut cmd = Command::new(hubcat);
    cmd.args(["emulator", "--bind", "127.0.0.1:0"])
        .args(["--hub", &format!("soak:{PARTITIONS}")])
        .args(["--retention-bytes", &(64u64 << 20).to_string()]);
    for f in FAULTS {
        cmd.args(["--fault", f]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", hubcat.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(|e| format!("reading the emulator's stdout: {e}"))?;
    if line.trim().is_empty() {
        return Err("the emulator printed no connection string".into());
    }
    Ok((Emulator(child), format!("{};EntityPath=soak", line.trim())))
}

#[derive(Default)]
struct Counts {
    batches: AtomicU64,
    outcomes: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    ambiguous: AtomicU64,
    twice: AtomicU64,
}

/// Prints a row of the progress table and returns the RSS in KiB.
fn sample(started: Instant, accepted: u64, counts: &Counts) -> u64 {
    let rss = compare::rss_kib();
    let done = counts.outcomes.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "| {secs:.1} s | {accepted} | {done} | {:.0} | {:.1} | {:.1} | {:.1} |",
        done as f64 / secs.max(1e-9),
        rss as f64 / 1024.0,
        compare::anon_rss_kib() as f64 / 1024.0,
        live_mib()
    );
    rss
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let hubcat = hubcat(args.hubcat)?;
    let (_emulator, cs) = start_emulator(&hubcat)?;
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&cs)
        .max_pending_events(5000)
        .try_timeout(Duration::from_secs(1))
        .retry_policy(
            RetryPolicy::default()
                .with_initial_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_secs(2)),
        )
        .idempotent_retries(args.idempotent)
        .build()
        .await
        .map_err(|e| format!("building the producer: {e}"))?;
    let n = args.events;
    let counts = Arc::new(Counts::default());
    // Every page written up front (a zeroed allocation is mapped only as the run reaches
    // it): the bitmap is resident from the start, so its 1.25 MB per 10 million events
    // does not show up as growth of the producer's RSS.
    let mut bits = vec![0u64; n.div_ceil(64) as usize];
    for word in bits.iter_mut().step_by(512) {
        // SAFETY: `word` is a valid, aligned, exclusive reference.
        unsafe { std::ptr::write_volatile(word, 0) };
    }
    let seen = Arc::new(std::sync::Mutex::new(bits));
    let reader = {
        let (counts, seen) = (counts.clone(), seen.clone());
        tokio::spawn(async move {
            while let Some(o) = outcomes.next().await {
                let mut bits = seen.lock().unwrap_or_else(|e| e.into_inner());
                for body in o.events.bodies() {
                    let id = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
                    let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
                    if bits[word] & bit != 0 {
                        counts.twice.fetch_add(1, Ordering::Relaxed);
                    }
                    bits[word] |= bit;
                }
                let k = o.events.len() as u64;
                counts.batches.fetch_add(1, Ordering::Relaxed);
                counts.outcomes.fetch_add(k, Ordering::Relaxed);
                match &o.result {
                    Ok(()) => counts.succeeded.fetch_add(k, Ordering::Relaxed),
                    Err(e) if e.is_ambiguous() => {
                        counts.failed.fetch_add(k, Ordering::Relaxed);
                        counts.ambiguous.fetch_add(k, Ordering::Relaxed)
                    }
                    Err(_) => counts.failed.fetch_add(k, Ordering::Relaxed),
                };
            }
        })
    };
    let mode = if args.idempotent {
        "idempotent"
    } else {
        "at least once"
    };
    println!("soak: {n} events of 100 bytes, {PARTITIONS} partitions, {KEYS} keys, {mode}");
    println!("soak: faults {}", FAULTS.join(" | "));
    println!("| elapsed | accepted | outcomes | events/s | RSS MiB | anonymous RSS MiB | heap held MiB |");
    println!("|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let mut last_sample = started;
    let mut samples = Vec::new();
    let mut body = [b'.'; 100];
    for i in 0..n {
        body[..8].copy_from_slice(&i.to_le_bytes());
        let event = EventData::new(body.to_vec()).with_partition_key(format!("k{}", i % KEYS));
        producer
            .enqueue(event)
            .await
            .map_err(|e| format!("enqueue: {e}"))?;
        if i % 4096 == 0 && last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = Instant::now();
            samples.push(sample(started, i + 1, &counts));
        }
    }
    producer.flush().await.map_err(|e| format!("flush: {e}"))?;
    // One more at the end: a short run (CI's 200,000 events) may not last a second, and
    // its table and median would otherwise be empty.
    samples.push(sample(started, n, &counts));
    let mut stored = 0i64;
    for p in 0..PARTITIONS {
        let props = producer
            .partition_properties(&p.to_string())
            .await
            .map_err(|e| format!("reading partition {p}: {e}"))?;
        stored += props.last_enqueued_sequence_number + 1;
    }
    producer.close().await.map_err(|e| format!("close: {e}"))?;
    reader.await.map_err(|e| format!("outcome reader: {e}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (outcomes, succeeded, failed, ambiguous, twice) = (
        get(&counts.outcomes),
        get(&counts.succeeded),
        get(&counts.failed),
        get(&counts.ambiguous),
        get(&counts.twice),
    );
    let median = {
        let mut s = samples.clone();
        s.sort_unstable();
        s.get(s.len() / 2).copied().unwrap_or(0)
    };
    println!();
    println!("| mode | events | batches | published | failed | maybe stored | stored | events/s | RSS median MiB | RSS peak MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {mode} | {n} | {} | {succeeded} | {failed} | {ambiguous} | {stored} | {:.0} | {:.1} | {:.1} |",
        get(&counts.batches),
        n as f64 / elapsed,
        median as f64 / 1024.0,
        compare::peak_rss_kib() as f64 / 1024.0
    );
    let missing = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|w| u64::from(w.count_zeros()))
        .sum::<u64>()
        - (n.div_ceil(64) * 64 - n);
    if twice > 0 || missing > 0 || outcomes != n {
        return Err(format!(
            "{missing} events without an outcome, {twice} with two; {outcomes} outcomes for {n} events"
        ));
    }
    if (stored as u64) < succeeded {
        return Err(format!(
            "{succeeded} events reported published but only {stored} stored"
        ));
    }
    if args.idempotent && stored as u64 > succeeded + ambiguous {
        return Err(format!(
            "{stored} stored with idempotence, more than {succeeded} published and {ambiguous} maybe stored"
        ));
    }
    println!("soak: every event has exactly one outcome; stored counts agree");
    Ok(())
}
