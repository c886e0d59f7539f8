//! A raw HTTP client that behaves like the pages, and checks on its answers.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::qemu::{self, RfbOverWs};
use crate::support::ws_connect;

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    /// Every value of a repeated header (`Set-Cookie`).
    pub(crate) fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
            .collect()
    }

    /// The `Set-Cookie` of cookie `name`.
    pub(crate) fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers("set-cookie")
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.head, self.text()))
    }

    /// An API error answer with `status` and `code`.
    pub(crate) fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}\n{}", self.head, self.text());
        let body = self.json();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        body
    }
}

/// Sends raw bytes as one request (`Connection: close`) and reads the whole answer.
pub(crate) async fn exchange(addr: SocketAddr, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before reading a refused body to its end.
    let _ = s.write_all(request).await;
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
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .expect("no answer within 120 s");
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

pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Resp {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
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
    exchange(addr, &req).await
}

/// A client that keeps the login cookie and sends the CSRF token, as the pages do.
#[derive(Debug, Clone)]
pub(crate) struct Browser {
    pub(crate) addr: SocketAddr,
    pub(crate) cookie: Option<String>,
    pub(crate) csrf: Option<String>,
    /// Extra headers on every request.
    pub(crate) headers: Vec<(String, String)>,
}

impl Browser {
    pub(crate) fn with_header(&self, k: &str, v: &str) -> Self {
        let mut b = self.clone();
        b.headers.push((k.to_owned(), v.to_owned()));
        b
    }

    /// A client at another address, as a trusted proxy reports it.
    pub(crate) fn at_addr(&self, ip: &str) -> Self {
        self.with_header("X-Forwarded-For", ip)
    }

    pub(crate) async fn login(&mut self, user: &str, password: &str) -> Resp {
        let r = self
            .send_raw(
                "POST",
                "/darts/api/login",
                Some(
                    json!({ "user": user, "password": password })
                        .to_string()
                        .as_bytes(),
                ),
                "application/json",
            )
            .await;
        if r.status == 200 {
            let cookie = r.header("set-cookie").unwrap();
            self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
            self.csrf = Some(r.json()["csrf"].as_str().unwrap().to_owned());
        }
        r
    }

    /// After a 202 `mfa_required`: keeps the pending login's cookie and CSRF token.
    pub(crate) fn hold_pending(&mut self, r: &Resp) {
        let cookie = r.set_cookie("darts_mfa").expect("a darts_mfa cookie");
        self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
        self.csrf = Some(r.json()["csrf"].as_str().unwrap().to_owned());
    }

    /// Sends a second-factor code; on success keeps the login as `login` does.
    pub(crate) async fn send_code(&mut self, code: &str) -> Resp {
        let r = self
            .send("POST", "/api/login/mfa", Some(json!({ "code": code })))
            .await;
        if r.status == 200 {
            let cookie = r.set_cookie("darts_login").expect("a darts_login cookie");
            self.cookie = Some(cookie.split(';').next().unwrap().to_owned());
            self.csrf = Some(r.json()["csrf"].as_str().unwrap().to_owned());
        }
        r
    }

    fn all_headers(&self, content_type: Option<&str>) -> Vec<(String, String)> {
        let mut h = self.headers.clone();
        if let Some(c) = &self.cookie {
            h.push(("Cookie".into(), c.clone()));
        }
        if let Some(t) = &self.csrf {
            h.push(("X-CSRF-Token".into(), t.clone()));
        }
        if let Some(ct) = content_type {
            h.push(("Content-Type".into(), ct.into()));
        }
        h
    }

    pub(crate) async fn get(&self, path: &str) -> Resp {
        request(
            self.addr,
            "GET",
            &format!("/darts{path}"),
            &self.all_headers(None),
            None,
        )
        .await
    }

    /// A JSON request to `/darts{path}`.
    pub(crate) async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| b.to_string());
        let ct = body.as_ref().map(|_| "application/json");
        request(
            self.addr,
            method,
            &format!("/darts{path}"),
            &self.all_headers(ct),
            body.as_deref().map(str::as_bytes),
        )
        .await
    }

    pub(crate) async fn send_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        ct: &str,
    ) -> Resp {
        request(self.addr, method, path, &self.all_headers(Some(ct)), body).await
    }
}

pub(crate) fn token_of(url: &str) -> &str {
    url.rsplit_once("path=?token=").unwrap().1
}

/// Opens the websocket the way noVNC does with a link's token and reads the guest's RFB
/// handshake through darts (which answers QEMU's VNC password itself).
pub(crate) async fn rfb_through(addr: SocketAddr, token: &str) -> (RfbOverWs, qemu::ServerInit) {
    let ws = ws_connect(&format!("ws://{addr}/darts/vnc.html?token={token}"), &[])
        .await
        .unwrap_or_else(|s| panic!("websocket refused with {s}"));
    let mut rfb = RfbOverWs::new(ws, Duration::from_secs(30));
    let init = rfb.handshake().await;
    (rfb, init)
}

pub(crate) fn assert_secure(r: &Resp) {
    let csp = r.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(r.header("referrer-policy").as_deref(), Some("no-referrer"));
}

pub(crate) fn assert_api_headers(r: &Resp) {
    assert_secure(r);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
}
