//! `hubcat emulator --data-dir` killed with SIGKILL while a producer publishes to it,
//! and started again on the same directory, a few times over. At the end every event
//! a publish was acknowledged for is in the directory, and each partition's sequence
//! numbers and offsets run on without a gap.
//!
//! Also: a restart of the process with no `--hub`, and what the directory refuses.
//!
//! `EMULATOR_KILLS` sets the number of kills (4 by default), `EMULATOR_KILL_SEED` the
//! points they come at.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{emulator_process, hubcat, Emulator as Process};
use futures_util::StreamExt;
use streaming_producer::{EventData, Producer};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One life of the emulator process: a producer publishes to it, as fast as it can,
/// until `acked_at_kill` more of its events were acknowledged; then the process is
/// killed with SIGKILL. Returns the events acknowledged.
async fn life(dir: &std::path::Path, round: u64, acked_at_kill: usize) -> Vec<String> {
    let emulator = Process::start_with(&["--no-health", "--data-dir", dir.to_str().unwrap()]);
    let cs = format!("{};EntityPath=eh1", emulator.connection_string);
    let (mut producer, mut outcomes) = Producer::builder()
        .connection_string(&cs)
        .max_wait(Duration::from_millis(2))
        .try_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("a producer");
    // The bodies acknowledged so far, watched for the kill point.
    let (acked, mut watched) = tokio::sync::watch::channel(Vec::new());
    let reading = tokio::spawn(async move {
        while let Some(outcome) = outcomes.next().await {
            if outcome.result.is_ok() {
                acked.send_modify(|acked| {
                    acked.extend(
                        outcome
                            .events
                            .bodies()
                            .map(|b| String::from_utf8(b.to_vec()).unwrap()),
                    )
                });
            }
        }
    });
    let sending = tokio::spawn(async move {
        for i in 0u64.. {
            let mut event = EventData::new(format!("r{round}-{i:07}"));
            if i % 3 == 0 {
                event = event.with_partition_key(format!("key-{}", i % 17));
            }
            if producer.enqueue(event).await.is_err() {
                return;
            }
        }
    });
    // Killed under load: the producer has batches on the wire at every moment.
    let loaded = watched.wait_for(|acked| acked.len() >= acked_at_kill);
    tokio::time::timeout(Duration::from_secs(60), loaded)
        .await
        .unwrap_or_else(|_| panic!("round {round}: {acked_at_kill} acknowledgements in 60 s"))
        .expect("the outcomes are read until the kill");
    drop(emulator); // SIGKILL
    sending.abort();
    reading.abort();
    let _ = sending.await;
    let _ = reading.await;
    let acked = watched.borrow().clone();
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_sigkill() {
    let dir = std::env::temp_dir().join(format!("hubcat-data-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let kills = env("EMULATOR_KILLS", 4);
    let mut seed = env("EMULATOR_KILL_SEED", 0x5eed) | 1;
    let mut acked = Vec::new();
    for round in 0..kills {
        // xorshift: a kill point between 500 and 5,500 acknowledged events.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = 500 + (seed % 5_000) as usize;
        let got = life(&dir, round, at).await;
        assert!(got.len() >= at);
        acked.extend(got);
    }

    // Read back in this process from the directory the killed ones left.
    let emulator = eventhubs_emulator::Emulator::builder()
        .data_dir(&dir)
        .start()
        .await
        .expect("the directory opens after the kills");
    let mut stored = HashSet::new();
    let mut total = 0;
    for p in 0..4 {
        let events = emulator.events("eh1", &p.to_string()).unwrap();
        let mut offset = 0;
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.sequence_number, i as i64, "partition {p}: no gap");
            assert_eq!(e.offset, offset, "partition {p}: offsets run on");
            offset += e.raw.len() as u64;
            stored.insert(String::from_utf8(e.body()).unwrap());
        }
        total += events.len();
    }
    let missing: Vec<_> = acked.iter().filter(|b| !stored.contains(*b)).collect();
    println!(
        "{kills} kills: {} events acknowledged, {total} stored, {} missing",
        acked.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged and lost: {:?}",
        &missing[..missing.len().min(10)]
    );
    emulator.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_a_data_dir_a_restart_serves_the_same_hubs_and_events() {
    let dir = std::env::temp_dir().join(format!("hubcat-data-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.to_str().expect("a UTF-8 path");
    let base = ["--bind", "127.0.0.1:0", "--no-health", "--data-dir", data];
    let first: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--hub", "orders:2", "--consumer-group", "orders:audit"])
        .collect();
    let (mut child, cs) = emulator_process(&first, Stdio::null());
    let (ok, _, err) = common::run(
        &["send", "--connection-string", &cs, "--hub", "orders"],
        None,
        "one\ntwo\nthree\n",
    );
    assert!(ok, "{err}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.wait().unwrap().success());

    // No --hub: the directory's hub, its group and its events.
    let (mut child, cs) = emulator_process(&base, Stdio::null());
    let (ok, out, err) = common::run(
        &[
            "tail",
            "--connection-string",
            &cs,
            "--hub",
            "orders",
            "--consumer-group",
            "audit",
        ],
        None,
        "",
    );
    assert!(ok, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    assert_eq!(got, ["one", "three", "two"]);
    let (ok, out, err) = common::run(
        &["info", "--connection-string", &cs, "--hub", "eh1"],
        None,
        "",
    );
    assert!(!ok, "no default hub beside the directory's: {out}");
    assert!(err.contains("eh1"), "{err}");
    // A second emulator on the directory is refused, saying why.
    let out = hubcat()
        .arg("emulator")
        .args(base)
        .output()
        .expect("run hubcat");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is in use by another emulator"), "{stderr}");
    let _ = child.kill();
    let _ = child.wait();

    // Fewer partitions than the directory holds are refused.
    let fewer: Vec<&str> = base.iter().copied().chain(["--hub", "orders:1"]).collect();
    let out = hubcat()
        .arg("emulator")
        .args(fewer)
        .output()
        .expect("run hubcat");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hub 'orders' has 2 partitions in the data directory"),
        "{stderr}"
    );
    // A file where the directory should be is named as such.
    let file = dir.join("hubs").join("orders").join("hub");
    let out = hubcat()
        .args(["emulator", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&file)
        .output()
        .expect("run hubcat");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a directory"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
