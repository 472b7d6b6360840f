//! What the producer puts in and reads from link and connection frames: the
//! idempotent producer properties, the client's open properties, and TLS.

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::CertificateDer;

use serde_amqp::Value;

use super::ProducerState;
use eventhubs_protocol::{PRODUCER_EPOCH, PRODUCER_ID, PRODUCER_SEQUENCE};

/// The idempotent link properties: the producer group id and epoch once known (null
/// the first time, so the service assigns them) and always a null sequence number,
/// so the reply carries the last sequence number the service stored.
pub(super) fn idempotent_properties(
    identity: Option<(i64, i16)>,
) -> fe2o3_amqp::types::definitions::Fields {
    use fe2o3_amqp::types::primitives::Symbol;
    let mut fields = fe2o3_amqp::types::definitions::Fields::default();
    let (id, epoch) = match identity {
        Some((id, epoch)) => (Value::Long(id), Value::Short(epoch)),
        None => (Value::Null, Value::Null),
    };
    fields.insert(Symbol::from(PRODUCER_ID), id);
    fields.insert(Symbol::from(PRODUCER_EPOCH), epoch);
    fields.insert(Symbol::from(PRODUCER_SEQUENCE), Value::Null);
    fields
}

/// Reads the producer state from the attach reply's properties (which fe2o3 merges
/// over the ones sent); `None` if the service filled in none.
pub(super) fn producer_state_of(
    properties: Option<&fe2o3_amqp::types::definitions::Fields>,
) -> Option<ProducerState> {
    use fe2o3_amqp::types::primitives::Symbol;
    let properties = properties?;
    let integer = |name: &str| -> Option<i64> {
        match properties.get(&Symbol::from(name))? {
            Value::Long(v) => Some(*v),
            Value::Int(v) => Some(i64::from(*v)),
            Value::Short(v) => Some(i64::from(*v)),
            Value::Byte(v) => Some(i64::from(*v)),
            Value::Ulong(v) => i64::try_from(*v).ok(),
            Value::Uint(v) => Some(i64::from(*v)),
            Value::Ushort(v) => Some(i64::from(*v)),
            Value::Ubyte(v) => Some(i64::from(*v)),
            _ => None,
        }
    };
    Some(ProducerState {
        producer_id: integer(PRODUCER_ID)?,
        epoch: i16::try_from(integer(PRODUCER_EPOCH)?).ok()?,
        last_sequence: i32::try_from(integer(PRODUCER_SEQUENCE)?).ok()?,
    })
}

/// The open frame's properties, as the SDKs send them.
pub(super) fn client_properties() -> fe2o3_amqp::types::definitions::Fields {
    use fe2o3_amqp::types::primitives::Symbol;
    let version = env!("CARGO_PKG_VERSION");
    let mut fields = fe2o3_amqp::types::definitions::Fields::default();
    for (k, v) in [
        ("product", "streaming-producer".to_owned()),
        ("version", version.to_owned()),
        ("platform", std::env::consts::OS.to_owned()),
        (
            "user-agent",
            format!(
                "streaming-producer/{version} ({}; {})",
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        ),
    ] {
        fields.insert(Symbol::from(k), Value::String(v));
    }
    fields
}

/// Certificates a client trusts besides the public roots.
pub(crate) type Roots = Arc<Vec<CertificateDer<'static>>>;

/// The certificates of PEM texts (CAs', say), for [`tls_connect`] to trust.
pub(crate) fn roots_of(pems: &[Vec<u8>]) -> Result<Roots, crate::Error> {
    let mut roots = Vec::new();
    for pem in pems {
        roots.extend(parse_roots(pem)?);
    }
    Ok(Arc::new(roots))
}

fn parse_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, crate::Error> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| crate::Error::config(format!("the root certificate is not PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(crate::Error::config(
            "the root certificate PEM holds no CERTIFICATE block",
        ));
    }
    Ok(certificates)
}

/// A TLS client stream to `host`, verified against the Mozilla root certificates
/// (`webpki-roots`), as the service's certificates chain to public roots, and against
/// `extra` roots the application added (a local emulator's CA, a corporate CA).
pub(super) async fn tls_connect(
    host: &str,
    tcp: tokio::net::TcpStream,
    extra: &Roots,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
    let config = if extra.is_empty() {
        tls_config()?
    } else {
        tls_config_with(extra).map_err(std::io::Error::other)?
    };
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The TLS client configuration, made once: the crypto provider the application
/// installed as the process default, else ring's, which this crate compiles in.
///
/// ring's provider is named directly rather than left to `ClientConfig::builder`,
/// which panics when a process links two providers (ring here, aws-lc-rs through
/// another crate) and installs neither. rustls deprecated naming ring's provider for
/// its lack of post-quantum key exchange; an application that wants that installs
/// aws-lc-rs's provider as the default, and it is used here.
fn tls_config() -> Result<Arc<tokio_rustls::rustls::ClientConfig>, std::io::Error> {
    static CONFIG: std::sync::OnceLock<Result<Arc<tokio_rustls::rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| tls_config_with(&[]));
    config.clone().map_err(std::io::Error::other)
}

/// A TLS client configuration trusting the public roots and `extra`.
fn tls_config_with(
    extra: &[CertificateDer<'static>],
) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use tokio_rustls::rustls;
    let provider = match rustls::crypto::CryptoProvider::get_default() {
        Some(installed) => installed.clone(),
        #[allow(deprecated)]
        None => Arc::new(rustls::crypto::ring::default_provider()),
    };
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for certificate in extra {
        roots
            .add(certificate.clone())
            .map_err(|e| format!("an added root certificate cannot be trusted: {e}"))?;
    }
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
        .map_err(|e| format!("the TLS crypto provider cannot make a client: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_tls_config_builds_from_the_crates_own_provider() {
        let config = super::tls_config().unwrap();
        assert!(!config.crypto_provider().cipher_suites.is_empty());
    }
}
