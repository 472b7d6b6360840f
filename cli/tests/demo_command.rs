//! `hubcat demo`: the main job, end to end, with its read-back check.

use std::process::Command;

fn demo(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hubcat"))
        .arg("demo")
        .arg("--quiet")
        .args(args)
        .env_remove("EVENTHUBS_CONNECTION_STRING")
        .output()
        .expect("run hubcat demo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_demo_publishes_everything_and_reads_the_same_count_back() {
    let (ok, out) = demo(&["--count", "20000", "--keys", "50", "--partitions", "3"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("events published      20,000 of 20,000"),
        "{out}"
    );
    assert!(
        out.contains("read back             20,000 stored, equal"),
        "{out}"
    );
    assert!(out.contains("latency p50 / p99"), "{out}");
    assert!(out.contains("elapsed "), "{out}");
    assert_eq!(out.matches("    partition ").count(), 3, "{out}");
}

#[test]
fn large_events_get_a_byte_bound_and_say_so() {
    // 100,000 pending events of 100 kB would be 9.5 GiB: the bound in bytes caps it.
    let out = Command::new(env!("CARGO_BIN_EXE_hubcat"))
        .args([
            "demo",
            "--count",
            "60",
            "--size",
            "100000",
            "--max-wait-ms",
            "5",
        ])
        .env_remove("EVENTHUBS_CONNECTION_STRING")
        .output()
        .expect("run hubcat demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("capped at 256 MiB (about 2,684 events)"),
        "{stderr}"
    );
    // Not a terminal: plain progress, no escape codes.
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
}

#[test]
fn throttling_faults_are_absorbed_by_retries() {
    // Three throttles in all: with the default three retries no batch can run out of
    // tries. Unbounded, every third transfer on a hub with four busy partitions can
    // throttle one batch four times running, which the retry policy then reports as
    // a failure, as it should; whether the test passed would then be up to timing.
    let (ok, out) = demo(&[
        "--count",
        "5000",
        "--fault",
        "throttle,every=3,count=3",
        "--max-wait-ms",
        "5",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("failures              0"), "{out}");
    assert!(
        out.contains("read back             5,000 stored, equal"),
        "{out}"
    );
}

#[test]
fn idempotent_publishing_stores_each_event_once_despite_lost_acknowledgements() {
    // Every 4th transfer is stored and then the connection drops before the
    // acknowledgement, so every such batch is retried.
    let args = [
        "--count",
        "2000",
        "--max-pending",
        "250",
        "--fault",
        "drop-connection,every=4",
    ];
    let (ok, out) = demo(&[&args[..], &["--idempotent"]].concat());
    assert!(ok, "{out}");
    assert!(out.contains("publishing            idempotent"), "{out}");
    assert!(out.contains("failures              0"), "{out}");
    assert!(
        out.contains("read back             2,000 stored, equal"),
        "{out}"
    );
    // The same run without idempotence stores the retried batches twice, and the
    // demo says so and fails.
    let (ok, out) = demo(&args);
    assert!(!ok, "{out}");
    assert!(out.contains("NOT equal to what was published"), "{out}");
}

#[test]
fn bad_arguments_are_refused() {
    let (ok, out) = demo(&["--count", "0"]);
    assert!(!ok);
    assert!(out.contains("must be positive"), "{out}");
    let (ok, out) = demo(&["--max-pending", "0"]);
    assert!(!ok);
    assert!(out.contains("must be positive"), "{out}");
    let (ok, out) = demo(&["--fault", "nonsense"]);
    assert!(!ok);
    assert!(out.contains("unknown kind"), "{out}");
}
