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

/// Starts `hubcat emulator` with `args` (stdout piped, stderr as asked) and reads its
/// first stdout line, the plain listener's connection string.
pub(crate) fn emulator_process(args: &[&str], stderr: Stdio) -> (std::process::Child, String) {
    let mut child = hubcat()
        .arg("emulator")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn hubcat");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the connection string");
    (child, line.trim().to_owned())
}

/// An HTTP/1.1 GET of `path` from `addr`: the status line and the body.
pub(crate) fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the probe listens");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}
