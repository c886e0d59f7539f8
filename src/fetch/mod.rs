//! HTTP(S) client for what darts fetches from the network: machine images (large,
//! resumable) and small texts such as boot scripts.
//!
//! Built on `ureq` 3 (blocking) with rustls/ring. It adds about ten small crates to the
//! tree (its HTTP/1.1 parser, base64, the root certificate lists) and brings CONNECT
//! proxies with `NO_PROXY`, per-read timeouts and caller-chosen root certificates. reqwest
//! would add a second async HTTP stack (tower, `url` with its ICU-based IDNA tables) for
//! the same features; callers here are a command-line tool and session start-up, where a
//! blocking call (in `spawn_blocking` under tokio) is the simpler tool.
//!
//! TLS is always verified. Trusted roots are Mozilla's list, the system store (which
//! holds an administrator's own CAs) and, optionally, a PEM file of private CAs.
//!
//! Downloads are resumable: bytes go to `<dest>.part`, and a `<dest>.meta` file records
//! the server's validators (ETag, Last-Modified) and total length. An interrupted
//! transfer continues with `Range` (and `If-Range`, so a changed file starts over); a
//! server that ignores ranges gets a restart from zero. A complete file is revalidated
//! with `If-None-Match`/`If-Modified-Since`, so an unchanged image is not fetched again.
//! `<dest>` appears, by rename, only once every byte the server announced has arrived.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use crate::config::Config;
use crate::tls_roots;

mod download;

pub use download::{DownloadOutcome, Progress};

/// Errors from [`Client`] and [`fetch_text`].
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: not an http:// or https:// URL")]
    BadUrl { url: String },
    #[error("proxy {proxy}: {reason}")]
    Proxy { proxy: String, reason: String },
    #[error("{url}: through the proxy: {reason}")]
    ProxyFailed { url: String, reason: String },
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    /// The server's certificate chain did not verify (unknown CA, wrong name, expired).
    #[error("{url}: server certificate refused: {reason}")]
    Certificate { url: String, reason: String },
    #[error("{url}: TLS: {reason}")]
    Tls { url: String, reason: String },
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: timed out ({phase})")]
    Timeout { url: String, phase: String },
    #[error("{url}: {reason}")]
    Network { url: String, reason: String },
    #[error("{url}: unexpected response: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{url}: larger than {max} bytes")]
    TooLarge { url: String, max: u64 },
    #[error("{url}: transfer stopped at {received} of {expected} bytes")]
    Incomplete {
        url: String,
        received: u64,
        expected: u64,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl FetchError {
    /// Whether another try may succeed (network trouble, server errors, cut transfers).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. }
            | Self::Network { .. }
            | Self::Protocol { .. }
            | Self::Incomplete { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }
}

/// Which proxy to go through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// `ALL_PROXY`/`HTTPS_PROXY`/`HTTP_PROXY` and `NO_PROXY` from the environment.
    #[default]
    Environment,
    /// Direct connections only.
    Direct,
    /// This HTTP proxy (CONNECT), e.g. `http://proxy:3128`.
    Url(String),
}

/// How to fetch. [`Default`] is the original's setting for small fetches: 5 tries,
/// 2 s timeouts.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub proxy: ProxySetting,
    /// PEM file of extra trusted CA certificates.
    pub ca_file: Option<PathBuf>,
    /// Limit for TCP connect, proxy negotiation and TLS handshake.
    pub connect_timeout: Duration,
    /// Longest wait for the response head and for each read of the body.
    pub read_timeout: Duration,
    /// Attempts before giving up on transient errors (at least 1).
    pub tries: u32,
    /// Pause between attempts, multiplied by the attempt number.
    pub retry_delay: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            proxy: ProxySetting::Environment,
            ca_file: None,
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(2),
            tries: 5,
            retry_delay: Duration::from_millis(500),
        }
    }
}

impl FetchOptions {
    /// Small fetches (boot scripts): the defaults, through `service_proxy` when set.
    pub fn from_config(config: &Config) -> Self {
        Self {
            proxy: proxy_setting(&config.service_proxy),
            ..Self::default()
        }
    }

    /// Image downloads: 30 s timeouts and 3 tries (the original's wget options), through
    /// `service_proxy` when set.
    pub fn for_downloads(config: &Config) -> Self {
        Self {
            proxy: proxy_setting(&config.service_proxy),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            tries: 3,
            retry_delay: Duration::from_secs(2),
            ca_file: None,
        }
    }
}

fn proxy_setting(service_proxy: &str) -> ProxySetting {
    let p = service_proxy.trim();
    if p.is_empty() {
        ProxySetting::Environment
    } else {
        ProxySetting::Url(p.to_owned())
    }
}

/// Fetches a small text document: `max_len` bytes at most, with retries. Bytes that are
/// not UTF-8 become U+FFFD.
pub fn fetch_text(url: &str, opts: &FetchOptions, max_len: usize) -> Result<String, FetchError> {
    Client::new(opts.clone())?.text(url, max_len)
}

/// An HTTP(S) client with the options' proxy, roots and timeouts. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    opts: FetchOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("opts", &self.opts).finish()
    }
}

impl Client {
    pub fn new(opts: FetchOptions) -> Result<Self, FetchError> {
        let proxy = match &opts.proxy {
            ProxySetting::Environment => ureq::Proxy::try_from_env(),
            ProxySetting::Direct => None,
            ProxySetting::Url(p) => Some(ureq::Proxy::new(p).map_err(|e| FetchError::Proxy {
                proxy: p.clone(),
                reason: e.to_string(),
            })?),
        };
        let extra = match &opts.ca_file {
            Some(path) => tls_roots::read_ca_file(path).map_err(|e| FetchError::CaFile {
                path: e.path,
                reason: e.reason,
            })?,
            None => Vec::new(),
        };
        // ureq wants its own certificate type; it copies the DER bytes.
        let roots: Vec<Certificate<'static>> = tls_roots::public_roots()
            .iter()
            .chain(&extra)
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(proxy)
            .tls_config(tls)
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_recv_response(Some(opts.read_timeout))
            .timeout_per_read(Some(opts.read_timeout))
            .user_agent(concat!("darts/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            agent: ureq::Agent::new_with_config(config),
            opts,
        })
    }

    pub fn options(&self) -> &FetchOptions {
        &self.opts
    }

    /// See [`fetch_text`].
    pub fn text(&self, url: &str, max_len: usize) -> Result<String, FetchError> {
        check_url(url)?;
        self.with_retries(url, || {
            let mut resp = self.agent.get(url).call().map_err(|e| map_err(url, e))?;
            let status = resp.status().as_u16();
            if !(200..300).contains(&status) {
                return Err(FetchError::Status {
                    url: shown(url),
                    status,
                });
            }
            let max = max_len as u64;
            if resp.body().content_length().is_some_and(|n| n > max) {
                return Err(FetchError::TooLarge {
                    url: shown(url),
                    max,
                });
            }
            let mut bytes = Vec::new();
            resp.body_mut()
                .as_reader()
                .take(max + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| map_io(url, e))?;
            if bytes.len() > max_len {
                return Err(FetchError::TooLarge {
                    url: shown(url),
                    max,
                });
            }
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        })
    }

    fn with_retries<T>(
        &self,
        url: &str,
        mut once: impl FnMut() -> Result<T, FetchError>,
    ) -> Result<T, FetchError> {
        let tries = self.opts.tries.max(1);
        let mut attempt = 1;
        loop {
            match once() {
                Err(e) if e.is_transient() && attempt < tries => {
                    tracing::warn!(url = %shown(url), attempt, tries, error = %e, "fetch failed; retrying");
                    std::thread::sleep(self.opts.retry_delay * attempt);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

fn check_url(url: &str) -> Result<(), FetchError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        Ok(())
    } else {
        Err(FetchError::BadUrl { url: shown(url) })
    }
}

/// The URL as errors and logs show it: without user information, query or fragment,
/// which may carry credentials.
fn shown(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

fn map_err(url: &str, e: ureq::Error) -> FetchError {
    match e {
        ureq::Error::Io(io) => map_io(url, io),
        ureq::Error::Rustls(tls) => map_rustls(url, &tls),
        other => map_ureq(url, &other),
    }
}

fn map_ureq(url: &str, e: &ureq::Error) -> FetchError {
    let url = shown(url);
    match e {
        ureq::Error::Rustls(tls) => map_rustls(&url, tls),
        ureq::Error::Tls(reason) => FetchError::Tls {
            url,
            reason: (*reason).into(),
        },
        ureq::Error::Timeout(phase) => FetchError::Timeout {
            url,
            phase: phase.to_string(),
        },
        ureq::Error::InvalidProxyUrl | ureq::Error::ConnectProxyFailed(_) => {
            FetchError::ProxyFailed {
                url,
                reason: e.to_string(),
            }
        }
        ureq::Error::BadUri(_)
        | ureq::Error::Protocol(_)
        | ureq::Error::LargeResponseHeader(..) => FetchError::Protocol {
            url,
            reason: e.to_string(),
        },
        other => FetchError::Network {
            url,
            reason: other.to_string(),
        },
    }
}

fn map_io(url: &str, e: io::Error) -> FetchError {
    if let Some(inner) = e.get_ref() {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return map_rustls(url, tls);
        }
        if let Some(ureq_error) = inner.downcast_ref::<ureq::Error>() {
            return map_ureq(url, ureq_error);
        }
    }
    if e.kind() == io::ErrorKind::TimedOut {
        return FetchError::Timeout {
            url: shown(url),
            phase: "read".into(),
        };
    }
    FetchError::Network {
        url: shown(url),
        reason: e.to_string(),
    }
}

fn map_rustls(url: &str, e: &rustls::Error) -> FetchError {
    let url = shown(url);
    match e {
        rustls::Error::InvalidCertificate(_) => FetchError::Certificate {
            url,
            reason: e.to_string(),
        },
        _ => FetchError::Tls {
            url,
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests;
