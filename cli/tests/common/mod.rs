//! What the process tests share: the hubcat binary and an emulator process.
#![allow(dead_code)] // each test file uses a part of it

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

pub(crate) fn hubcat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hubcat"))
}

pub(crate) struct Emulator {
    child: Child,
    pub(crate) connection_string: String,
    /// With `--tls-bind`: the second line, the TLS listener's connection string.
    pub(crate) tls_connection_string: Option<String>,
    /// The lines after the first: one for each of `--tls-bind`, `--ws-bind` and
    /// `--wss-bind` given, in that order.
    pub(crate) further: Vec<String>,
}

impl Emulator {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    pub(crate) fn start_with(extra: &[&str]) -> Self {
        let mut child = hubcat()
            .args(["emulator", "--bind", "127.0.0.1:0", "--hub", "eh1:4"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn emulator");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let listeners = ["--tls-bind", "--ws-bind", "--wss-bind"];
        let further: Vec<String> = listeners
            .iter()
            .filter(|flag| extra.contains(flag))
            .map(|_| {
                let mut next = String::new();
                stdout.read_line(&mut next).unwrap();
                next.trim().to_owned()
            })
            .collect();
        let tls_connection_string = extra.contains(&"--tls-bind").then(|| further[0].clone());
        Self {
            child,
            connection_string: line.trim().to_owned(),
            tls_connection_string,
            further,
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs hubcat with `args`, `input` on stdin and, if given, `connection_string` in
/// `EVENTHUBS_CONNECTION_STRING`; returns success, stdout and stderr.
pub(crate) fn run(
    args: &[&str],
    connection_string: Option<&str>,
    input: impl AsRef<[u8]>,
) -> (bool, String, String) {
    let mut cmd = hubcat();
    cmd.args(args);
    // Without one, none: the developer's own exported value must not leak in.
    match connection_string {
        Some(cs) => cmd.env("EVENTHUBS_CONNECTION_STRING", cs),
        None => cmd.env_remove("EVENTHUBS_CONNECTION_STRING"),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hubcat");
    // A run that refuses its flags may exit before it reads stdin: a broken pipe here
    // is its business, and its stderr says why.
    let _ = child.stdin.take().unwrap().write_all(input.as_ref());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
