//! `hubcat send --stats FILE`: the producer's statistics snapshot as a JSON line every
//! second, and a last one once everything is published.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use streaming_producer::Producer;

/// How often a snapshot is written.
const EVERY: Duration = Duration::from_secs(1);

/// The file the snapshots go to, created before anything connects.
#[derive(Debug)]
pub(crate) struct StatsFile {
    file: std::fs::File,
    path: PathBuf,
}

impl StatsFile {
    pub(crate) fn create(path: &Path) -> Result<Self, String> {
        std::fs::File::create(path)
            .map(|file| Self {
                file,
                path: path.to_owned(),
            })
            .map_err(|e| format!("cannot create the --stats file {}: {e}", path.display()))
    }

    /// Writes one snapshot as a line; says so once on stderr if the file cannot be
    /// written, and returns whether it could.
    fn write(&mut self, producer: &Producer) -> bool {
        let mut line = match serde_json::to_vec(&producer.stats()) {
            Ok(line) => line,
            Err(e) => {
                eprintln!("hubcat send: the statistics do not serialize: {e}");
                return false;
            }
        };
        line.push(b'\n');
        match self.file.write_all(&line) {
            Ok(()) => true,
            Err(e) => {
                eprintln!(
                    "hubcat send: writing the --stats file {} failed: {e}; no more statistics",
                    self.path.display()
                );
                false
            }
        }
    }
}

/// The task writing a snapshot every second.
#[derive(Debug)]
pub(crate) struct StatsWriter {
    task: tokio::task::JoinHandle<Option<StatsFile>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl StatsWriter {
    pub(crate) fn start(producer: Producer, mut file: StatsFile) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return Some(file),
                    _ = ticks.tick() => {
                        if !file.write(&producer) {
                            return None;
                        }
                    }
                }
            }
        });
        Self { task, stop }
    }

    /// Stops the ticks and writes the last snapshot (after the producer closed).
    pub(crate) async fn finish(self, producer: &Producer) {
        let _ = self.stop.send(());
        if let Ok(Some(mut file)) = self.task.await {
            file.write(producer);
        }
    }
}
