//! One signed request to a peer: TCP, TLS verified against the system's roots and
//! `fallback_ca`, HTTP/1.1 (hyper), a JSON body each way, the whole exchange bounded by
//! one deadline. No connection is kept: node requests are rare (a full server, a Manage
//! page) and a fresh connection notices a peer that went away.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::settings::{Peer, Settings};
use super::sign::{self, Envelope};
use crate::session::secret;

/// Largest answer read from a peer.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// Why a peer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("this node has no fallback_key")]
    NoKey,
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("malformed answer: {0}")]
    BadAnswer(String),
    #[error("the system's random generator failed")]
    Random,
}

/// A peer's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    /// The error code of a refusal (`code` of the JSON body).
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> String {
        self.body["message"]
            .as_str()
            .map_or_else(|| format!("HTTP {}", self.status.as_u16()), str::to_owned)
    }
}

/// Sends `body` (JSON) to `path` below the peer's prefix, signed as coming from this
/// node after `hops`, and waits at most `timeout` for the whole answer.
pub async fn post(
    settings: &Settings,
    peer: &Peer,
    to: Destination<'_>,
    path: &str,
    body: &Value,
    hops: &[String],
    timeout: Duration,
) -> Result<Answer, PeerError> {
    match tokio::time::timeout(timeout, exchange(settings, peer, to, path, body, hops)).await {
        Ok(result) => result,
        Err(_) => Err(PeerError::Timeout(timeout)),
    }
}

/// Which node a request is meant for: signed into it, so a peer holding the key cannot
/// replay it to another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// The node of that name (creations and actions on a session).
    Node(&'a str),
    /// Whichever node answers at the peer's address: only for the read-only status and
    /// list questions, asked before the peer's name is known.
    Any,
}

async fn exchange(
    settings: &Settings,
    peer: &Peer,
    to: Destination<'_>,
    path: &str,
    body: &Value,
    hops: &[String],
) -> Result<Answer, PeerError> {
    let key = settings.key.as_ref().ok_or(PeerError::NoKey)?;
    let body = serde_json::to_vec(body).map_err(|e| PeerError::Http(e.to_string()))?;
    let nonce = secret::token().map_err(|_| PeerError::Random)?;
    let mut route = hops.to_vec();
    route.push(settings.name.clone());
    let envelope = Envelope {
        method: "POST",
        path,
        date: crate::session::now(),
        nonce: &nonce,
        node: &settings.name,
        to: match to {
            Destination::Node(name) => name,
            Destination::Any => "",
        },
        hops: &route,
        body: &body,
    };
    let host_header = if peer.host.contains(':') {
        format!("[{}]:{}", peer.host, peer.port)
    } else {
        format!("{}:{}", peer.host, peer.port)
    };
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}{path}", peer.prefix))
        .header(header::HOST, &host_header)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body.clone())))
        .map_err(|e| PeerError::Http(e.to_string()))?;
    sign::apply(request.headers_mut(), envelope.headers(key));
    if let Ok(v) = HeaderValue::from_str(&format!("darts/{}", env!("CARGO_PKG_VERSION"))) {
        request.headers_mut().insert(header::USER_AGENT, v);
    }

    let tcp = TcpStream::connect((peer.host.as_str(), peer.port))
        .await
        .map_err(|e| PeerError::Unreachable(crate::auth::tls::describe_io_error(&e)))?;
    let _ = tcp.set_nodelay(true);
    let response = if peer.https {
        let tls = settings
            .tls
            .as_ref()
            .ok_or_else(|| PeerError::Tls("fallback_ca is unreadable".into()))?;
        let stream = tls
            .connect(&peer.host, tcp)
            .await
            .map_err(|e| PeerError::Tls(crate::auth::tls::describe_io_error(&e)))?;
        send(stream, request).await?
    } else {
        send(tcp, request).await?
    };
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| PeerError::Http(e.to_string()))?
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| PeerError::BadAnswer(format!("HTTP {}: {e}", status.as_u16())))?;
    Ok(Answer { status, body })
}

async fn send<S>(
    stream: S,
    request: Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, PeerError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| PeerError::Http(e.to_string()))?;
    // The connection task ends with the exchange (or when the deadline drops the caller).
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "node connection ended");
        }
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| PeerError::Http(e.to_string()))
}
