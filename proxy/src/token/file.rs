//! websockify's token files: `token: host:port` or `token: unix_socket:/path`, one per
//! line, `#` comments; a single file or every regular file of a directory.
//!
//! websockify's `TokenFile` re-reads every file on every connection. Here a source keeps
//! the parsed routes and a fingerprint (size, mtime, inode of each file); a lookup
//! re-reads the files when the fingerprint changed (looked at on every unknown token, and
//! at most every `RECHECK_HIT` for a known one). So a token written to a file works on the
//! next connection, and a removed one stops working within `RECHECK_HIT`. File times have
//! the kernel's coarse-clock granularity, so a file modified within `SETTLE` is re-read
//! even if its fingerprint looks unchanged.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::error::TokenFileError;
use crate::target::Target;
use crate::token::TokenKey;

/// How stale the routes may be when a lookup finds its token.
const RECHECK_HIT: Duration = Duration::from_millis(250);
/// Files changed this recently are re-read whatever their fingerprint says.
const SETTLE: Duration = Duration::from_secs(2);
/// Token files bigger than this are refused rather than read.
const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// One line that could not be used, for the log. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineIssue {
    pub line: usize,
    pub reason: &'static str,
}

/// Parses the text of one token file.
pub fn parse(text: &str) -> (Vec<(String, Target)>, Vec<LineIssue>) {
    let mut routes = Vec::new();
    let mut issues = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((token, target)) = split_entry(line) else {
            issues.push(LineIssue {
                line: i + 1,
                reason: "expected 'token: host:port' or 'token: unix_socket:/path'",
            });
            continue;
        };
        match Target::parse(target) {
            Some(t) => routes.push((token.to_owned(), t)),
            None => issues.push(LineIssue {
                line: i + 1,
                reason: "target is not host:port or unix_socket:/path",
            }),
        }
    }
    (routes, issues)
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

#[derive(Debug)]
struct State {
    fingerprint: Option<Vec<Stamp>>,
    routes: HashMap<TokenKey, Target>,
    checked_at: Instant,
}

/// A token file or directory, re-read when it changes.
#[derive(Debug)]
pub struct TokenFileSource {
    path: PathBuf,
    state: Mutex<State>,
}

impl TokenFileSource {
    /// Opens and reads `path`. A missing path is an error here (a typo should not start a
    /// gateway that routes nothing); later disappearance only empties the routes.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, TokenFileError> {
        let path = path.into();
        std::fs::metadata(&path).map_err(|e| TokenFileError::Read(path.clone(), e))?;
        let source = Self {
            path,
            state: Mutex::new(State {
                fingerprint: None,
                routes: HashMap::new(),
                checked_at: Instant::now(),
            }),
        };
        source.refresh(true);
        Ok(source)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of routes currently loaded.
    pub fn len(&self) -> usize {
        self.lock().routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn lookup(&self, key: &TokenKey) -> Option<Target> {
        {
            let state = self.lock();
            let found = state.routes.get(key).cloned();
            let age = state.checked_at.elapsed();
            if found.is_some() && age < RECHECK_HIT {
                return found;
            }
        }
        self.refresh(false);
        self.lock().routes.get(key).cloned()
    }

    /// Re-reads the files if their fingerprint changed (or always, with `force`).
    pub fn refresh(&self, force: bool) {
        let fingerprint = self.fingerprint();
        let mut state = self.lock();
        state.checked_at = Instant::now();
        let settling = fingerprint.iter().any(|s| s.recently_modified());
        if !force && !settling && state.fingerprint.as_ref() == Some(&fingerprint) {
            return;
        }
        let mut routes = HashMap::new();
        for stamp in &fingerprint {
            self.load_file(&stamp.path, stamp.len, &mut routes);
        }
        if state.routes.len() != routes.len() || state.fingerprint.as_ref() != Some(&fingerprint) {
            tracing::info!(source = %self.path.display(), routes = routes.len(), "token file source loaded");
        }
        state.routes = routes;
        state.fingerprint = Some(fingerprint);
    }

    fn load_file(&self, path: &Path, len: u64, routes: &mut HashMap<TokenKey, Target>) {
        if len > MAX_FILE_SIZE {
            tracing::warn!(file = %path.display(), len, "token file too large, ignored");
            return;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "token file unreadable, ignored");
                return;
            }
        };
        let (entries, issues) = parse(&text);
        for issue in issues {
            tracing::warn!(file = %path.display(), line = issue.line, reason = issue.reason, "token file line ignored");
        }
        for (token, target) in entries {
            routes.insert(TokenKey::of(&token), target);
        }
    }

    /// The files this source consists of now, with what identifies their content.
    fn fingerprint(&self) -> Vec<Stamp> {
        let stamp = |path: PathBuf| -> Option<Stamp> {
            let meta = std::fs::metadata(&path).ok()?;
            meta.is_file().then(|| Stamp {
                len: meta.len(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                inode: meta.ino(),
                path,
            })
        };
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (whole-value swaps only).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_websockify_format() {
        let text = "# comment\n\ntok1: 127.0.0.1:5901\n tok2:\tunix_socket:/tmp/v.sock \nbroken line\nt3: nowhere\n";
        let (routes, issues) = parse(text);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].0, "tok1");
        assert_eq!(routes[1].1, Target::Unix("/tmp/v.sock".into()));
        assert_eq!(
            issues.iter().map(|i| i.line).collect::<Vec<_>>(),
            vec![5, 6]
        );
    }

    #[test]
    fn token_may_not_be_empty() {
        let (routes, issues) = parse(": 127.0.0.1:1\n");
        assert!(routes.is_empty());
        assert_eq!(issues.len(), 1);
    }
}
