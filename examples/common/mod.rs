//! Shared by the examples: an embedded emulator by default, a real hub when
//! `EVENTHUBS_CONNECTION_STRING` names one (with `EntityPath`).
#![allow(dead_code)] // each example uses a part of it

use std::process::ExitCode;

use eventhubs_emulator::{Emulator, EmulatorHandle};
use streaming_producer::ConnectionString;

const ENV: &str = "EVENTHUBS_CONNECTION_STRING";

/// The environment's connection string, if it names a hub. One without `EntityPath`
/// (as `hubcat emulator` prints, for `hubcat send --hub`) is for another use: the
/// example says so and runs on its emulator instead.
fn from_environment() -> Option<String> {
    let cs = std::env::var(ENV).ok().filter(|cs| !cs.trim().is_empty())?;
    match cs.parse::<ConnectionString>() {
        Ok(parsed) if names_a_hub(&parsed) => Some(cs),
        Ok(_) => {
            eprintln!(
                "note: {ENV} names no event hub (no EntityPath); running on the embedded emulator"
            );
            None
        }
        Err(e) => {
            eprintln!(
                "note: {ENV} is not a connection string ({e}); running on the embedded emulator"
            );
            None
        }
    }
}

/// Whether a connection string names its event hub (`EntityPath`), which is what makes
/// the examples use it.
fn names_a_hub(cs: &ConnectionString) -> bool {
    cs.entity_path().is_some()
}

/// A connection string for `hub`, and the emulator serving it (unless the environment
/// names a real hub).
pub(crate) async fn connect(
    hub: &str,
    partitions: u32,
) -> Result<(String, Option<EmulatorHandle>), Box<dyn std::error::Error>> {
    if let Some(cs) = from_environment() {
        eprintln!("publishing to the event hub named by {ENV}");
        return Ok((cs, None));
    }
    let emulator = Emulator::builder().hub(hub, partitions).start().await?;
    Ok((emulator.connection_string_for(hub), Some(emulator)))
}

/// An example's result as its exit status: an error is printed as a sentence with its
/// causes (not `main`'s `Debug` dump), saying where the connection string came from.
pub(crate) fn report(result: Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if std::env::var(ENV).is_ok_and(|cs| cs.parse().is_ok_and(|cs| names_a_hub(&cs))) {
        text.push_str(&format!(
            " (the connection string came from {ENV}; unset it to run on the embedded emulator)"
        ));
    }
    eprintln!("error: {text}");
    ExitCode::FAILURE
}
