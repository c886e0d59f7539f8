//! A small client of darts' JSON API over HTTP or HTTPS: one request per connection,
//! the login cookie and CSRF token kept as the pages keep them.
//!
//! Declared from a test file with `#[path = "support/web.rs"] mod web;` after `mod support;`.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer: status, header block, body.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): HTTP {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Where a server is and how to reach it.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    /// Trusted CA for https; `None` for plain http.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Sends one request and reads the whole answer (bounded).
pub async fn request(
    server: &Server,
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Resp {
    let addr = server.addr;
    let mut req =
        format!("{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n")
            .into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if let Some(b) = body {
        req.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    if let Some(b) = body {
        req.extend_from_slice(b);
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    let buf = match &server.tls {
        None => exchange(tcp, &req).await,
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(addr.ip().to_string()).unwrap();
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .unwrap();
            exchange(stream, &req).await
        }
    };
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Resp {
        status,
        head,
        body: buf[split + 4..].to_vec(),
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, req: &[u8]) -> Vec<u8> {
    let _ = s.write_all(req).await;
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 16384];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(180), read)
        .await
        .expect("no answer within 180 s");
    buf
}

/// A logged-in user of the pages.
#[derive(Clone)]
pub struct Browser {
    pub server: Server,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

impl Browser {
    pub fn new(server: Server) -> Self {
        Self {
            server,
            cookie: None,
            csrf: None,
        }
    }

    /// Logs in (any password works on a server without authentication).
    pub async fn login(&mut self, user: &str) {
        let r = self
            .send(
                "POST",
                "/api/login",
                Some(json!({ "user": user, "password": "x" })),
            )
            .await;
        assert_eq!(r.status, 200, "login: {}", String::from_utf8_lossy(&r.body));
        self.keep_cookie(&r);
        self.csrf = Some(r.json()["csrf"].as_str().unwrap().to_owned());
    }

    /// Keeps the `darts_login` cookie a response sets.
    pub fn keep_cookie(&mut self, r: &Resp) {
        let cookie = r
            .head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.trim())
            .find(|v| v.starts_with("darts_login="))
            .expect("a darts_login cookie");
        self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
    }

    fn headers(&self, json_body: bool) -> Vec<(String, String)> {
        let mut h = Vec::new();
        if let Some(c) = &self.cookie {
            h.push(("Cookie".into(), c.clone()));
        }
        if let Some(t) = &self.csrf {
            h.push(("X-CSRF-Token".into(), t.clone()));
        }
        if json_body {
            h.push(("Content-Type".into(), "application/json".into()));
        }
        h
    }

    /// A request to `/darts{path}` with an optional JSON body.
    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| b.to_string());
        request(
            &self.server,
            method,
            &format!("/darts{path}"),
            &self.headers(body.is_some()),
            body.as_deref().map(str::as_bytes),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None).await
    }
}
