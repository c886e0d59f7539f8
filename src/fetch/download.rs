//! Resumable downloads: `<dest>.part`, the `<dest>.meta` sidecar, `Range`/`If-Range`
//! resumption and revalidation of a complete file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{check_url, map_err, map_io, shown, Client, FetchError};

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

impl Client {
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
}

/// The server's description of a file version, kept in `<dest>.meta`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Version {
    pub(super) url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) length: Option<u64>,
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
    pub(super) fn if_range(&self) -> Option<&str> {
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
pub(super) fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
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
