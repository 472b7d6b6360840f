//! Starting the processes: building with cargo, one `hubcat emulator` per workload,
//! and each contender run against it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::run::Run;
use crate::workloads::{Contender, Workload};

pub(crate) fn cargo_build(root: &Path, args: &[&str]) -> Result<(), String> {
    let release = !cfg!(debug_assertions);
    let mut cmd = compare::cargo(root);
    cmd.arg("build").args(args);
    if release {
        cmd.arg("--release");
    }
    eprintln!("compare: {cmd:?}");
    let status = cmd.status().map_err(|e| format!("cargo: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("{cmd:?} failed: {status}"))
}

pub(crate) struct Emulator {
    pub(crate) child: Child,
    pub(crate) connection_string: String,
}

impl Emulator {
    pub(crate) fn start(hubcat: &Path, w: &Workload, log: &Path) -> Result<Emulator, String> {
        let mut cmd = Command::new(hubcat);
        cmd.args(["emulator", "--bind", "127.0.0.1:0"]);
        for c in &w.contenders {
            cmd.args(["--hub", &format!("{}:{}", c.hub(), w.partitions)]);
            if let Some(fault) = c.faults() {
                cmd.args(["--fault", &fault]);
            }
        }
        // Bounded storage: three rounds of a million events stay well within memory.
        cmd.args(["--retention-bytes", &(16u64 << 20).to_string()]);
        let log = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", hubcat.display()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("reading the emulator's stdout: {e}"))?;
        if line.trim().is_empty() {
            let _ = child.kill();
            return Err("the emulator printed no connection string".into());
        }
        Ok(Emulator {
            child,
            connection_string: line.trim().to_string(),
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn run_contender(
    dir: &Path,
    c: Contender,
    w: &Workload,
    connection_string: &str,
    deadline: Duration,
    log: &Path,
) -> Result<Run, String> {
    let mut cmd = Command::new(dir.join(c.binary()));
    cmd.args(["--connection-string", connection_string])
        .args(["--hub", c.hub()])
        .args(["--events", &w.events.to_string()])
        .args(["--size", &w.size.to_string()])
        .args(["--partitions", &w.partitions.to_string()])
        .args(["--pending", &w.pending.to_string()])
        .args(["--max-wait-ms", &w.max_wait_ms.to_string()])
        .args(["--rate", &w.rate.to_string()])
        .args(["--deadline-secs", &deadline.as_secs().to_string()]);
    if w.keyed {
        cmd.arg("--keyed");
    }
    if let Some(policy) = c.spool() {
        cmd.args(["--spool", policy]);
    }
    cmd.args(c.flags());
    if let (Contender::Ceiling, Some(n)) = (c, w.ceiling_batch) {
        cmd.args(["--batch-events", &n.to_string()]);
    }
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("{}: {e}", c.binary()))?;
    let mut stdout = String::new();
    // The contender ends itself at its deadline; the read ends when it exits.
    let _ = child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout);
    let status = child.wait().map_err(|e| e.to_string())?;
    let run = stdout.lines().find_map(Run::parse).map(|run| Run {
        paced: w.rate > 0,
        ..run
    });
    run.ok_or_else(|| {
        format!(
            "{} exited with {status} and no RESULT line (see {})",
            c.binary(),
            log.display()
        )
    })
}
