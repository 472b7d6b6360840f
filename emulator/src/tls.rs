//! TLS for the emulator's second listener, where the service listens (AMQP over TLS,
//! port 5671): a certificate chain and key it is given, or a certificate authority and
//! a `localhost` certificate it makes, whose CA a client adds to what it trusts.

use std::fmt;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificate and key the emulator's TLS listener presents.
#[derive(Clone)]
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    /// The made CA's certificate, in PEM: what a client trusts.
    ca_pem: Option<String>,
    /// The names the certificate is for, when the emulator made it.
    names: Vec<String>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certificates", &self.chain.len())
            .field("made", &self.ca_pem.is_some())
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// Why a TLS identity could not be read or made.
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl TlsIdentity {
    /// A certificate chain (leaf first) and its private key, in PEM (PKCS #8, PKCS #1
    /// or SEC1 keys).
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError(format!("the certificate file is not PEM: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError(
                "the certificate file holds no CERTIFICATE block".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError(format!("the key file holds no private key: {e}")))?;
        let identity = Self {
            chain,
            key: Arc::new(key),
            ca_pem: None,
            names: Vec::new(),
        };
        // A key that does not go with the certificate fails here, not at a handshake.
        identity.server_config()?;
        Ok(identity)
    }

    /// A new certificate authority, and a certificate it signs for `names` (host names
    /// or IP addresses, e.g. `localhost` and `127.0.0.1`). A client trusts
    /// [`ca_pem`](Self::ca_pem).
    pub fn generate(names: &[&str]) -> Result<Self, TlsError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let failed = |e: rcgen::Error| TlsError(format!("cannot make a certificate: {e}"));
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        if names.is_empty() {
            return Err(TlsError("a certificate needs at least one name".into()));
        }
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, "eventhubs-emulator local CA");
        let ca_key = KeyPair::generate().map_err(failed)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(names.clone()).map_err(failed)?;
        leaf.distinguished_name.push(DnType::CommonName, &names[0]);
        let leaf_key = KeyPair::generate().map_err(failed)?;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(failed)?;
        let key = PrivateKeyDer::try_from(leaf_key.serialize_der())
            .map_err(|e| TlsError(format!("cannot read the made key: {e}")))?;
        Ok(Self {
            chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
            key: Arc::new(key),
            ca_pem: Some(ca_cert.pem()),
            names,
        })
    }

    /// The certificate of the CA that signed the certificate, in PEM, if the emulator
    /// made it ([`generate`](Self::generate)).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The rustls server configuration: ring's provider (the one this workspace
    /// compiles in) unless the process installed another as its default. Named rather
    /// than left to `ServerConfig::builder`, which panics when a process links two
    /// providers and installs neither; rustls deprecated naming ring's for its lack of
    /// post-quantum key exchange, which a local emulator can do without.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = match rustls::crypto::CryptoProvider::get_default() {
            Some(installed) => installed.clone(),
            #[allow(deprecated)]
            None => Arc::new(rustls::crypto::ring::default_provider()),
        };
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("the TLS crypto provider cannot serve: {e}")))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError(format!("the certificate and key do not go together: {e}")))?;
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    #[test]
    fn a_certificate_is_taken_with_its_own_key_only() {
        let (cert, key) = pair("localhost");
        let (_, other_key) = pair("localhost");
        assert!(TlsIdentity::from_pem(cert.as_bytes(), key.as_bytes()).is_ok());
        let e = TlsIdentity::from_pem(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("do not go together"), "{e}");
        let e = TlsIdentity::from_pem(b"nothing", key.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
        let e = TlsIdentity::from_pem(cert.as_bytes(), b"nothing").unwrap_err();
        assert!(e.to_string().contains("no private key"), "{e}");
    }

    #[test]
    fn a_made_identity_gives_its_ca_and_serves() {
        let made = TlsIdentity::generate(&["localhost", "127.0.0.1"]).unwrap();
        assert!(made
            .ca_pem()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(made.chain.len(), 2);
        assert!(made.server_config().is_ok());
        assert!(TlsIdentity::generate(&[]).is_err());
    }
}
