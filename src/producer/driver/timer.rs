//! The driver's one timer for delivery deadlines, and the instant that stands for no
//! deadline.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

/// A timer kept for the driver's whole run and moved only when its deadline
/// changes.
pub(super) struct Timer {
    sleep: Pin<Box<tokio::time::Sleep>>,
    pub(super) armed: Option<Instant>,
}

impl Timer {
    pub(super) fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(far_future())),
            armed: None,
        }
    }

    /// Sets the deadline (`None`: none); a no-op when it is the same.
    pub(super) fn arm(&mut self, deadline: Option<Instant>) {
        if self.armed != deadline {
            self.armed = deadline;
            self.sleep
                .as_mut()
                .reset(deadline.unwrap_or_else(far_future));
        }
    }

    /// Resolves at the deadline.
    pub(super) fn fired(&mut self) -> &mut Pin<Box<tokio::time::Sleep>> {
        &mut self.sleep
    }
}

/// Later than any deadline the driver sets.
pub(super) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}
