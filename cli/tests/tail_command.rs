//! `hubcat tail` and `hubcat info` as processes against `hubcat emulator`, with
//! events put in by `hubcat send`.

mod common;

use common::Emulator;

/// Runs hubcat with `args` against the emulator, `input` on stdin.
fn run(emulator: &Emulator, args: &[&str], input: &str) -> (bool, String, String) {
    common::run(args, Some(&emulator.connection_string), input)
}

#[test]
fn what_send_publishes_tail_prints_exactly() {
    let emulator = Emulator::start();
    let lines: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    let input = lines.join("\n") + "\n";
    let (ok, _, stderr) = run(
        &emulator,
        &["send", "--hub", "eh1", "--max-wait-ms", "5"],
        &input,
    );
    assert!(ok, "{stderr}");

    // All partitions: every line once (partitions interleave, so compare as sets).
    let (ok, stdout, stderr) = run(
        &emulator,
        &[
            "tail", "--hub", "eh1", "--from", "start", "--count", "500", "--format", "body",
        ],
        "",
    );
    assert!(ok, "{stderr}");
    let mut got: Vec<&str> = stdout.lines().collect();
    let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);

    // Without --count it stops at the end of what was there.
    let (ok, stdout, stderr) = run(&emulator, &["tail", "--hub", "eh1"], "");
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 500);
}

#[test]
fn one_partition_comes_back_in_order_from_where_it_is_asked() {
    let emulator = Emulator::start();
    let input: String = (0..50).map(|i| format!("e{i}\n")).collect();
    let (ok, _, stderr) = run(
        &emulator,
        &[
            "send",
            "--hub",
            "eh1",
            "--partition",
            "2",
            "--max-wait-ms",
            "5",
        ],
        &input,
    );
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = run(
        &emulator,
        &[
            "tail",
            "--hub",
            "eh1",
            "--partition",
            "2",
            "--from",
            "start",
        ],
        "",
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout, input);

    let (ok, stdout, stderr) = run(
        &emulator,
        &[
            "tail",
            "--hub",
            "eh1",
            "--partition",
            "2",
            "--from",
            "seq:45",
            "--format",
            "json",
        ],
        "",
    );
    assert!(ok, "{stderr}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 5);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["partition"], "2");
        assert_eq!(e["sequence_number"], 45 + i as i64);
        assert_eq!(e["body"], format!("e{}", 45 + i));
        assert!(e["enqueued_time"].as_str().unwrap().ends_with('Z'), "{e}");
        assert!(e["offset"].is_string(), "{e}");
    }

    // From the end without --follow there is nothing to wait for.
    let (ok, stdout, stderr) = run(&emulator, &["tail", "--hub", "eh1", "--from", "end"], "");
    assert!(ok && stdout.is_empty(), "{stdout}{stderr}");
}

#[test]
fn info_shows_the_hub_and_its_partitions() {
    let emulator = Emulator::start();
    let input: String = (0..7).map(|i| format!("x{i}\n")).collect();
    let (ok, _, stderr) = run(
        &emulator,
        &[
            "send",
            "--hub",
            "eh1",
            "--partition",
            "1",
            "--max-wait-ms",
            "5",
        ],
        &input,
    );
    assert!(ok, "{stderr}");

    let (ok, stdout, stderr) = run(&emulator, &["info", "--hub", "eh1"], "");
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("hub         eh1\n"), "{stdout}");
    assert!(stdout.contains("partitions  4\n"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("1 "))
        .expect("a row for partition 1");
    let cells: Vec<&str> = row.split_whitespace().collect();
    // partition, first seq, last seq, retained events, ...
    assert_eq!(&cells[..4], ["1", "0", "6", "7"], "{row}");

    let (ok, stdout, stderr) = run(&emulator, &["info", "--hub", "eh1", "--format", "json"], "");
    assert!(ok, "{stderr}");
    let info: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(info["name"], "eh1");
    assert_eq!(
        info["partition_ids"],
        serde_json::json!(["0", "1", "2", "3"])
    );
    assert_eq!(info["partitions"][1]["last_enqueued_sequence_number"], 6);
    assert_eq!(info["partitions"][0]["is_empty"], true);
}

#[test]
fn bad_input_fails_at_once_and_names_the_fix() {
    let emulator = Emulator::start();
    let (ok, _, stderr) = run(&emulator, &["tail", "--hub", "eh1", "--partition", "9"], "");
    assert!(!ok);
    assert!(stderr.contains("has no partition '9'"), "{stderr}");
    assert!(stderr.contains("0, 1, 2, 3"), "{stderr}");

    let (ok, _, stderr) = run(&emulator, &["info", "--hub", "nohub"], "");
    assert!(!ok);
    assert!(stderr.contains("no event hub named 'nohub'"), "{stderr}");
    assert!(stderr.contains("--hub"), "{stderr}");

    let (ok, _, stderr) = run(&emulator, &["info"], "");
    assert!(!ok);
    assert!(stderr.contains("--hub NAME"), "{stderr}");

    for (from, says) in [
        ("seq:-1", "not a sequence number"),
        ("time:yesterday", "RFC 3339"),
        ("middle", "start, end, seq:N"),
    ] {
        let (ok, _, stderr) = run(&emulator, &["tail", "--hub", "eh1", "--from", from], "");
        assert!(!ok);
        assert!(stderr.contains(says), "{from}: {stderr}");
    }
    let (ok, _, stderr) = run(&emulator, &["tail", "--hub", "eh1", "--count", "0"], "");
    assert!(!ok && stderr.contains("--count"), "{stderr}");
}
