//! Shared access signatures: signing (for tests and tools) and verification.
//!
//! Token shape:
//! `SharedAccessSignature sr=<enc(resource)>&sig=<enc(base64(hmac))>&se=<unix s>&skn=<enc(name)>`,
//! where the HMAC-SHA256 key is the UTF-8 bytes of the shared access key and the signed
//! string is the *encoded* resource exactly as it appears in `sr`, a newline, and `se`.
//! SDKs encode the resource differently (upper- or lower-case hex), so verification
//! signs the literal `sr` value it received.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "SharedAccessSignature ";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SasError {
    /// The token is not of the `SharedAccessSignature sr=..&sig=..&se=..&skn=..` form.
    Malformed(&'static str),
    /// The token names a different shared access key.
    UnknownKeyName(String),
    /// The signature does not match the configured key.
    BadSignature,
    /// The token's `se` lies in the past.
    Expired {
        /// Expiry of the token, unix seconds.
        expires_at: u64,
    },
}

impl std::fmt::Display for SasError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SasError::Malformed(what) => write!(f, "malformed shared access signature: {what}"),
            SasError::UnknownKeyName(name) => {
                write!(f, "the shared access key name '{name}' is not known")
            }
            SasError::BadSignature => f.write_str("the shared access signature is invalid"),
            SasError::Expired { expires_at } => {
                write!(f, "the shared access signature expired at {expires_at}")
            }
        }
    }
}

impl std::error::Error for SasError {}

/// Percent-encodes everything but `A-Za-z0-9-_.~`, with lower- or upper-case hex.
fn encode(s: &str, upper: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else if upper {
            let _ = write!(out, "%{b:02X}");
        } else {
            let _ = write!(out, "%{b:02x}");
        }
    }
    out
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hmac_b64(key: &str, encoded_resource: &str, expiry: u64) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(encoded_resource.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.to_string().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Signs `resource` (for example `amqps://ns.servicebus.windows.net/hub`) with the given key,
/// valid until `expires_at` (unix seconds). The resource is encoded with lower-case hex, as the Rust SDK does.
///
/// ```
/// use eventhubs_protocol::sas;
/// let token = sas::sign("amqps://example.servicebus.windows.net/myhub",
///                       "RootManageSharedAccessKey", "mykey", 1_700_000_000);
/// assert!(token.contains("sig=SgJoMn7K6nWDCF6e1%2BfsxrmJLsorqPeZ3B8N1uQ31dc%3D"));
/// ```
pub fn sign(resource: &str, key_name: &str, key: &str, expires_at: u64) -> String {
    let sr = encode(resource, false);
    let sig = hmac_b64(key, &sr, expires_at);
    format!(
        "{PREFIX}sr={sr}&sig={}&se={expires_at}&skn={}",
        encode(&sig, true),
        encode(key_name, true)
    )
}

/// A token that passed [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The decoded resource the token was signed for.
    pub resource: String,
    /// Expiry, unix seconds.
    pub expires_at: u64,
}

/// Checks a SAS token against a key name and key at time `now` (unix seconds).
pub fn verify(token: &str, key_name: &str, key: &str, now: u64) -> Result<VerifiedToken, SasError> {
    let fields = token.strip_prefix(PREFIX).ok_or(SasError::Malformed(
        "missing 'SharedAccessSignature ' prefix",
    ))?;
    let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
    for pair in fields.split('&') {
        let (k, v) = pair
            .split_once('=')
            .ok_or(SasError::Malformed("a field has no '='"))?;
        match k {
            "sr" => sr = Some(v),
            "sig" => sig = Some(v),
            "se" => se = Some(v),
            "skn" => skn = Some(v),
            _ => {}
        }
    }
    let sr = sr.ok_or(SasError::Malformed("missing sr"))?;
    let sig = decode(sig.ok_or(SasError::Malformed("missing sig"))?)
        .ok_or(SasError::Malformed("sig is not percent-encoded UTF-8"))?;
    let se_text = se.ok_or(SasError::Malformed("missing se"))?;
    let expires_at: u64 = se_text
        .parse()
        .map_err(|_| SasError::Malformed("se is not a number of seconds"))?;
    let skn = decode(skn.ok_or(SasError::Malformed("missing skn"))?)
        .ok_or(SasError::Malformed("skn is not percent-encoded UTF-8"))?;
    if skn != key_name {
        return Err(SasError::UnknownKeyName(skn));
    }
    // Sign exactly what was received: `se` as written and `sr` as encoded by the client.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(sr.as_bytes());
    mac.update(b"\n");
    mac.update(se_text.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD
        .decode(sig.as_bytes())
        .map_err(|_| SasError::BadSignature)?;
    mac.verify_slice(&expected)
        .map_err(|_| SasError::BadSignature)?;
    if expires_at <= now {
        return Err(SasError::Expired { expires_at });
    }
    Ok(VerifiedToken {
        resource: decode(sr).unwrap_or_else(|| sr.to_owned()),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOURCE: &str = "amqps://example.servicebus.windows.net/myhub";

    #[test]
    fn signing_matches_the_rust_sdk_golden_vector() {
        // azure_messaging_eventhubs sas_credential.rs `sign_sas_matches_reference_vector`;
        // the resource is
        // encoded with lower-case hex, the signature with upper-case hex.
        let token = sign(
            RESOURCE,
            "RootManageSharedAccessKey",
            "mykey",
            1_700_000_000,
        );
        assert_eq!(
            token,
            "SharedAccessSignature sr=amqps%3a%2f%2fexample.servicebus.windows.net%2fmyhub\
             &sig=SgJoMn7K6nWDCF6e1%2BfsxrmJLsorqPeZ3B8N1uQ31dc%3D&se=1700000000\
             &skn=RootManageSharedAccessKey"
        );
    }

    #[test]
    fn upper_case_encoded_tokens_verify_against_their_literal_resource() {
        // The same inputs with .NET/Python/JS style encoding give another signature,
        // and it must verify too.
        let token = "SharedAccessSignature sr=amqps%3A%2F%2Fexample.servicebus.windows.net%2Fmyhub\
                     &sig=J40b3ojd%2BBRX%2B48odOoGfLt96aldvIJV7hL%2F2R%2F6a28%3D&se=1700000000\
                     &skn=RootManageSharedAccessKey";
        let ok = verify(token, "RootManageSharedAccessKey", "mykey", 1_600_000_000).unwrap();
        assert_eq!(ok.resource, RESOURCE);
        assert_eq!(ok.expires_at, 1_700_000_000);
    }

    #[test]
    fn a_token_signed_with_another_key_is_refused() {
        let token = sign(
            RESOURCE,
            "RootManageSharedAccessKey",
            "wrong",
            1_700_000_000,
        );
        assert_eq!(
            verify(&token, "RootManageSharedAccessKey", "mykey", 0),
            Err(SasError::BadSignature)
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let token = sign(RESOURCE, "k", "v", 100);
        assert_eq!(
            verify(&token, "k", "v", 100),
            Err(SasError::Expired { expires_at: 100 })
        );
        assert!(verify(&token, "k", "v", 99).is_ok());
    }

    #[test]
    fn another_key_name_is_refused() {
        let token = sign(RESOURCE, "other", "v", 100);
        assert_eq!(
            verify(&token, "k", "v", 0),
            Err(SasError::UnknownKeyName("other".into()))
        );
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        for bad in [
            "",
            "Bearer x",
            "SharedAccessSignature ",
            "SharedAccessSignature sr=a&sig=%zz&se=1&skn=k",
            "SharedAccessSignature sr=a&sig=abc&se=notanumber&skn=k",
            "SharedAccessSignature sr=a&sig=abc&se=1",
            "SharedAccessSignature sr=a&sig=!!!&se=1&skn=k",
            "SharedAccessSignature sr=a&sig=abc&se=1&skn=k%",
        ] {
            assert!(verify(bad, "k", "v", 0).is_err(), "{bad:?}");
        }
    }
}
