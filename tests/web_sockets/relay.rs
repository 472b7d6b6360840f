//! A small HTTP proxy for the tests: it answers `CONNECT host:port` by relaying bytes
//! to that target, or refuses every tunnel with a status of the test's choosing, and
//! records what it was asked.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One CONNECT request as the proxy saw it.
#[derive(Debug, Clone)]
pub(crate) struct Asked {
    /// The request line's target, `host:port`.
    pub(crate) target: String,
    /// The `Proxy-Authorization` header's value, if any.
    pub(crate) authorization: Option<String>,
}

/// A running proxy; it stops with the test's runtime.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    pub(crate) url: String,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl Relay {
    /// Relays every tunnel asked for; with `refuse`, answers every CONNECT with that
    /// status line instead (`"403 Forbidden"`).
    pub(crate) async fn start(refuse: Option<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(tunnel(client, Arc::clone(&log), refuse));
            }
        });
        Self { url, asked }
    }

    /// The tunnels asked for so far.
    pub(crate) fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

async fn tunnel(mut client: TcpStream, log: Arc<Mutex<Vec<Asked>>>, refuse: Option<&str>) {
    // The request's head, byte by byte up to the blank line: what follows is the
    // client's first bytes to the target.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        match client.read_u8().await {
            Ok(byte) if head.len() < 16 * 1024 => head.push(byte),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut words = request.split(' ');
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
        return;
    };
    let authorization = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("proxy-authorization")
            .then(|| value.trim().to_owned())
    });
    let target = target.to_owned();
    log.lock().unwrap().push(Asked {
        target: target.clone(),
        authorization,
    });
    if let Some(status) = refuse {
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        let _ = client.write_all(answer.as_bytes()).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(&target).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}
