//! Retries: [`RetryPolicy`] says how often and how patiently, [`Schedule`] turns it into
//! tower's exponential backoff with jitter, and [`EventHubsRetry`] is the policy for
//! tower's own `Retry`: which failures are worth another try, how long to wait, and when
//! to stop.
//!
//! Files as in tower: `options` (the [`RetryPolicy`] an application sets), `backoff`
//! (the [`Schedule`]), `policy` (the tower policy, used with tower's own `RetryLayer`).

mod backoff;
mod options;
mod policy;
#[cfg(test)]
mod tests;

pub use backoff::Schedule;
pub use options::RetryPolicy;
pub use policy::EventHubsRetry;
