//! What a new user sees on a careless first try: errors in hubcat's own words, naming
//! the flag or the variable to fix.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{hubcat, Emulator};

/// A connection string nothing listens on: whatever uses it fails to connect.
const DEAD: &str =
    "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true";
const ENV: &str = "EVENTHUBS_CONNECTION_STRING";

/// Runs hubcat with `args`; returns success and stdout followed by stderr.
fn run(args: &[&str], env_cs: Option<&str>) -> (bool, String) {
    let (ok, stdout, stderr) = common::run(args, env_cs, "x\n");
    (ok, stdout + &stderr)
}

#[test]
fn send_without_a_connection_string_names_the_variable_and_the_emulator() {
    let (ok, out) = run(&["send", "--hub", "eh1"], None);
    assert!(!ok);
    assert!(out.contains("no connection string"), "{out}");
    assert!(out.contains("--connection-string"), "{out}");
    assert!(out.contains(ENV), "{out}");
    assert!(out.contains("hubcat emulator"), "{out}");
}

#[test]
fn an_error_says_when_the_connection_string_came_from_the_environment() {
    let emulator = Emulator::start();
    let cs = emulator.connection_string.as_str();
    for command in ["send", "tail", "info"] {
        let (ok, out) = run(&[command], Some(cs));
        assert!(!ok, "{command}: {out}");
        assert!(out.contains("no event hub named"), "{command}: {out}");
        assert!(out.contains("--hub NAME"), "{command}: {out}");
        assert!(!out.contains("ProducerBuilder"), "{command}: {out}");
        assert!(
            out.contains("the connection string came from EVENTHUBS_CONNECTION_STRING"),
            "{command}: {out}"
        );
        // Typed on the command line, it needs no such note.
        let (ok, out) = run(&[command, "--connection-string", cs], None);
        assert!(!ok, "{command}: {out}");
        assert!(!out.contains(ENV), "{command}: {out}");
    }
}

#[test]
fn an_exported_connection_string_does_not_take_the_demo_over() {
    let (ok, out) = run(&["demo", "--count", "10"], Some(DEAD));
    assert!(ok, "{out}");
    assert!(out.contains("events published      10 of 10"), "{out}");
    assert!(out.contains("running on an embedded emulator"), "{out}");
    // --hub names a hub of --connection-string: alone, it is refused, not ignored.
    let (ok, out) = run(&["demo", "--count", "10", "--hub", "eh1"], None);
    assert!(!ok, "{out}");
    assert!(
        out.contains("--hub eh1 names a hub of --connection-string"),
        "{out}"
    );
    // Flags for the embedded emulator are refused with a real hub, not ignored.
    for flag in [&["--fault", "throttle"][..], &["--partitions", "8"][..]] {
        let mut args = vec!["demo", "--connection-string", DEAD];
        args.extend_from_slice(flag);
        let (ok, out) = run(&args, None);
        assert!(!ok, "{out}");
        assert!(out.contains("cannot be used with"), "{flag:?}: {out}");
    }
}

#[test]
fn demo_flags_are_refused_in_the_flags_own_words() {
    for (args, says) in [
        (&["--count", "0"][..], "--count must be positive"),
        (&["--size", "0"][..], "--size must be positive"),
        (
            &["--max-pending", "0"][..],
            "--max-pending must be positive",
        ),
        (&["--partitions", "0"][..], "--partitions"),
        (&["--partitions", "2000"][..], "1..=1024"),
        // As in `hubcat send`: no --rate is no limit, and 0 is no rate.
        (&["--rate", "0"][..], "not a rate"),
    ] {
        let mut all = vec!["demo", "--quiet"];
        all.extend_from_slice(args);
        let (ok, out) = run(&all, None);
        assert!(!ok, "{args:?}");
        assert!(out.contains(says), "{args:?}: {out}");
        assert!(!out.contains("'demo'"), "a hub the user never named: {out}");
    }
    let (ok, out) = run(&["send", "--hub", "eh1", "--rate", "0"], Some(DEAD));
    assert!(!ok);
    assert!(out.contains("not a rate"), "{out}");
}

#[test]
fn a_delivery_timeout_within_max_wait_is_refused_in_the_flags_names() {
    let (ok, out) = run(
        &["send", "--hub", "eh1", "--delivery-timeout", "10ms"],
        Some(DEAD),
    );
    assert!(!ok);
    assert!(
        out.contains("--delivery-timeout (10ms) must be longer than --max-wait-ms (250ms)"),
        "{out}"
    );
    assert!(!out.contains("delivery_timeout"), "{out}");
}

#[test]
fn an_event_too_large_for_a_batch_counts_as_too_long_in_one_message_style() {
    let emulator = Emulator::start();
    // Under --max-line-bytes, over a batch's 1 MiB: the producer refuses it.
    let input = format!("small\n{}\n", "x".repeat(1_500_000));
    let (ok, _, stderr) = common::run(
        &["send", "--hub", "eh1", "--max-line-bytes", "2000000"],
        Some(&emulator.connection_string),
        input,
    );
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("events sent      1\n"), "{stderr}");
    assert!(
        stderr.contains("failures         1 (0 unparsable, 1 too long)"),
        "{stderr}"
    );
    assert!(stderr.contains("counted as too long"), "{stderr}");
    // Every line of hubcat's own is `hubcat send: ...`, none a log line.
    assert!(!stderr.contains("WARN"), "{stderr}");
}

#[test]
fn a_missing_consumer_group_is_named() {
    let emulator = Emulator::start();
    let cs = emulator.connection_string.as_str();
    let (ok, out) = run(&["send", "--hub", "eh1", "--max-wait-ms", "5"], Some(cs));
    assert!(ok, "{out}");
    let (ok, out) = run(
        &["tail", "--hub", "eh1", "--consumer-group", "nope"],
        Some(cs),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("the hub 'eh1' has no consumer group 'nope'"),
        "{out}"
    );
    assert!(out.contains("--consumer-group"), "{out}");
    assert!(!out.contains("RemoteClosedWithError"), "{out}");
}

#[test]
fn the_emulator_binds_a_host_name_and_says_what_form_it_expects() {
    let mut child = hubcat()
        .args(["emulator", "--bind", "localhost:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("Endpoint=sb://127.0.0.1:"), "{line}");
    let (ok, out) = run(&["emulator", "--bind", "localhost"], None);
    assert!(!ok);
    assert!(out.contains("expected HOST:PORT"), "{out}");
}

#[test]
fn a_small_keyless_demo_explains_its_empty_partitions() {
    let (ok, out) = run(&["demo", "--quiet", "--count", "100"], None);
    assert!(ok, "{out}");
    assert!(
        out.contains("keyless events go to one partition at a time"),
        "{out}"
    );
    assert!(out.contains("25,000 events here"), "{out}");
    // Keyed events spread: nothing to explain.
    let (ok, out) = run(&["demo", "--quiet", "--count", "100", "--keys", "50"], None);
    assert!(ok, "{out}");
    assert!(!out.contains("keyless events"), "{out}");
}
