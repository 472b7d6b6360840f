//! Entra ID tokens from `azure_core`'s `TokenCredential` (feature `azure-identity`), so
//! that `azure_identity`'s credentials, `DefaultAzureCredential` among them, plug into
//! [`ProducerBuilder::credential`](crate::ProducerBuilder::credential).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use azure_core::credentials::TokenCredential;

use crate::credential::{AccessToken, Credential, TokenFuture, TokenKind};
use crate::Error;

/// The scope Event Hubs tokens are asked for, whatever the namespace (the service's
/// documented resource, <https://eventhubs.azure.net>).
pub const EVENT_HUBS_SCOPE: &str = "https://eventhubs.azure.net/.default";

/// A [`Credential`] that asks an `azure_core` [`TokenCredential`] for Entra ID tokens
/// and puts them on the connection as JWTs; the producer asks again before each
/// expires.
///
/// ```no_run
/// # async fn run(entra: std::sync::Arc<dyn azure_core::credentials::TokenCredential>)
/// # -> Result<(), streaming_producer::Error> {
/// // `entra` would be `azure_identity::DeveloperToolsCredential::new(None)?`, say.
/// use streaming_producer::{AzureTokenCredential, Producer};
///
/// let (producer, outcomes) = Producer::builder()
///     .fully_qualified_namespace("my-ns.servicebus.windows.net")
///     .hub("telemetry")
///     .credential(AzureTokenCredential::new(entra))
///     .build()
///     .await?;
/// # drop((producer, outcomes)); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AzureTokenCredential {
    inner: Arc<dyn TokenCredential>,
}

impl AzureTokenCredential {
    /// Wraps `credential`.
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        Self { inner: credential }
    }
}

impl Credential for AzureTokenCredential {
    fn token<'a>(&'a self, _audience: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            let token = self
                .inner
                .get_token(&[EVENT_HUBS_SCOPE], None)
                .await
                .map_err(|e| Error::auth("the token credential gave no token").with_source(e))?;
            // Whole seconds are plenty: the token is put again minutes before expiry.
            let seconds = u64::try_from(token.expires_on.unix_timestamp()).unwrap_or(0);
            Ok(AccessToken {
                token: token.token.secret().to_owned(),
                expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
                kind: TokenKind::Jwt,
            })
        })
    }
}
