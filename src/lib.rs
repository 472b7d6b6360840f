//! A streaming producer for Azure Event Hubs.
//!
//! The producer itself arrives with its own issue; this crate is the workspace root.
#![forbid(unsafe_code)]
