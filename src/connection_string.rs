//! Event Hubs connection strings.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Credentials a connection string can carry.
#[derive(Clone, PartialEq, Eq)]
pub enum ConnectionStringCredentials {
    /// `SharedAccessKeyName` and `SharedAccessKey`: tokens are signed as needed.
    SharedKey {
        /// The key's name.
        name: String,
        /// The key.
        key: String,
    },
    /// `SharedAccessSignature`: a ready-made token, used until it expires.
    SharedAccessSignature(String),
}

impl fmt::Debug for ConnectionStringCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SharedKey { name, .. } => f
                .debug_struct("SharedKey")
                .field("name", name)
                .field("key", &"<redacted>")
                .finish(),
            Self::SharedAccessSignature(_) => f.write_str("SharedAccessSignature(<redacted>)"),
        }
    }
}

/// A parsed, validated connection string.
///
/// ```
/// use streaming_producer::ConnectionString;
///
/// let cs: ConnectionString = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=Root;\
///     SharedAccessKey=secret;EntityPath=eh1;UseDevelopmentEmulator=true".parse().unwrap();
/// assert_eq!(cs.host(), "127.0.0.1");
/// assert_eq!(cs.amqp_url(), "amqp://127.0.0.1:5672");
/// assert_eq!(cs.entity_path(), Some("eh1"));
///
/// let bad = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root"
///     .parse::<ConnectionString>().unwrap_err();
/// assert!(bad.is_connection_string());
/// assert!(bad.to_string().contains("SharedAccessKey"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    host: String,
    port: Option<u16>,
    credentials: Option<ConnectionStringCredentials>,
    entity_path: Option<String>,
    development_emulator: bool,
}

impl ConnectionString {
    /// The namespace host, e.g. `ns.servicebus.windows.net`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port given in `Endpoint`, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The credentials, if the string carries any.
    pub fn credentials(&self) -> Option<&ConnectionStringCredentials> {
        self.credentials.as_ref()
    }

    /// `EntityPath`: the event hub's name, if given.
    pub fn entity_path(&self) -> Option<&str> {
        self.entity_path.as_deref()
    }

    /// `UseDevelopmentEmulator=true`: plain AMQP, port 5672 unless one is given.
    pub fn is_development_emulator(&self) -> bool {
        self.development_emulator
    }

    /// Where to connect: `amqps://host:5671` for the service (TLS), `amqp://host:5672`
    /// for an emulator; an explicit port wins.
    pub fn amqp_url(&self) -> String {
        let (scheme, default_port) = if self.development_emulator {
            ("amqp", 5672)
        } else {
            ("amqps", 5671)
        };
        format!(
            "{scheme}://{}:{}",
            self.host,
            self.port.unwrap_or(default_port)
        )
    }

    /// A namespace given by its fully qualified name (`ns.servicebus.windows.net`,
    /// optionally with a port or an `sb://` prefix) rather than by a connection string:
    /// no credentials and no hub.
    pub(crate) fn namespace(value: &str, development_emulator: bool) -> Result<Self, Error> {
        let trimmed = value.trim();
        let url = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("sb://{trimmed}")
        };
        let (host, port) = parse_endpoint(&url).map_err(|_| {
            Error::config(format!(
                "the namespace '{trimmed}' is not a host name like \
                 ns.servicebus.windows.net (optionally with :port)"
            ))
        })?;
        Ok(Self {
            host,
            port,
            credentials: None,
            entity_path: None,
            development_emulator,
        })
    }

    /// The hub name to use: `hub` if given (it must then match `EntityPath`,
    /// case-insensitively), else `EntityPath`.
    pub fn resolve_hub(&self, hub: Option<&str>) -> Result<String, Error> {
        match (hub, self.entity_path.as_deref()) {
            (Some(h), Some(p)) if !h.eq_ignore_ascii_case(p) => Err(Error::connection_string(
                format!("the hub name '{h}' does not match EntityPath '{p}'"),
            )),
            (Some(""), _) => Err(Error::config("the hub name is empty")),
            (Some(h), _) => Ok(h.to_owned()),
            (None, Some(p)) => Ok(p.to_owned()),
            (None, None) => Err(Error::connection_string(
                "no event hub named: add EntityPath=<hub> to the connection string, or name the hub \
                 (ProducerBuilder::hub)",
            )),
        }
    }
}

fn parse_endpoint(value: &str) -> Result<(String, Option<u16>), Error> {
    let bad = |why: &str| Error::connection_string(format!("Endpoint '{value}' {why}"));
    let (scheme, rest) = value
        .split_once("://")
        .ok_or_else(|| bad("is not a URL like sb://namespace.servicebus.windows.net/"))?;
    if !["sb", "amqp", "amqps"].contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(bad("must use the sb:// scheme"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad("must not carry user information"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("has an invalid port"))?;
            (h, Some(port))
        }
        _ => (authority, None),
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'));
    if !valid_host {
        return Err(bad("has no valid host name"));
    }
    Ok((host.to_owned(), port))
}

impl FromStr for ConnectionString {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let (mut endpoint, mut key_name, mut key, mut sas, mut entity, mut emulator) =
            (None, None, None, None, None, None);
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                Error::connection_string(format!("'{}...' is not a Key=Value pair", redact(part)))
            })?;
            let (k, v) = (k.trim(), v.trim());
            let slot = match k.to_ascii_lowercase().as_str() {
                "endpoint" => &mut endpoint,
                "sharedaccesskeyname" => &mut key_name,
                "sharedaccesskey" => &mut key,
                "sharedaccesssignature" => &mut sas,
                "entitypath" => &mut entity,
                "usedevelopmentemulator" => &mut emulator,
                "" => return Err(Error::connection_string("a pair has an empty key")),
                _ => continue, // Unknown keys are ignored, as the service's SDKs do.
            };
            if v.is_empty() {
                return Err(Error::connection_string(format!("{k} has an empty value")));
            }
            if slot.is_some() {
                return Err(Error::connection_string(format!("{k} is given twice")));
            }
            *slot = Some(v.to_owned());
        }
        let endpoint = endpoint.ok_or_else(|| Error::connection_string("Endpoint is missing"))?;
        let (host, port) = parse_endpoint(&endpoint)?;
        let credentials = match (key_name, key, sas) {
            (None, None, None) => None,
            (Some(name), Some(key), None) => Some(ConnectionStringCredentials::SharedKey { name, key }),
            (None, None, Some(sas)) => {
                if !sas.starts_with("SharedAccessSignature ") {
                    return Err(Error::connection_string(
                        "SharedAccessSignature must start with 'SharedAccessSignature sr='",
                    ));
                }
                Some(ConnectionStringCredentials::SharedAccessSignature(sas))
            }
            (_, _, Some(_)) => {
                return Err(Error::connection_string(
                    "SharedAccessSignature cannot be combined with SharedAccessKeyName or SharedAccessKey",
                ))
            }
            (Some(_), None, None) => {
                return Err(Error::connection_string(
                    "SharedAccessKeyName is given without SharedAccessKey",
                ))
            }
            (None, Some(_), None) => {
                return Err(Error::connection_string(
                    "SharedAccessKey is given without SharedAccessKeyName",
                ))
            }
        };
        let development_emulator = match emulator.as_deref().map(str::to_ascii_lowercase).as_deref()
        {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Error::connection_string(format!(
                    "UseDevelopmentEmulator must be true or false, not '{other}'"
                )))
            }
        };
        Ok(ConnectionString {
            host,
            port,
            credentials,
            entity_path: entity,
            development_emulator,
        })
    }
}

/// A part without '=' may be a pasted secret; show only its start.
fn redact(part: &str) -> &str {
    let end = part
        .char_indices()
        .nth(8)
        .map(|(i, _)| i)
        .unwrap_or(part.len());
    &part[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ConnectionString, Error> {
        s.parse()
    }

    const CLOUD: &str = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=abc==;EntityPath=hub";

    #[test]
    fn a_cloud_connection_string_means_tls_on_5671() {
        let cs = parse(CLOUD).unwrap();
        assert_eq!(cs.host(), "ns.servicebus.windows.net");
        assert_eq!(cs.amqp_url(), "amqps://ns.servicebus.windows.net:5671");
        assert_eq!(
            cs.credentials(),
            Some(&ConnectionStringCredentials::SharedKey {
                name: "RootManageSharedAccessKey".into(),
                key: "abc==".into()
            })
        );
        assert_eq!(cs.resolve_hub(None).unwrap(), "hub");
        assert_eq!(cs.resolve_hub(Some("HUB")).unwrap(), "HUB");
        assert!(cs
            .resolve_hub(Some("other"))
            .unwrap_err()
            .is_connection_string());
    }

    #[test]
    fn the_emulator_flag_means_plain_amqp_on_5672_unless_a_port_is_given() {
        let base = "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true";
        assert_eq!(parse(base).unwrap().amqp_url(), "amqp://localhost:5672");
        let ported = base.replace("localhost", "127.0.0.1:6000");
        assert_eq!(parse(&ported).unwrap().amqp_url(), "amqp://127.0.0.1:6000");
        let upper = base.replace("true", "True");
        assert!(parse(&upper).unwrap().is_development_emulator());
    }

    #[test]
    fn keys_are_case_insensitive_and_values_keep_their_equals_signs() {
        let cs = parse("endpoint=sb://h/;sharedaccesskeyname=n;SHAREDACCESSKEY=a=b==;").unwrap();
        assert_eq!(
            cs.credentials(),
            Some(&ConnectionStringCredentials::SharedKey {
                name: "n".into(),
                key: "a=b==".into()
            })
        );
    }

    #[test]
    fn a_shared_access_signature_stands_alone() {
        let cs = parse(
            "Endpoint=sb://h/;SharedAccessSignature=SharedAccessSignature sr=x&sig=y&se=1&skn=k",
        )
        .unwrap();
        assert!(matches!(
            cs.credentials(),
            Some(ConnectionStringCredentials::SharedAccessSignature(_))
        ));
    }

    #[test]
    fn malformed_strings_name_the_problem() {
        let cases = [
            ("", "Endpoint is missing"),
            ("SharedAccessKeyName=a;SharedAccessKey=b", "Endpoint is missing"),
            ("Endpoint=ns.servicebus.windows.net", "is not a URL"),
            ("Endpoint=http://h/", "sb:// scheme"),
            ("Endpoint=sb://", "no valid host"),
            ("Endpoint=sb://h:99999/", "invalid port"),
            ("Endpoint=sb://h/;SharedAccessKeyName=a", "without SharedAccessKey"),
            ("Endpoint=sb://h/;SharedAccessKey=b", "without SharedAccessKeyName"),
            ("Endpoint=sb://h/;SharedAccessKeyName=a;SharedAccessKey=b;SharedAccessSignature=SharedAccessSignature x", "cannot be combined"),
            ("Endpoint=sb://h/;SharedAccessSignature=abc", "must start with"),
            ("Endpoint=sb://h/;EntityPath=", "empty value"),
            ("Endpoint=sb://h/;Endpoint=sb://g/", "given twice"),
            ("Endpoint=sb://h/;UseDevelopmentEmulator=yes", "true or false"),
            ("Endpoint=sb://h/;justtext", "not a Key=Value pair"),
            ("Endpoint=sb://h/;=x", "empty key"),
        ];
        for (s, needle) in cases {
            let e = parse(s).unwrap_err();
            assert!(e.is_connection_string(), "{s}");
            assert!(e.to_string().contains(needle), "{s:?} gave {e}");
        }
    }

    #[test]
    fn secrets_do_not_leak_into_debug_output() {
        let cs = parse(CLOUD).unwrap();
        assert!(!format!("{cs:?}").contains("abc=="));
    }

    #[test]
    fn without_entity_path_a_hub_name_is_needed() {
        let cs = parse("Endpoint=sb://h/;SharedAccessKeyName=n;SharedAccessKey=k").unwrap();
        assert!(cs
            .resolve_hub(None)
            .unwrap_err()
            .to_string()
            .contains("EntityPath"));
        assert_eq!(cs.resolve_hub(Some("eh1")).unwrap(), "eh1");
    }
}
