//! What the commands that talk to a hub share: where it is, and a reader of it.

use clap::Args;
use streaming_producer::{Error, Reader};

/// The namespace and hub a command talks to.
#[derive(Debug, Args)]
pub(crate) struct HubArgs {
    /// Connection string of the namespace (or of the hub, with EntityPath).
    #[arg(long, env = "EVENTHUBS_CONNECTION_STRING", hide_env_values = true)]
    pub(crate) connection_string: String,
    /// The event hub, if the connection string has no EntityPath.
    #[arg(long)]
    pub(crate) hub: Option<String>,
}

impl HubArgs {
    /// An error of connecting, with a hint where a flag of hubcat's is the fix.
    pub(crate) fn explain(&self, e: &Error) -> String {
        explain(e, self.hub.is_some())
    }

    /// A reader of the hub, through `consumer_group`.
    pub(crate) async fn reader(&self, consumer_group: &str) -> Result<Reader, String> {
        let mut builder = Reader::builder()
            .connection_string(&self.connection_string)
            .consumer_group(consumer_group);
        if let Some(hub) = &self.hub {
            builder = builder.hub(hub.clone());
        }
        builder.build().await.map_err(|e| self.explain(&e))
    }
}

/// An error of connecting, with a hint where a flag of hubcat's is the fix;
/// `hub_given` says whether `--hub` was.
pub(crate) fn explain(e: &Error, hub_given: bool) -> String {
    let text = crate::chain(e);
    if text.contains("no event hub named") && !hub_given {
        format!("{text} (give it with --hub NAME)")
    } else if e.is_not_found() {
        format!("{text} (check --hub or EntityPath)")
    } else {
        text
    }
}
