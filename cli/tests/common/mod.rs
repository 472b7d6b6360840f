//! What the process tests share: the hubcat binary and an emulator process.
#![allow(dead_code)] // each test file uses a part of it

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub(crate) fn hubcat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hubcat"))
}

pub(crate) struct Emulator {
    child: Child,
    pub(crate) connection_string: String,
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
