//! The retry policy for tower's `Retry`: which failures are worth another try, how
//! long to wait, and when to stop.
//!
//! Files as in tower: `policy` (the policy, used with tower's own `RetryLayer`).

mod policy;
#[cfg(test)]
mod tests;

pub use policy::EventHubsRetry;
pub(crate) use policy::StateRead;
