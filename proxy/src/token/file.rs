//! websockify's token files: `token: host:port` or `token: unix_socket:/path`, one per
//! line, `#` comments; a single file or every regular file of a directory.
//!
//! websockify's `TokenFile` re-reads every file on every connection. Here a source keeps
//! the parsed routes in memory (swapped whole, `arc-swap`), and a lookup touches nothing
//! else: a flood of unknown tokens costs no file system call and never waits on a disk.
//! The files are watched by one thread per source ([`TokenFileSource::watch`]): inotify
//! (the `notify` crate) wakes it when the path changes, and it also checks every `RECHECK`
//! in case an event was lost (network file systems, a replaced directory). It compares a
//! fingerprint (size, mtime, inode of each file) and re-reads the files only when it
//! changed. File times have the kernel's coarse-clock granularity, so a file modified
//! within `SETTLE` is re-read even if its fingerprint looks unchanged.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::error::TokenFileError;
use darts_vnc::vnc_auth::Password;
use rustls::pki_types::ServerName;

use crate::rfb::BackendSecurity;
use crate::route::{Route, TokenKey};
use crate::target::Target;
use crate::tls::CertPaths;

/// How often the watcher checks the files without an event.
const RECHECK: Duration = Duration::from_secs(1);
/// Files changed this recently are re-read whatever their fingerprint says.
const SETTLE: Duration = Duration::from_secs(2);
/// Token files bigger than this are refused rather than read.
const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// One line that could not be used, for the log. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineIssue {
    /// Line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// One usable line: a token, its target, and darts' options after the target.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// Line number, from 1.
    pub line: usize,
    /// The token as written in the file (only its digest is kept once loaded).
    pub token: String,
    /// Where the token leads.
    pub target: Target,
    /// The words after the target.
    pub options: EntryOptions,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("line", &self.line)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// darts' extensions to websockify's format, as words after the target:
/// `view-only`, `view-clipboard` (a view-only viewer still receives the guest's clipboard),
/// `clipboard=BYTES` (0 disables), `security=none|vnc-password|x509|x509+password`,
/// `password=PW` or `password-file=PATH`, `ca=PATH`, `cert=PATH`, `key=PATH`, `server-name=NAME`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EntryOptions {
    /// `view-only`: the viewer's input is dropped.
    pub view_only: bool,
    /// `view-clipboard`: a view-only viewer still receives the guest's clipboard.
    pub view_clipboard: bool,
    /// `clipboard=BYTES`: largest paste forwarded; 0 disables the clipboard.
    pub clipboard: Option<u32>,
    /// `security=`: unset means x509 with `ca`, vnc-password with a password, else none.
    pub security: Option<String>,
    /// `password=`: the VNC password, in the file itself.
    pub password: Option<String>,
    /// `password-file=`: a file holding the VNC password (trailing line ends dropped);
    /// used when `password` is unset.
    pub password_file: Option<PathBuf>,
    /// `ca=`: PEM of the CA the target's certificate must chain to (x509).
    pub ca: Option<PathBuf>,
    /// `cert=`: darts' client certificate for x509.
    pub cert: Option<PathBuf>,
    /// `key=`: its private key, when not in the `cert` file.
    pub key: Option<PathBuf>,
    /// `server-name=`: the name the target's certificate must carry (default
    /// `localhost`).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for EntryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryOptions")
            .field("view_only", &self.view_only)
            .field("view_clipboard", &self.view_clipboard)
            .field("clipboard", &self.clipboard)
            .field("security", &self.security)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl EntryOptions {
    fn set(&mut self, word: &str) -> Result<(), String> {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let path = || {
            (!value.is_empty())
                .then(|| PathBuf::from(value))
                .ok_or_else(|| format!("{key} needs a path"))
        };
        match key {
            "view-only" | "view_only" if value.is_empty() => self.view_only = true,
            "view-clipboard" if value.is_empty() => self.view_clipboard = true,
            "clipboard" => {
                self.clipboard = Some(
                    value
                        .parse()
                        .map_err(|_| "clipboard needs a size in bytes".to_owned())?,
                )
            }
            "security" => match value {
                "none" | "vnc-password" | "x509" | "x509+password" => {
                    self.security = Some(value.to_owned())
                }
                _ => {
                    return Err("security must be none, vnc-password, x509 or x509+password".into())
                }
            },
            "password" => self.password = Some(value.to_owned()),
            "password-file" => self.password_file = Some(path()?),
            "ca" => self.ca = Some(path()?),
            "cert" => self.cert = Some(path()?),
            "key" => self.key = Some(path()?),
            "server-name" => self.server_name = Some(value.to_owned()),
            _ => return Err(format!("unknown option {key:?}")),
        }
        Ok(())
    }
}

impl Entry {
    /// Builds the route, reading password and certificate files the options name.
    pub fn into_route(self) -> Result<Route, String> {
        let o = &self.options;
        let password = match (&o.password, &o.password_file) {
            (Some(p), _) => Some(Password::new(p.as_bytes())),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("password file {}: {e}", f.display()))?;
                Some(Password::new(
                    text.trim_end_matches(['\n', '\r']).as_bytes(),
                ))
            }
            (None, None) => None,
        };
        let security = match o.security.as_deref().unwrap_or(if o.ca.is_some() {
            "x509"
        } else if password.is_some() {
            "vnc-password"
        } else {
            "none"
        }) {
            "none" => BackendSecurity::None,
            "vnc-password" => BackendSecurity::VncPassword(
                password
                    .clone()
                    .ok_or("vnc-password needs password= or password-file=")?,
            ),
            mode => {
                let ca = o.ca.as_ref().ok_or("x509 needs ca=")?;
                let client = match (&o.cert, &o.key) {
                    (Some(cert), key) => Some(CertPaths {
                        cert: cert.clone(),
                        key: key.clone(),
                    }),
                    (None, None) => None,
                    (None, Some(_)) => return Err("key= needs cert=".into()),
                };
                let tls =
                    crate::tls::client_config(ca, client.as_ref()).map_err(|e| e.to_string())?;
                let name = o.server_name.clone().unwrap_or_else(|| "localhost".into());
                let server_name =
                    ServerName::try_from(name).map_err(|e| format!("server-name: {e}"))?;
                let password = if mode == "x509+password" {
                    Some(
                        password
                            .clone()
                            .ok_or("x509+password needs password= or password-file=")?,
                    )
                } else {
                    None
                };
                BackendSecurity::X509 {
                    tls,
                    server_name,
                    password,
                }
            }
        };
        Ok(Route::new(self.target)
            .security(security)
            .view_only(o.view_only)
            .view_only_clipboard(o.view_clipboard)
            .max_clipboard(o.clipboard))
    }
}

/// Parses the text of one token file. Pure: reads no other file.
pub fn parse(text: &str) -> (Vec<Entry>, Vec<LineIssue>) {
    let mut entries = Vec::new();
    let mut issues = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let issue = |reason: String| LineIssue {
            line: i + 1,
            reason,
        };
        let Some((token, rest)) = split_entry(line) else {
            issues.push(issue(
                "expected 'token: host:port' or 'token: unix_socket:/path'".into(),
            ));
            continue;
        };
        let mut words = rest.split_whitespace();
        let Some(target) = words.next().and_then(Target::parse) else {
            issues.push(issue("target is not host:port or unix_socket:/path".into()));
            continue;
        };
        let mut options = EntryOptions::default();
        match words.try_for_each(|w| options.set(w)) {
            Ok(()) => entries.push(Entry {
                line: i + 1,
                token: token.to_owned(),
                target,
                options,
            }),
            Err(reason) => issues.push(issue(reason)),
        }
    }
    (entries, issues)
}

/// Splits at the first colon followed by white space (websockify splits on ": ").
fn split_entry(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let at = (0..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == b':' && bytes[i + 1].is_ascii_whitespace())?;
    let token = line[..at].trim();
    (!token.is_empty()).then(|| (token, line[at + 1..].trim()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    len: u64,
    mtime: (i64, i64),
    inode: u64,
}

impl Stamp {
    fn recently_modified(&self) -> bool {
        let mtime = SystemTime::UNIX_EPOCH
            + Duration::new(
                self.mtime.0.max(0) as u64,
                self.mtime.1.clamp(0, 999_999_999) as u32,
            );
        SystemTime::now()
            .duration_since(mtime)
            .map_or(true, |age| age < SETTLE)
    }
}

/// What the files were when last read.
#[derive(Debug, Default)]
struct Seen {
    fingerprint: Option<Vec<Stamp>>,
}

/// A token file or directory, re-read when it changes. Cheap to clone: clones share the
/// routes.
#[derive(Debug, Clone)]
pub struct TokenFileSource {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    routes: ArcSwap<HashMap<TokenKey, Route>>,
    /// Held while reading the files, so two refreshes never interleave.
    seen: Mutex<Seen>,
    /// File system calls made (stat, directory listing, read): never on a lookup.
    fs_calls: AtomicU64,
}

impl TokenFileSource {
    /// Opens and reads `path`. A missing path is an error here (a typo should not start a
    /// gateway that routes nothing); later disappearance only empties the routes. Call
    /// [`watch`](Self::watch) to follow changes.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TokenFileError> {
        let path = path.into();
        std::fs::metadata(&path).map_err(|e| TokenFileError::Read(path.clone(), e))?;
        let source = Self {
            inner: Arc::new(Inner {
                path,
                routes: ArcSwap::from_pointee(HashMap::new()),
                seen: Mutex::new(Seen::default()),
                fs_calls: AtomicU64::new(0),
            }),
        };
        source.refresh(true);
        Ok(source)
    }

    /// Follows changes of the files from a thread of its own, which ends when the last
    /// clone of this source is dropped. Without inotify (an error setting it up is
    /// logged), the periodic check alone follows them.
    pub fn watch(&self) -> Result<(), TokenFileError> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let path = self.inner.path.clone();
        std::thread::Builder::new()
            .name("token-files".into())
            .spawn(move || watch_loop(weak, &path))
            .map(drop)
            .map_err(|e| TokenFileError::Read(self.inner.path.clone(), e))
    }

    /// The file or directory this source reads.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Number of routes currently loaded.
    pub fn len(&self) -> usize {
        self.inner.routes.load().len()
    }

    /// No routes loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// File system calls this source has made so far (for tests and diagnostics).
    pub fn fs_calls(&self) -> u64 {
        self.inner.fs_calls.load(Ordering::Relaxed)
    }

    /// Memory only.
    pub(crate) fn lookup(&self, key: &TokenKey) -> Option<Route> {
        self.inner.routes.load().get(key).cloned()
    }

    /// Re-reads the files if their fingerprint changed (or always, with `force`).
    /// Blocking: called at open, from the watcher thread and on SIGHUP (off the runtime).
    pub fn refresh(&self, force: bool) {
        self.inner.refresh(force);
    }
}

/// The watcher thread: woken by inotify events or every `RECHECK`.
fn watch_loop(weak: Weak<Inner>, path: &Path) {
    use notify::Watcher;
    let (tx, rx) = mpsc::sync_channel::<()>(1);
    // Editors replace files (write a new one, rename it over): watch the directory that
    // holds a single file, and the directory itself otherwise.
    let watched = if path.is_dir() {
        path.to_owned()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_owned)
    };
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // The refresh's own reads are access events: waking on them would loop.
        if matches!(&event, Ok(e) if e.kind.is_access()) {
            return;
        }
        // One pending wake-up is enough: the refresh reads everything.
        let _ = tx.try_send(());
    })
    .and_then(|mut w| {
        w.watch(&watched, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    });
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(path = %watched.display(), error = %e, "cannot watch the token files; checking them every second");
            None
        }
    };
    loop {
        let _ = rx.recv_timeout(RECHECK);
        let Some(inner) = weak.upgrade() else {
            return;
        };
        inner.refresh(false);
    }
}

impl Inner {
    fn refresh(&self, force: bool) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let fingerprint = self.fingerprint();
        let settling = fingerprint.iter().any(|s| s.recently_modified());
        if !force && !settling && seen.fingerprint.as_ref() == Some(&fingerprint) {
            return;
        }
        let mut routes = HashMap::new();
        for stamp in &fingerprint {
            self.load_file(&stamp.path, stamp.len, &mut routes);
        }
        let before = self.routes.load().len();
        if before != routes.len() || seen.fingerprint.as_ref() != Some(&fingerprint) {
            tracing::info!(source = %self.path.display(), routes = routes.len(), "token file source loaded");
        }
        self.routes.store(Arc::new(routes));
        seen.fingerprint = Some(fingerprint);
    }

    fn load_file(&self, path: &Path, len: u64, routes: &mut HashMap<TokenKey, Route>) {
        if len > MAX_FILE_SIZE {
            tracing::warn!(file = %path.display(), len, "token file too large, ignored");
            return;
        }
        self.fs_calls.fetch_add(1, Ordering::Relaxed);
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "token file unreadable, ignored");
                return;
            }
        };
        let (entries, issues) = parse(&text);
        for issue in issues {
            tracing::warn!(file = %path.display(), line = issue.line, reason = %issue.reason, "token file line ignored");
        }
        for entry in entries {
            let (line, key) = (entry.line, TokenKey::of(&entry.token));
            match entry.into_route() {
                Ok(route) => {
                    routes.insert(key, route);
                }
                Err(reason) => {
                    tracing::warn!(file = %path.display(), line, %reason, "token file line ignored")
                }
            }
        }
    }

    /// The files this source consists of now, with what identifies their content.
    fn fingerprint(&self) -> Vec<Stamp> {
        let stamp = |path: PathBuf| -> Option<Stamp> {
            self.fs_calls.fetch_add(1, Ordering::Relaxed);
            let meta = std::fs::metadata(&path).ok()?;
            meta.is_file().then(|| Stamp {
                len: meta.len(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                inode: meta.ino(),
                path,
            })
        };
        self.fs_calls.fetch_add(1, Ordering::Relaxed);
        match std::fs::read_dir(&self.path) {
            Ok(dir) => {
                let mut stamps: Vec<Stamp> = dir
                    .filter_map(|e| e.ok())
                    .filter_map(|e| stamp(e.path()))
                    .collect();
                stamps.sort_by(|a, b| a.path.cmp(&b.path));
                stamps
            }
            Err(_) => stamp(self.path.clone()).into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_websockify_format() {
        let text = "# comment\n\ntok1: 127.0.0.1:5901\n tok2:\tunix_socket:/tmp/v.sock \nbroken line\nt3: nowhere\n";
        let (entries, issues) = parse(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].token, "tok1");
        assert_eq!(entries[1].target, Target::Unix("/tmp/v.sock".into()));
        assert_eq!(
            issues.iter().map(|i| i.line).collect::<Vec<_>>(),
            vec![5, 6]
        );
    }

    #[test]
    fn token_may_not_be_empty() {
        let (entries, issues) = parse(": 127.0.0.1:1\n");
        assert!(entries.is_empty());
        assert_eq!(issues.len(), 1);
    }

    #[test]
    fn darts_options_after_the_target() {
        let (entries, issues) = parse("v: unix_socket:/run/v.sock view-only clipboard=0\np: 127.0.0.1:5900 password=s3cret\nbad: 127.0.0.1:1 frobnicate\nw: 127.0.0.1:5901 view-only view-clipboard\n");
        assert_eq!(issues.len(), 1);
        assert!(issues[0].reason.contains("frobnicate"));
        let view = entries[0].clone().into_route().unwrap();
        assert!(view.view_only);
        assert_eq!(view.max_clipboard, Some(0));
        assert!(!view.view_only_clipboard);
        let w = entries[2].clone().into_route().unwrap();
        assert!(w.view_only && w.view_only_clipboard);
        let pw = entries[1].clone().into_route().unwrap();
        assert_eq!(pw.security.name(), "vnc-password");
        assert!(
            !format!("{:?} {:?}", entries[1], pw).contains("s3cret"),
            "passwords never print"
        );
    }

    #[test]
    fn x509_options_need_readable_files() {
        let (entries, _) = parse("x: 127.0.0.1:5900 security=x509 ca=/nonexistent/ca.pem\ny: 127.0.0.1:5900 security=x509\n");
        assert!(entries[0]
            .clone()
            .into_route()
            .unwrap_err()
            .contains("/nonexistent/ca.pem"));
        assert!(entries[1].clone().into_route().unwrap_err().contains("ca="));
    }
}
