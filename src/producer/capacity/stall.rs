//! A warning for the trap of unread outcomes: outcomes hold their events' capacity
//! until they are read, so a program that sends everything before it reads the
//! [`Outcomes`](crate::Outcomes) stops at the pending bound and waits forever, silently.
//!
//! A handle that has waited for room for [`WARN_AFTER`] checks whether unread outcomes
//! are what holds it, and if so says so, once per producer. The cost is per wait, not
//! per event: a clock reading when a wait begins, and a timer moved at most once per
//! [`WARN_AFTER`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::Budget;

/// How long a wait for room lasts before unread outcomes are suspected.
pub(crate) const WARN_AFTER: Duration = Duration::from_secs(5);

/// What every handle of one producer shares for the check.
struct Check {
    /// How many outcomes are queued and not yet read.
    unread: Box<dyn Fn() -> usize + Send + Sync>,
    /// The producer's runtime: its timers run there, whatever polls the handle.
    runtime: tokio::runtime::Handle,
    warned: AtomicBool,
}

impl Check {
    /// Outcomes queued and not yet read.
    fn unread(&self) -> usize {
        (self.unread)()
    }
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("warned", &self.warned)
            .finish_non_exhaustive()
    }
}

/// One handle's watch over its waits for room.
#[derive(Debug)]
pub(crate) struct StallWatch {
    check: Arc<Check>,
    /// When the current wait began; `None` when not waiting.
    since: Option<Instant>,
    /// Made at the first wait and kept: a wait only moves it when it fires early.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl StallWatch {
    /// Must be called in the producer's runtime; `unread` counts the outcomes queued
    /// and not yet read.
    pub(crate) fn new(unread: impl Fn() -> usize + Send + Sync + 'static) -> Self {
        Self {
            check: Arc::new(Check {
                unread: Box::new(unread),
                runtime: tokio::runtime::Handle::current(),
                warned: AtomicBool::new(false),
            }),
            since: None,
            sleep: None,
        }
    }

    /// Another handle's watch on the same producer, not waiting.
    pub(crate) fn share(&self) -> Self {
        Self {
            check: self.check.clone(),
            since: None,
            sleep: None,
        }
    }

    /// A wait for room begins (a no-op once the producer has warned).
    pub(crate) fn start(&mut self) {
        if self.since.is_none() && !self.check.warned.load(Ordering::Relaxed) {
            self.since = Some(Instant::now());
        }
    }

    /// The wait for room ended.
    pub(crate) fn stop(&mut self) {
        self.since = None;
    }

    /// The wait goes on: has `cx` woken when it has lasted [`WARN_AFTER`], and then
    /// warns if unread outcomes hold the producer's room.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, budget: &Budget) {
        let Some(since) = self.since else { return };
        let mut due = since + WARN_AFTER;
        let sleep = self.sleep.get_or_insert_with(|| {
            let _runtime = self.check.runtime.enter();
            Box::pin(tokio::time::sleep_until(due))
        });
        // A deadline left from an earlier wait stays unless it is too late for this
        // one: moving a timer at every wait would cost more than the clock reading.
        if sleep.deadline() > due {
            sleep.as_mut().reset(due);
        }
        while sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() < due {
                // An earlier wait's deadline: this wait is not that old yet.
                sleep.as_mut().reset(due);
                continue;
            }
            let unread = self.check.unread();
            if unread > 0 {
                self.since = None;
                if !self.check.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        unread_outcomes = unread,
                        pending_events = budget.held_events(),
                        max_pending_events = budget.max_events(),
                        "the producer has waited {} s for room held by {unread} unread \
                         outcomes: read the Outcomes stream while sending (for instance in \
                         a task of its own), or drop it to ignore outcomes",
                        WARN_AFTER.as_secs(),
                    );
                }
                return;
            }
            // Held by sends in flight, not by the reader: look again later.
            let now = Instant::now();
            self.since = Some(now);
            due = now + WARN_AFTER;
            sleep.as_mut().reset(due);
        }
    }
}
