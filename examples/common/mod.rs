//! Shared by the examples: an embedded emulator by default, a real hub when
//! `EVENTHUBS_CONNECTION_STRING` is set.

use eventhubs_emulator::{Emulator, EmulatorHandle};

/// A connection string for `hub`, and the emulator serving it (if no real hub is set).
pub(crate) async fn connect(hub: &str, partitions: u32) -> (String, Option<EmulatorHandle>) {
    match std::env::var("EVENTHUBS_CONNECTION_STRING") {
        Ok(cs) => (cs, None),
        Err(_) => {
            let emulator = Emulator::builder()
                .hub(hub, partitions)
                .start()
                .await
                .expect("start the embedded emulator");
            (emulator.connection_string_for(hub), Some(emulator))
        }
    }
}
