//! Where a client connects and how it authenticates: from a connection string, or
//! from a fully qualified namespace, a hub name and a credential. Shared by
//! [`ProducerBuilder`](crate::ProducerBuilder) and [`ReaderBuilder`](crate::ReaderBuilder).

use std::sync::Arc;

use crate::connection_string::{ConnectionString, ConnectionStringCredentials};
use crate::credential::{Credential, SasTokenCredential, SharedKeyCredential};
use crate::Error;

/// The options a builder collects about the namespace, the hub and the credential.
#[derive(Debug, Default)]
pub(crate) struct Address {
    pub(crate) connection_string: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) hub: Option<String>,
    pub(crate) credential: Option<Arc<dyn Credential>>,
    pub(crate) development_emulator: bool,
}

/// An [`Address`] checked and made whole.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// `amqps://host:5671`, or `amqp://host:5672` for the emulator.
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) hub: String,
    pub(crate) credential: Arc<dyn Credential>,
}

impl Address {
    pub(crate) fn resolve(&self) -> Result<Resolved, Error> {
        let cs: ConnectionString = match (&self.connection_string, &self.namespace) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "give either a connection string or a fully qualified namespace, not both",
                ))
            }
            (Some(text), None) => {
                let cs: ConnectionString = text.parse()?;
                if self.development_emulator && !cs.is_development_emulator() {
                    return Err(Error::config(
                        "use_development_emulator goes with a fully qualified namespace; \
                         with a connection string, add UseDevelopmentEmulator=true to it",
                    ));
                }
                cs
            }
            (None, Some(ns)) => ConnectionString::namespace(ns, self.development_emulator)?,
            (None, None) => {
                return Err(Error::config(
                    "no namespace: give a connection string, or a fully qualified namespace \
                     with a hub and a credential",
                ))
            }
        };
        let hub = cs.resolve_hub(self.hub.as_deref())?;
        let credential: Arc<dyn Credential> = match (&self.credential, cs.credentials()) {
            (Some(c), _) => c.clone(),
            (None, Some(ConnectionStringCredentials::SharedKey { name, key })) => {
                Arc::new(SharedKeyCredential::new(name.clone(), key.clone()))
            }
            (None, Some(ConnectionStringCredentials::SharedAccessSignature(sas))) => {
                Arc::new(SasTokenCredential::new(sas.clone())?)
            }
            (None, None) if self.namespace.is_some() => {
                return Err(Error::config(
                    "no credential: a fully qualified namespace needs one (a \
                     SharedKeyCredential, a SasTokenCredential or a token credential)",
                ))
            }
            (None, None) => {
                return Err(Error::config(
                    "no credentials: the connection string has none and no credential was \
                     given",
                ))
            }
        };
        Ok(Resolved {
            url: cs.amqp_url(),
            host: cs.host().to_owned(),
            hub,
            credential,
        })
    }
}
