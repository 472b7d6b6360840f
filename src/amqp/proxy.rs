//! An HTTP proxy's tunnel (`CONNECT host:port`, RFC 9110 section 9.3.6), the way out of
//! networks that let connections through a proxy only, as the Azure SDKs take one
//! (Python's `http_proxy`, .NET's `WebProxy`) for AMQP over WebSockets.

use std::fmt;

use crate::Error;

/// An HTTP proxy, from its URL `http://[user:password@]host[:port]`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// `http://host:port`, without the credentials (safe to print).
    pub(crate) url: String,
    /// `host:port`, to connect to.
    pub(crate) authority: String,
    /// `Basic …` for `Proxy-Authorization`, if the URL has a user.
    authorization: Option<String>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.url)
            .field("login", &self.authorization.is_some())
            .finish()
    }
}

impl Proxy {
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        let shape = "expected http://host:port or http://user:password@host:port";
        let bad = |why: String| Error::config(format!("the proxy URL {why} ({shape})"));
        let parsed = url::Url::parse(text.trim()).map_err(|e| bad(format!("is not a URL: {e}")))?;
        match parsed.scheme() {
            "http" => {}
            "https" => {
                return Err(bad(
                    "is https://: a proxy spoken to over TLS is not supported; the tunnel \
                     through it still carries TLS end to end with wss://"
                        .to_owned(),
                ))
            }
            other => return Err(bad(format!("has the scheme '{other}'"))),
        }
        let host = match parsed.host_str() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => return Err(bad("has no host".to_owned())),
        };
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            return Err(bad("has a path or query".to_owned()));
        }
        // `url` forgets an explicit :80, the scheme's default.
        let port = parsed.port_or_known_default().unwrap_or(80);
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| bad("has a user or password that is not UTF-8".to_owned()))
        };
        let authorization = match (parsed.username(), parsed.password()) {
            ("", None) => None,
            ("", Some(_)) => return Err(bad("has a password but no user name".to_owned())),
            (user, password) => {
                use base64::Engine as _;
                let login = format!("{}:{}", decode(user)?, decode(password.unwrap_or(""))?);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(login)
                ))
            }
        };
        let authority = format!("{host}:{port}");
        Ok(Self {
            url: format!("http://{authority}"),
            authority,
            authorization,
        })
    }
}

/// The longest answer to a CONNECT taken: a proxy's status line and headers.
#[cfg(feature = "websockets")]
const MAX_ANSWER: usize = 16 * 1024;

/// A TCP connection to `target` (`host:port`) through `proxy`'s tunnel.
#[cfg(feature = "websockets")]
pub(super) async fn tunnel(proxy: &Proxy, target: &str) -> Result<tokio::net::TcpStream, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cannot = |why: String| Error::connection(format!("the proxy {}: {why}", proxy.url));
    let mut tcp = tokio::net::TcpStream::connect(&proxy.authority)
        .await
        .map_err(|e| cannot("cannot connect to it".to_owned()).with_source(e))?;
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(authorization) = &proxy.authorization {
        request.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| cannot("the connection failed".to_owned()).with_source(e))?;
    // Byte by byte up to the blank line: what comes after it is the target's, and
    // it must stay in the socket for the layers above.
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_ANSWER {
            return Err(cannot(format!(
                "its answer to CONNECT has no end within {MAX_ANSWER} bytes"
            )));
        }
        let byte = tcp.read_u8().await.map_err(|e| {
            cannot("it closed the connection without answering CONNECT".to_owned()).with_source(e)
        })?;
        answer.push(byte);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let status = match response.parse(&answer) {
        Ok(httparse::Status::Complete(_)) => response.code.unwrap_or(0),
        _ => {
            return Err(cannot(format!(
                "its answer to CONNECT is not HTTP: {:?}",
                first_line(&answer)
            )))
        }
    };
    if (200..300).contains(&status) {
        return Ok(tcp);
    }
    let line = first_line(&answer);
    Err(if status == 407 {
        // Not retried: the same credentials would be refused again.
        let what = if proxy.authorization.is_some() {
            "it refused the user name and password of the proxy URL"
        } else {
            "it wants a user name and password: give them in the proxy URL, \
             http://user:password@host:port"
        };
        Error::auth(format!(
            "the proxy {} refused the tunnel to {target} ({line}): {what}",
            proxy.url
        ))
    } else {
        cannot(format!("it refused the tunnel to {target}: {line}"))
    })
}

/// The status line of a proxy's answer, for an error message.
#[cfg(feature = "websockets")]
fn first_line(answer: &[u8]) -> String {
    let line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line)
        .trim()
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_url_gives_where_to_connect_and_the_login() {
        let p = Proxy::parse("http://me:p%40ss@proxy.example:3128").unwrap();
        assert_eq!(p.url, "http://proxy.example:3128");
        assert_eq!(p.authority, "proxy.example:3128");
        // base64("me:p@ss")
        assert_eq!(p.authorization.as_deref(), Some("Basic bWU6cEBzcw=="));
        assert!(!format!("{p:?}").contains("bWU6"));
        let p = Proxy::parse("http://127.0.0.1").unwrap();
        assert_eq!(
            (p.authority.as_str(), p.authorization),
            ("127.0.0.1:80", None)
        );
        let p = Proxy::parse("http://[::1]:8080/").unwrap();
        assert_eq!(p.authority, "[::1]:8080");
    }

    #[test]
    fn bad_proxy_urls_say_why() {
        for (text, why) in [
            ("proxy:3128", "scheme 'proxy'"),
            ("https://proxy:3128", "over TLS is not supported"),
            ("socks5://proxy:1080", "scheme 'socks5'"),
            ("http://proxy:3128/path", "path or query"),
            ("http://:secret@proxy:3128", "no user name"),
            ("no url", "is not a URL"),
        ] {
            let e = Proxy::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
            assert!(!e.contains("secret"), "{text}: {e}");
        }
    }
}
