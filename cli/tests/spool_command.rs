//! `hubcat send --spool` as a process: a disk that fills up, and the flags' checks.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::hubcat;
use eventhubs_emulator::Emulator;

fn json(stdout: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .expect("a summary");
    serde_json::from_str(line).unwrap()
}

/// Runs `hubcat send` under bash with the largest file it may write capped at
/// `max_file_kib` (as a full disk would stop it: writes past it fail with EFBIG).
fn send_capped(
    cs: &str,
    dir: &std::path::Path,
    max_file_kib: u32,
    input: &str,
) -> (bool, String, String) {
    let hubcat = hubcat();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {max_file_kib}; exec \"$0\" \"$@\""
        ))
        .arg(hubcat.get_program())
        .args([
            "send",
            "--connection-string",
            cs,
            "--idempotent",
            "--summary",
            "json",
        ])
        .args(["--max-wait-ms", "5", "--spool"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_full_disk_is_a_clear_error_and_loses_nothing_accepted() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let emulator = runtime
        .block_on(Emulator::builder().hub("eh1", 2).start())
        .unwrap();
    let cs = emulator.connection_string_for("eh1");
    let dir = std::env::temp_dir().join(format!("hubcat-spool-full-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let input: String = (0..5000).map(|i| format!("{i:0>100}\n")).collect();
    let (ok, stdout, stderr) = send_capped(&cs, &dir, 96, &input);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("spool: cannot write the spool in") && stderr.contains("File too large"),
        "{stderr}"
    );
    let summary = json(&stdout);
    let stored = |e: &eventhubs_emulator::EmulatorHandle| {
        ["0", "1"]
            .iter()
            .map(|p| e.events("eh1", p).unwrap().len() as u64)
            .sum::<u64>()
    };
    let sent = summary["events_sent"].as_u64().unwrap();
    // Every event accepted before the disk filled up was published; the one refused
    // stopped the reading.
    assert!(sent > 100 && sent < 5000, "{summary}");
    assert_eq!(
        summary["events_read"].as_u64().unwrap(),
        sent + 1,
        "{summary}"
    );
    assert_eq!(stored(&emulator), sent);

    // The full disk kept the run from recording its outcomes, but once every event
    // had one its close deleted the spool's segments (which needs no room): the next
    // run finds nothing to publish again.
    let (ok, stdout, stderr) = send_capped(&cs, &dir, 1 << 20, "");
    assert!(ok, "{stderr}");
    let summary = json(&stdout);
    assert_eq!(summary["recovered_sent"].as_u64(), Some(0), "{summary}");
    assert_eq!(stored(&emulator), sent, "nothing stored twice");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn spool_flags_are_checked_before_anything_connects() {
    let cases: [(&[&str], &str); 3] = [
        (&["--spool-sync", "100ms"], "--spool <DIR>"),
        (
            &["--spool", "/tmp/x", "--spool-sync", "always"],
            "not a spool sync policy",
        ),
        (&["--print-durable"], "--spool <DIR>"),
    ];
    for (args, expected) in cases {
        let out = hubcat()
            .args(["send", "--connection-string", "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=eh1;UseDevelopmentEmulator=true"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success());
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
