//! `hubcat send` as a process against `hubcat emulator`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

fn hubcat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hubcat"))
}

struct Emulator {
    child: Child,
    connection_string: String,
}

impl Emulator {
    fn start() -> Self {
        let mut child = hubcat()
            .args(["emulator", "--bind", "127.0.0.1:0", "--hub", "eh1:4"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn emulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Self {
            child,
            connection_string: line.trim().to_owned(),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send(args: &[&str], env_cs: Option<&str>, input: &str) -> (bool, String) {
    let mut cmd = hubcat();
    cmd.arg("send").args(args);
    if let Some(cs) = env_cs {
        cmd.env("EVENTHUBS_CONNECTION_STRING", cs);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn send");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
        &input,
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("events sent      1000"), "{stderr}");
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
fn an_unknown_partition_fails_every_event() {
    let emulator = Emulator::start();
    let (ok, stderr) = send(
        &["--hub", "eh1", "--partition", "9"],
        Some(&emulator.connection_string),
        "a\nb\n",
    );
    assert!(!ok);
    assert!(stderr.contains("failures         2"), "{stderr}");
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
