//! Credentials: where the tokens put on `$cbs` come from.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventhubs_protocol::sas;

use crate::Error;

/// The kind of a token, as `$cbs` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `servicebus.windows.net:sastoken`
    SharedAccessSignature,
    /// `jwt` (Entra ID)
    Jwt,
}

impl TokenKind {
    /// The `type` put on a `$cbs` put-token request.
    pub fn cbs_type(self) -> &'static str {
        match self {
            TokenKind::SharedAccessSignature => "servicebus.windows.net:sastoken",
            TokenKind::Jwt => "jwt",
        }
    }
}

/// A token and when it stops being valid.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The token text.
    pub token: String,
    /// When it expires.
    pub expires_at: SystemTime,
    /// What kind of token it is.
    pub kind: TokenKind,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("kind", &self.kind)
            .finish()
    }
}

/// A boxed future returned by [`Credential::token`].
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<AccessToken, Error>> + Send + 'a>>;

/// A source of tokens for an audience such as `amqps://ns.servicebus.windows.net/hub`.
///
/// Implement it to plug in Entra ID (JWT) or any other token provider; the producer
/// asks again before the current token expires.
pub trait Credential: Send + Sync + fmt::Debug + 'static {
    /// A token valid for `audience`.
    fn token<'a>(&'a self, audience: &'a str) -> TokenFuture<'a>;
}

/// Signs SAS tokens with a shared access key.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use streaming_producer::{Credential, SharedKeyCredential};
///
/// let credential = SharedKeyCredential::new("RootManageSharedAccessKey", "key");
/// let token = credential.token("amqps://ns.servicebus.windows.net/hub").await.unwrap();
/// assert!(token.token.starts_with("SharedAccessSignature sr=amqps%3a%2f%2fns"));
/// # }
/// ```
#[derive(Clone)]
pub struct SharedKeyCredential {
    name: String,
    key: String,
    validity: Duration,
}

impl fmt::Debug for SharedKeyCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedKeyCredential")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .field("validity", &self.validity)
            .finish()
    }
}

impl SharedKeyCredential {
    /// A credential for this key; tokens are valid for one hour.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: key.into(),
            validity: Duration::from_secs(3600),
        }
    }

    /// How long each signed token is valid.
    pub fn with_validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Signs a token for `audience` that expires at `expires_at`.
    pub fn sign(&self, audience: &str, expires_at: SystemTime) -> AccessToken {
        let se = expires_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        AccessToken {
            token: sas::sign(audience, &self.name, &self.key, se),
            expires_at: UNIX_EPOCH + Duration::from_secs(se),
            kind: TokenKind::SharedAccessSignature,
        }
    }
}

impl Credential for SharedKeyCredential {
    fn token<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        let token = self.sign(audience, SystemTime::now() + self.validity);
        Box::pin(async move { Ok(token) })
    }
}

/// A ready-made shared access signature, used as is until it expires.
#[derive(Clone)]
pub struct SasTokenCredential {
    token: AccessToken,
}

impl fmt::Debug for SasTokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasTokenCredential")
            .field("expires_at", &self.token.expires_at)
            .finish()
    }
}

impl SasTokenCredential {
    /// Wraps `SharedAccessSignature sr=...&sig=...&se=...&skn=...`; its `se` says when
    /// it expires.
    pub fn new(token: impl Into<String>) -> Result<Self, Error> {
        let token = token.into();
        let se = token
            .strip_prefix("SharedAccessSignature ")
            .and_then(|fields| {
                fields
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("se="))
                    .and_then(|se| se.parse::<u64>().ok())
            })
            .ok_or_else(|| {
                Error::connection_string(
                    "the shared access signature has no valid 'se' (expiry) field",
                )
            })?;
        Ok(Self {
            token: AccessToken {
                token,
                expires_at: UNIX_EPOCH + Duration::from_secs(se),
                kind: TokenKind::SharedAccessSignature,
            },
        })
    }
}

impl Credential for SasTokenCredential {
    fn token<'a>(&'a self, _audience: &'a str) -> TokenFuture<'a> {
        let token = self.token.clone();
        Box::pin(async move {
            if token.expires_at <= SystemTime::now() {
                return Err(Error::auth(
                    "the shared access signature from the connection string has expired",
                ));
            }
            Ok(token)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_matches_the_golden_vector() {
        // The golden vector (the Rust SDK's `sign_sas_matches_reference_vector`).
        let credential = SharedKeyCredential::new("RootManageSharedAccessKey", "mykey");
        let token = credential.sign(
            "amqps://example.servicebus.windows.net/myhub",
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        assert_eq!(
            token.token,
            "SharedAccessSignature sr=amqps%3a%2f%2fexample.servicebus.windows.net%2fmyhub\
             &sig=SgJoMn7K6nWDCF6e1%2BfsxrmJLsorqPeZ3B8N1uQ31dc%3D&se=1700000000\
             &skn=RootManageSharedAccessKey"
        );
        assert_eq!(token.kind.cbs_type(), "servicebus.windows.net:sastoken");
    }

    #[tokio::test]
    async fn a_ready_made_signature_reports_its_expiry_and_expires() {
        let valid = SasTokenCredential::new("SharedAccessSignature sr=x&sig=y&se=4102444800&skn=k")
            .unwrap();
        let token = valid.token("ignored").await.unwrap();
        assert_eq!(
            token.expires_at,
            UNIX_EPOCH + Duration::from_secs(4_102_444_800)
        );
        let old = SasTokenCredential::new("SharedAccessSignature sr=x&sig=y&se=1&skn=k").unwrap();
        assert!(old.token("a").await.unwrap_err().is_auth());
        assert!(SasTokenCredential::new("SharedAccessSignature sr=x").is_err());
    }

    #[test]
    fn keys_do_not_leak_into_debug_output() {
        let c = SharedKeyCredential::new("n", "super-secret");
        assert!(!format!("{c:?}").contains("super-secret"));
    }
}
