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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use crate::config::Config;

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

/// Where a download stands, reported after every chunk written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes in the file so far, including those of an earlier, resumed attempt.
    pub received: u64,
    /// Full length, when the server announced it.
    pub total: Option<u64>,
    /// Bytes that were already there when this transfer started.
    pub resumed_from: u64,
}

/// What a download did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadOutcome {
    /// The file was (re)written; `resumed_from` bytes came from an earlier attempt.
    Downloaded { bytes: u64, resumed_from: u64 },
    /// The server says the file we have is current.
    Unchanged,
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
        let mut roots: Vec<Certificate<'static>> = system_roots().to_vec();
        if let Some(path) = &opts.ca_file {
            roots.extend(read_ca_file(path)?);
        }
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

    /// Downloads `url` to `dest` (see the module documentation), calling `progress` as
    /// bytes arrive. Directories up to `dest` are created once the server has answered.
    pub fn download(
        &self,
        url: &str,
        dest: &Path,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<DownloadOutcome, FetchError> {
        check_url(url)?;
        let mut job = Job::new(url, dest);
        self.with_retries(url, || job.attempt(&self.agent, progress))
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

/// Mozilla's roots plus the system store, loaded once per process.
fn system_roots() -> &'static [Certificate<'static>] {
    static ROOTS: OnceLock<Vec<Certificate<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "system certificate store");
        }
        roots.extend(
            native
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
        );
        roots
    })
}

fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, FetchError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let err = |reason: String| FetchError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect())
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

/// The server's description of a file version, kept in `<dest>.meta`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Version {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
}

impl Version {
    fn from_response(
        url: &str,
        resp: &ureq::http::Response<ureq::Body>,
        length: Option<u64>,
    ) -> Self {
        Self {
            url: shown(url),
            etag: header(resp, "etag"),
            last_modified: header(resp, "last-modified"),
            length,
        }
    }

    /// The validator for `If-Range`: a strong ETag, else the date.
    fn if_range(&self) -> Option<&str> {
        match &self.etag {
            Some(tag) if !tag.starts_with("W/") => Some(tag),
            _ => self.last_modified.as_deref(),
        }
    }
}

/// The sidecar: the finished file's version and the `.part` file's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    complete: Option<Version>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partial: Option<Version>,
}

/// One download across its attempts.
struct Job<'a> {
    url: &'a str,
    dest: &'a Path,
    part: PathBuf,
    meta_path: PathBuf,
    meta: Meta,
}

impl<'a> Job<'a> {
    fn new(url: &'a str, dest: &'a Path) -> Self {
        let part = with_suffix(dest, ".part");
        let meta_path = with_suffix(dest, ".meta");
        let meta = fs::read(&meta_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            url,
            dest,
            part,
            meta_path,
            meta,
        }
    }

    fn io(&self, path: &Path) -> impl FnOnce(io::Error) -> FetchError {
        let path = path.to_owned();
        move |source| FetchError::Io { path, source }
    }

    /// Bytes of `.part` that belong to this URL (0, after removing it, otherwise).
    fn resumable_len(&mut self) -> Result<u64, FetchError> {
        let len = fs::metadata(&self.part).map(|m| m.len()).unwrap_or(0);
        let ours = self
            .meta
            .partial
            .as_ref()
            .is_some_and(|v| v.url == self.url);
        if len > 0 && ours {
            return Ok(len);
        }
        self.meta.partial = None;
        match fs::remove_file(&self.part) {
            Ok(()) => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(self.io(&self.part.clone())(e)),
        }
    }

    fn attempt(
        &mut self,
        agent: &ureq::Agent,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<DownloadOutcome, FetchError> {
        let have = self.resumable_len()?;
        if have > 0
            && self
                .meta
                .partial
                .as_ref()
                .and_then(|v| v.length)
                .is_some_and(|total| total == have)
        {
            // Everything arrived last time; only the rename was missing.
            return self.finish(have, have);
        }
        let mut req = agent.get(self.url);
        let mut conditional = false;
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
            if let Some(v) = self.meta.partial.as_ref().and_then(Version::if_range) {
                req = req.header("If-Range", v);
            }
        } else if let Some(v) = self
            .meta
            .complete
            .as_ref()
            .filter(|v| v.url == self.url && self.dest.is_file())
        {
            if let Some(tag) = &v.etag {
                req = req.header("If-None-Match", tag);
                conditional = true;
            }
            if let Some(date) = &v.last_modified {
                req = req.header("If-Modified-Since", date);
                conditional = true;
            }
        }
        let resp = req.call().map_err(|e| map_err(self.url, e))?;
        let status = resp.status().as_u16();
        let length = resp.body().content_length();
        let (file, start, total) = match status {
            304 if conditional => return Ok(DownloadOutcome::Unchanged),
            206 if have > 0 => {
                let range = header(&resp, "content-range").and_then(|r| parse_content_range(&r));
                match range {
                    Some((start, total)) if start == have => {
                        let total = total.or_else(|| length.map(|n| have + n));
                        let file = OpenOptions::new()
                            .append(true)
                            .open(&self.part)
                            .map_err(self.io(&self.part))?;
                        (file, have, total)
                    }
                    _ => {
                        // A range we did not ask for: start over on the next try.
                        self.discard_part()?;
                        return Err(FetchError::Protocol {
                            url: shown(self.url),
                            reason: "partial content does not continue the file".into(),
                        });
                    }
                }
            }
            416 if have > 0 => {
                self.discard_part()?;
                return Err(FetchError::Protocol {
                    url: shown(self.url),
                    reason: "server refused to resume; starting over".into(),
                });
            }
            200 => {
                if have > 0 {
                    tracing::info!(url = %shown(self.url), "server sent the whole file; restarting from zero");
                }
                self.create_parent()?;
                let file = File::create(&self.part).map_err(self.io(&self.part))?;
                self.meta.partial = Some(Version::from_response(self.url, &resp, length));
                self.save_meta()?;
                (file, 0, length)
            }
            _ => {
                return Err(FetchError::Status {
                    url: shown(self.url),
                    status,
                })
            }
        };
        let (_, body) = resp.into_parts();
        let received = self.copy_body(body, file, start, total, progress)?;
        if let Some(expected) = total {
            if received != expected {
                return Err(FetchError::Incomplete {
                    url: shown(self.url),
                    received,
                    expected,
                });
            }
        }
        self.finish(received, start)
    }

    fn copy_body(
        &self,
        body: ureq::Body,
        mut file: File,
        start: u64,
        total: Option<u64>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<u64, FetchError> {
        let mut reader = body.into_reader();
        let mut buf = vec![0u8; 256 * 1024];
        let mut received = start;
        progress(&Progress {
            received,
            total,
            resumed_from: start,
        });
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Keep what arrived for the next attempt.
                    file.flush().map_err(self.io(&self.part))?;
                    let _ = file.sync_data();
                    return Err(match map_io(self.url, e) {
                        FetchError::Network { .. } if total.is_some() => FetchError::Incomplete {
                            url: shown(self.url),
                            received,
                            expected: total.unwrap_or_default(),
                        },
                        other => other,
                    });
                }
            };
            file.write_all(&buf[..n]).map_err(self.io(&self.part))?;
            received += n as u64;
            if total.is_some_and(|t| received > t) {
                return Err(FetchError::Protocol {
                    url: shown(self.url),
                    reason: "more bytes than announced".into(),
                });
            }
            progress(&Progress {
                received,
                total,
                resumed_from: start,
            });
        }
        file.sync_all().map_err(self.io(&self.part))?;
        Ok(received)
    }

    fn finish(&mut self, bytes: u64, resumed_from: u64) -> Result<DownloadOutcome, FetchError> {
        fs::rename(&self.part, self.dest).map_err(self.io(self.dest))?;
        let mut done = self.meta.partial.take().unwrap_or_else(|| Version {
            url: shown(self.url),
            ..Version::default()
        });
        done.length = Some(bytes);
        self.meta.complete = Some(done);
        self.save_meta()?;
        Ok(DownloadOutcome::Downloaded {
            bytes,
            resumed_from,
        })
    }

    fn discard_part(&mut self) -> Result<(), FetchError> {
        self.meta.partial = None;
        match fs::remove_file(&self.part) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(&self.part)(e)),
        }
        self.save_meta()
    }

    fn create_parent(&self) -> Result<(), FetchError> {
        match self.dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => {
                fs::create_dir_all(dir).map_err(self.io(dir))
            }
            _ => Ok(()),
        }
    }

    fn save_meta(&self) -> Result<(), FetchError> {
        let text = serde_json::to_vec_pretty(&self.meta).map_err(|e| FetchError::Io {
            path: self.meta_path.clone(),
            source: io::Error::other(e),
        })?;
        let tmp = with_suffix(&self.meta_path, ".tmp");
        fs::write(&tmp, text).map_err(self.io(&tmp))?;
        fs::rename(&tmp, &self.meta_path).map_err(self.io(&self.meta_path))
    }
}

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`) → (START, TOTAL).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn only_http_urls() {
        assert!(check_url("HTTPS://example.org/a.iso").is_ok());
        assert!(check_url("http://example.org/").is_ok());
        assert!(matches!(
            check_url("ftp://example.org/a.iso"),
            Err(FetchError::BadUrl { .. })
        ));
        assert!(check_url("/etc/passwd").is_err());
    }

    #[test]
    fn errors_never_show_credentials() {
        assert_eq!(
            shown("https://user:secret@h.example:8443/a/b.sh?token=T#f"),
            "https://h.example:8443/a/b.sh"
        );
        assert_eq!(shown("http://h/x"), "http://h/x");
        let e = check_url("ftp://u:p@h/x?t=1").unwrap_err().to_string();
        assert!(!e.contains("u:p@"), "{e}");
        assert!(!e.contains("t=1"), "{e}");
    }

    #[test]
    fn transient_errors() {
        let url = String::from("u");
        assert!(FetchError::Status {
            url: url.clone(),
            status: 503
        }
        .is_transient());
        assert!(!FetchError::Status {
            url: url.clone(),
            status: 404
        }
        .is_transient());
        assert!(!FetchError::Certificate {
            url,
            reason: String::new()
        }
        .is_transient());
    }

    #[test]
    fn if_range_prefers_strong_etags() {
        let mut v = Version {
            url: "u".into(),
            etag: Some("W/\"x\"".into()),
            last_modified: Some("Tue, 01 Jul 2025 10:00:00 GMT".into()),
            length: None,
        };
        assert_eq!(v.if_range(), Some("Tue, 01 Jul 2025 10:00:00 GMT"));
        v.etag = Some("\"x\"".into());
        assert_eq!(v.if_range(), Some("\"x\""));
    }

    #[test]
    fn proxy_from_config() {
        assert_eq!(proxy_setting(""), ProxySetting::Environment);
        assert_eq!(
            proxy_setting(" http://p:3128 "),
            ProxySetting::Url("http://p:3128".into())
        );
    }

    #[test]
    fn ca_file_without_certificates_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        fs::write(&f, "not a certificate\n").unwrap();
        let e = Client::new(FetchOptions {
            ca_file: Some(f),
            ..FetchOptions::default()
        })
        .unwrap_err();
        assert!(matches!(e, FetchError::CaFile { .. }), "{e}");
    }
}
