//! `hubcat send` as a process against `hubcat emulator`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{hubcat, Emulator};

fn send(args: &[&str], env_cs: Option<&str>, input: impl AsRef<[u8]>) -> (bool, String) {
    let args: Vec<&str> = ["send"].iter().chain(args).copied().collect();
    let (ok, _stdout, stderr) = common::run(&args, env_cs, input);
    (ok, stderr)
}

#[test]
fn every_line_is_sent_and_summarised() {
    let emulator = Emulator::start();
    let input: String = (0..1000)
        .map(|i| format!("{{\"id\":\"k{}\",\"n\":{i}}}\n", i % 7))
        .collect();
    let (ok, stderr) = send(
        &["--hub", "eh1", "--key-field", "id", "--max-wait-ms", "5"],
        Some(&emulator.connection_string),
        input,
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("events sent      1,000"), "{stderr}");
    assert!(stderr.contains("elapsed "), "{stderr}");
    // stderr is a pipe here: plain text, no escape codes.
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    assert!(stderr.contains("failures         0"), "{stderr}");
    assert!(stderr.contains("mean batch fill"), "{stderr}");
}

#[test]
fn bad_lines_fail_the_run_and_land_in_the_failed_file() {
    let emulator = Emulator::start();
    let dir = std::env::temp_dir().join(format!("hubcat-send-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let failed = dir.join("failed.txt");
    let (ok, stderr) = send(
        &[
            "--connection-string",
            &emulator.connection_string,
            "--hub",
            "eh1",
            "--key-field",
            "id",
            "--failed-out",
            failed.to_str().unwrap(),
        ],
        None,
        "{\"id\":\"a\"}\nnot json\n{\"other\":1}\n{\"id\":\"b\"}\n",
    );
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("events sent      2"), "{stderr}");
    assert!(stderr.contains("failures         2"), "{stderr}");
    let written = std::fs::read_to_string(&failed).unwrap();
    assert_eq!(written, "not json\n{\"other\":1}\n");
}

#[test]
fn an_unknown_partition_fails_once_at_the_start() {
    let emulator = Emulator::start();
    let (ok, stderr) = send(
        &["--hub", "eh1", "--partition", "9"],
        Some(&emulator.connection_string),
        "a\nb\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("the hub has no partition '9' (its partitions: 0, 1, 2, 3)"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("partition '9'").count(), 1, "{stderr}");
    assert!(!stderr.contains("summary"), "nothing was read: {stderr}");
}

#[test]
fn flags_that_mean_nothing_are_refused_before_connecting() {
    for (flags, says) in [
        (&["--max-pending", "0"][..], "--max-pending"),
        (&["--rate", "0"][..], "not a rate"),
        (&["--try-timeout", "0s"][..], "more than zero"),
        (&["--delivery-timeout", "0"][..], "more than zero"),
        (&["--delimiter", "ab"][..], "not one character"),
        (&["-H", "novalue"][..], "not name=value"),
        (
            &["--key", "k", "--key-field", "id"][..],
            "cannot be used with",
        ),
        (&["no-such-file.txt"][..], "cannot read no-such-file.txt"),
    ] {
        // A connection string nothing listens on: a refusal must come first.
        let mut args = vec!["--hub", "eh1"];
        args.extend_from_slice(flags);
        let cs = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true";
        let (ok, stderr) = send(&args, Some(cs), "x\n");
        assert!(!ok, "{flags:?}");
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
    }
}

/// Runs `hubcat tail --format json` over the emulator's whole hub.
fn tail_json(cs: &str) -> Vec<serde_json::Value> {
    let out = hubcat()
        .args(["tail", "--hub", "eh1", "--format", "json"])
        .env("EVENTHUBS_CONNECTION_STRING", cs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn files_delimiters_keys_headers_and_content_types_reach_the_hub() {
    let emulator = Emulator::start();
    let dir = std::env::temp_dir().join(format!("hubcat-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.txt"), dir.join("b.txt"));
    std::fs::write(&a, "k1\tfirst\0k2\tsecond\0").unwrap();
    std::fs::write(&b, "k1\tthird").unwrap();
    let (ok, stderr) = send(
        &[
            "--hub",
            "eh1",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--delimiter",
            "\\0",
            "--key-delimiter",
            "\\t",
            "-H",
            "source=test",
            "--content-type",
            "text/plain",
            "--max-wait-ms",
            "5",
        ],
        Some(&emulator.connection_string),
        "",
    );
    assert!(ok, "{stderr}");
    let mut events = tail_json(&emulator.connection_string);
    events.sort_by_key(|e| e["body"].as_str().unwrap().to_owned());
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["partition_key"].as_str().unwrap(),
                e["body"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("k1", "first"), ("k2", "second"), ("k1", "third")]);
    for e in &events {
        assert_eq!(e["properties"]["source"], "test", "{e}");
        assert_eq!(e["content_type"], "text/plain", "{e}");
    }
    // One key, one partition: k1's two events sit together.
    assert_eq!(events[0]["partition"], events[2]["partition"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_quiet_run_says_nothing_and_a_json_summary_goes_to_stdout() {
    let emulator = Emulator::start();
    let input: String = (0..20)
        .map(|i| format!("{{\"user\":{{\"id\":\"u{}\"}}}}\n", i % 3))
        .collect();
    let mut child = hubcat()
        .args([
            "send",
            "--hub",
            "eh1",
            "--key-field",
            "user.id",
            "--quiet",
            "--summary",
            "json",
        ])
        .args([
            "--idempotent",
            "--retries",
            "2",
            "--try-timeout",
            "10s",
            "--rate",
            "1000",
        ])
        .env("EVENTHUBS_CONNECTION_STRING", &emulator.connection_string)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "quiet: {stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["events_sent"], 20);
    assert_eq!(summary["events_failed"], 0);
    // 20 events at 1000/s take at least 19 ms.
    assert!(
        summary["elapsed_seconds"].as_f64().unwrap() >= 0.019,
        "{summary}"
    );
    let keys: std::collections::BTreeSet<String> = tail_json(&emulator.connection_string)
        .iter()
        .map(|e| e["partition_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["u0", "u1", "u2"]);
}

#[test]
fn a_bad_connection_string_is_reported() {
    let (ok, stderr) = send(
        &["--connection-string", "Endpoint=oops", "--hub", "eh1"],
        None,
        "x\n",
    );
    assert!(!ok);
    assert!(stderr.contains("invalid connection string"), "{stderr}");
}

#[test]
fn lines_that_are_not_utf8_are_published_as_bytes_or_refused_with_strict_utf8() {
    let emulator = Emulator::start();
    let mut input = Vec::new();
    for i in 0..1000 {
        if i == 500 {
            input.extend_from_slice(b"caf\xe9 \xff\xfe\n");
        } else {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
        }
    }
    let cs = emulator.connection_string.as_str();
    let (ok, stderr) = send(&["--hub", "eh1"], Some(cs), &input);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("events sent      1,000"), "{stderr}");
    assert!(stderr.contains("elapsed "), "{stderr}");

    let failed = std::env::temp_dir().join(format!("hubcat-strict-{}.txt", std::process::id()));
    let args = [
        "--hub",
        "eh1",
        "--strict-utf8",
        "--failed-out",
        failed.to_str().unwrap(),
    ];
    let (ok, stderr) = send(&args, Some(cs), &input);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("events sent      999"), "{stderr}");
    assert!(
        stderr.contains("failures         1 (1 unparsable"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&failed).unwrap(), b"caf\xe9 \xff\xfe\n");
    let _ = std::fs::remove_file(failed);
}

#[test]
fn a_line_over_the_limit_fails_the_run_without_dropping_the_others() {
    let emulator = Emulator::start();
    let input = format!("short\n{}\nalso short\n", "x".repeat(1000));
    let args = ["--hub", "eh1", "--max-line-bytes", "100"];
    let (ok, stderr) = send(&args, Some(&emulator.connection_string), input);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("line 2 has 1000 bytes, more than --max-line-bytes 100"),
        "{stderr}"
    );
    assert!(stderr.contains("events sent      2"), "{stderr}");
    assert!(stderr.contains("1 too long"), "{stderr}");
}

#[test]
fn sigterm_stops_reading_publishes_what_was_read_and_prints_the_summary() {
    let emulator = Emulator::start();
    let mut child = hubcat()
        .args([
            "send",
            "--hub",
            "eh1",
            "--connection-string",
            &emulator.connection_string,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn send");
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // Ready: connected, signal handlers in place, reading.
    while !seen.contains("connected; reading stdin") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "ended early: {seen}"
        );
        seen.push_str(&line);
    }
    for i in 0..10 {
        writeln!(stdin, "event {i}").unwrap();
    }
    stdin.flush().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let exit = child.wait().unwrap();
    drop(stdin);
    let read: u64 = rest
        .split("stopped reading after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stop message: {rest}"));
    assert!(rest.contains("SIGTERM"), "{rest}");
    assert!(
        rest.contains(&format!("events sent      {read}\n")),
        "{rest}"
    );
    assert!(rest.contains("failures         0"), "{rest}");
    assert!(
        exit.success(),
        "everything read was published: {exit:?}\n{rest}"
    );
}

#[test]
fn events_that_cannot_be_published_fail_at_the_delivery_timeout() {
    // Every transfer goes unanswered: only the delivery timeout ends the run.
    let emulator = Emulator::start_with(&["--fault", "stall"]);
    let cs = format!("{};EntityPath=eh1", emulator.connection_string);
    let lines: String = (0..200).map(|i| format!("line {i}\n")).collect();
    let started = std::time::Instant::now();
    let (ok, stderr) = send(
        &["--delivery-timeout", "2s", "--max-wait-ms", "10"],
        Some(&cs),
        lines,
    );
    let elapsed = started.elapsed();
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("failures         200"), "{stderr}");
    assert!(stderr.contains("delivery timeout"), "{stderr}");
    // Two seconds of waiting, plus start-up and the connection's close.
    assert!(elapsed < std::time::Duration::from_secs(15), "{elapsed:?}");
    let (ok, stderr) = send(&["--delivery-timeout", "5ms"], Some(&cs), "x\n");
    assert!(!ok);
    assert!(
        stderr.contains("--delivery-timeout (5ms) must be longer than --max-wait-ms"),
        "{stderr}"
    );
    let (ok, stderr) = send(&["--delivery-timeout", "soon"], Some(&cs), "x\n");
    assert!(!ok);
    assert!(stderr.contains("soon"), "{stderr}");
}

#[test]
fn stats_are_written_as_json_lines_every_second_and_at_the_end() {
    let emulator = Emulator::start();
    let dir = std::env::temp_dir().join(format!("hubcat-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("stats.jsonl");
    let input: String = (0..300).map(|i| format!("{i}\n")).collect();
    // 300 events at 200 a second: a run of about a second and a half.
    let (ok, stderr) = send(
        &[
            "--hub",
            "eh1",
            "--rate",
            "200",
            "--max-wait-ms",
            "5",
            "--stats",
            file.to_str().unwrap(),
        ],
        Some(&emulator.connection_string),
        input,
    );
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.len() >= 2, "{text}");
    let last = lines.last().unwrap();
    assert_eq!(last["total"]["events_published"], 300, "{last}");
    assert_eq!(last["total"]["pending_events"], 0, "{last}");
    assert!(last["total"]["send_latency"]["count"].as_u64().unwrap() > 0);
    let partitions = last["partitions"].as_array().unwrap();
    let per_partition: u64 = partitions
        .iter()
        .map(|p| p["stats"]["events_published"].as_u64().unwrap())
        .sum();
    assert_eq!(per_partition, 300);
    assert!(partitions.iter().all(|p| p["available"] == true));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stats_file_that_cannot_be_created_stops_the_run_before_it_connects() {
    let (ok, stderr) = send(
        &["--hub", "eh1", "--stats", "/nonexistent-dir/stats.jsonl"],
        Some("Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=k;SharedAccessKey=v"),
        "x\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("cannot create the --stats file /nonexistent-dir/stats.jsonl"),
        "{stderr}"
    );
}
