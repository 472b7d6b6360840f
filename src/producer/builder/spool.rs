//! Store and forward: the spool's options, and opening it as the producer is built.

use std::path::PathBuf;

use super::ProducerBuilder;
use crate::spool::{Durability, Recovered, Spool, SpoolOptions, DEFAULT_MAX_SPOOL_BYTES};
use crate::Error;

/// The smallest spool: room for a few segments of a few records.
const MIN_SPOOL_BYTES: u64 = 64 << 10;

/// The spool's options, and the spool once opened by `build`.
#[derive(Debug, Default)]
pub(super) struct SpoolSettings {
    dir: Option<PathBuf>,
    durability: Durability,
    max_bytes: Option<u64>,
    /// Opened by `build`, taken by the producer it starts.
    pub(super) opened: Option<Spool>,
    /// How many events the spool held when it was opened.
    pub(super) recovered_events: usize,
    /// Whether they were encoded for idempotent publishing.
    pub(super) recovered_idempotent: bool,
}

impl ProducerBuilder {
    /// Store and forward: every accepted event is appended to a log in `dir` (created
    /// if needed) before it joins its batch, and dropped from the log once its outcome
    /// is final. Events that have no outcome when the process dies (killed, out of
    /// memory, a power cut: see [`Durability`] for which of those a policy survives)
    /// are published by the next producer built on the same directory, before any of
    /// its own events on their partitions; their outcomes come out of its
    /// [`Outcomes`](crate::Outcomes) marked
    /// [`recovered`](crate::BatchOutcome::recovered).
    ///
    /// - Accepting an event never waits for the disk: a writer thread writes and
    ///   syncs the log. [`Producer::wait_durable`](crate::Producer::wait_durable) waits
    ///   until what was accepted before it is durable.
    /// - With [`idempotent_retries`](Self::idempotent_retries), each partition's
    ///   producer group, owner level and sequence numbers are logged with the events:
    ///   the next producer resumes the group, asks the service how far it got, reports
    ///   what it had stored as succeeded, and sends the rest again under the same
    ///   numbers, so that nothing is stored twice across the crash. Without it,
    ///   delivery across a crash is at least once: a batch that was stored but whose
    ///   outcome was not yet final is sent again.
    /// - An outage is ridden out on disk: an event that finds the pending bound in
    ///   memory ([`max_pending_events`](Self::max_pending_events),
    ///   [`max_pending_bytes`](Self::max_pending_bytes)) full for 50 ms (under
    ///   ordinary load room comes back sooner) is still accepted, into the spool only, and read back into memory in its turn as room frees (each
    ///   partition's events keep their order). Accepting waits only once the spool
    ///   holds [`max_spool_bytes`](Self::max_spool_bytes). A restart's events come back
    ///   the same way, within the memory bound.
    /// - One producer at a time: a second producer on the directory fails to build
    ///   with [`Error::is_spool`]. So do a damaged log (the error names the file and
    ///   offset; a write cut short by a crash at its end is cut off instead) and a log
    ///   that holds events for another hub or broker.
    /// - A recovered event's delivery timeout counts from the restart.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emulator = eventhubs_emulator::Emulator::builder().hub("eh1", 4).start().await?;
    /// # let dir = std::env::temp_dir().join(format!("spool-doc-{}", std::process::id()));
    /// use streaming_producer::{Durability, EventData, Producer};
    ///
    /// let (mut producer, _outcomes) = Producer::builder()
    ///     .connection_string(&emulator.connection_string_for("eh1"))
    ///     .idempotent_retries(true)
    ///     .spool(&dir)
    ///     .spool_durability(Durability::Group)
    ///     .build()
    ///     .await?;
    /// producer.enqueue(EventData::new("order 17 paid").with_partition_key("order-17")).await?;
    /// // On disk now: a crash from here on does not lose it.
    /// producer.wait_durable().await?;
    /// producer.close().await?;
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn spool(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool.dir = Some(dir.into());
        self
    }

    /// When the spool's writes count as durable (default [`Durability::Group`]).
    pub fn spool_durability(mut self, durability: Durability) -> Self {
        self.spool.durability = durability;
        self
    }

    /// The most the spool may hold on disk, in bytes (default 1 GiB, at least
    /// 64 KiB): the bound on what an outage can leave waiting, beyond the pending
    /// bound in memory. While the spool holds this much, accepting events waits. An
    /// event frees its room once it and every older event in the log have their
    /// outcome, since the log is dropped from its oldest end, a segment (an eighth of
    /// the bound, at most 16 MiB) at a time.
    pub fn max_spool_bytes(mut self, bytes: u64) -> Self {
        self.spool.max_bytes = Some(bytes);
        self
    }

    pub(super) fn check_spool(&self) -> Result<(), Error> {
        if self.spool.dir.is_none() {
            if self.spool.max_bytes.is_some() || self.spool.durability != Durability::Group {
                return Err(Error::config(
                    "spool_durability and max_spool_bytes need a spool (ProducerBuilder::spool)",
                ));
            }
            return Ok(());
        }
        if self.spool.max_bytes.is_some_and(|b| b < MIN_SPOOL_BYTES) {
            return Err(Error::config(format!(
                "max_spool_bytes must be at least {MIN_SPOOL_BYTES} bytes"
            )));
        }
        if matches!(self.spool.durability, Durability::Interval(d) if d.is_zero()) {
            return Err(Error::config(
                "a spool sync interval must be positive (Durability::Group syncs as often \
                 as it can)",
            ));
        }
        Ok(())
    }

    /// Opens the spool, if there is one, for a producer publishing to `destination`
    /// (on a blocking thread); keeps it for the producer and returns what it held.
    pub(super) async fn open_spool(&mut self, destination: &str) -> Result<Recovered, Error> {
        let Some(options) = self.spool_options() else {
            return Ok(Recovered::default());
        };
        let destination = destination.to_owned();
        let idempotent = self.idempotent;
        let opened =
            tokio::task::spawn_blocking(move || Spool::open(&options, &destination, idempotent))
                .await
                .map_err(|e| Error::spool(format!("opening the spool failed: {e}")))?;
        self.keep_spool(opened?)
    }

    /// As [`open_spool`](Self::open_spool), on this thread.
    pub(super) fn open_spool_here(&mut self, destination: &str) -> Result<Recovered, Error> {
        let Some(options) = self.spool_options() else {
            return Ok(Recovered::default());
        };
        let opened = Spool::open(&options, destination, self.idempotent)?;
        self.keep_spool(opened)
    }

    fn spool_options(&self) -> Option<SpoolOptions> {
        Some(SpoolOptions {
            dir: self.spool.dir.clone()?,
            durability: self.spool.durability,
            max_bytes: self.spool.max_bytes.unwrap_or(DEFAULT_MAX_SPOOL_BYTES),
        })
    }

    fn keep_spool(&mut self, (spool, recovered): (Spool, Recovered)) -> Result<Recovered, Error> {
        self.spool.recovered_events = recovered.events;
        self.spool.recovered_idempotent = recovered.idempotent;
        if recovered.events > 0 {
            tracing::info!(
                events = recovered.events,
                "recovering events from the spool"
            );
        }
        self.spool.opened = Some(spool);
        Ok(recovered)
    }
}
