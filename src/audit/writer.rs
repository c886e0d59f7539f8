//! The writer thread: formats events, appends them to the JSON log and the original's
//! text log, flushes once per batch and rotates each file by size.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use chrono::{Local, SecondsFormat};
use serde::Serialize;

use super::{AuditError, Event, LogOptions, Stamped};

/// First line of a new text log, as the original wrote it.
const TEXT_HEADER: &str = "# qemu-web-desktop log file (darts)\n";

/// Opens `path` for appending, creating it readable by the owner and group only (the
/// log names users and their addresses).
pub(super) fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Opens `path` for appending; a file darts creates takes its directory's owner and
/// group, so that root running `darts serve` by hand does not leave a file the service's
/// own account cannot write (only root may give a file away; others keep theirs).
fn open_log(path: &Path) -> std::io::Result<File> {
    let f = open_append(path)?;
    if f.metadata()?.len() == 0 {
        if let Some(dir) = path.parent().and_then(|d| std::fs::metadata(d).ok()) {
            let _ = std::os::unix::fs::fchown(&f, Some(dir.uid()), Some(dir.gid()));
        }
    }
    Ok(f)
}

/// One log file and its rotation.
#[derive(Debug)]
pub(super) struct LogFile {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    max_size: u64,
    keep: u32,
    header: Option<&'static str>,
    /// The last write failed (reported once, until one succeeds).
    failing: bool,
}

impl LogFile {
    fn open(
        path: &Path,
        max_size: u64,
        keep: u32,
        header: Option<&'static str>,
    ) -> Result<Self, AuditError> {
        let open = |path: &Path| -> std::io::Result<(File, u64)> {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let f = open_log(path)?;
            let size = f.metadata()?.len();
            Ok((f, size))
        };
        let (file, size) = open(path).map_err(|source| AuditError::Open {
            path: path.to_owned(),
            source,
        })?;
        let mut log = Self {
            path: path.to_owned(),
            out: BufWriter::new(file),
            size,
            max_size,
            keep,
            header,
            failing: false,
        };
        if size == 0 {
            log.write_header();
        }
        Ok(log)
    }

    fn write_header(&mut self) {
        if let Some(h) = self.header {
            if self.out.write_all(h.as_bytes()).is_ok() {
                self.size += h.len() as u64;
            }
        }
    }

    fn write_line(&mut self, line: &str) {
        let len = line.len() as u64;
        if self.max_size > 0 && self.size > 0 && self.size + len > self.max_size {
            if let Err(e) = self.rotate() {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot rotate the log");
            }
        }
        let r = self.out.write_all(line.as_bytes());
        self.note(r);
        self.size += len;
    }

    fn flush(&mut self) {
        let r = self.out.flush();
        self.note(r);
    }

    fn note(&mut self, r: std::io::Result<()>) {
        match r {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!(file = %self.path.display(), error = %e, "cannot write the log");
            }
            Err(_) => {}
        }
    }

    /// `log` → `log.1` → … → `log.<keep>` (the oldest goes), then a new `log`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            remove_if_present(&numbered(self.keep))?;
            for n in (1..self.keep).rev() {
                rename_if_present(&numbered(n), &numbered(n + 1))?;
            }
            rename_if_present(&self.path, &numbered(1))?;
        }
        self.reopen()
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let file = open_log(&self.path)?;
        self.size = file.metadata()?.len();
        self.out = BufWriter::new(file);
        if self.size == 0 {
            self.write_header();
        }
        Ok(())
    }

    /// Someone moved or removed the file (an outside logrotate): start a new one.
    fn reopen_if_gone(&mut self) {
        if !self.path.exists() {
            let _ = self.out.flush();
            if let Err(e) = self.reopen() {
                self.note(Err(e));
            }
        }
    }
}

fn remove_if_present(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Both logs.
#[derive(Debug)]
pub(super) struct Files {
    json: Option<LogFile>,
    text: Option<LogFile>,
}

impl Files {
    pub(super) fn open(opts: &LogOptions) -> Result<Self, AuditError> {
        let open = |path: &Option<PathBuf>, header| {
            path.as_deref()
                .map(|p| LogFile::open(p, opts.max_size, opts.keep, header))
                .transpose()
        };
        Ok(Self {
            json: open(&opts.json, None)?,
            text: open(&opts.text, Some(TEXT_HEADER))?,
        })
    }

    fn write(&mut self, ev: &Stamped) {
        if let Some(f) = &mut self.json {
            f.write_line(&json_line(ev));
        }
        if let (Some(f), Some(line)) = (&mut self.text, text_line(ev)) {
            f.write_line(&line);
        }
    }

    fn write_dropped(&mut self, count: u64) {
        if let Some(f) = &mut self.json {
            let line = serde_json::json!({
                "time": chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                "event": "audit_dropped",
                "count": count,
            });
            f.write_line(&format!("{line}\n"));
        }
        tracing::warn!(count, "audit events dropped: the log could not keep up");
    }

    fn each(&mut self, f: impl FnMut(&mut LogFile)) {
        self.json.iter_mut().chain(self.text.iter_mut()).for_each(f);
    }
}

/// The thread's loop: until every sender is gone, write what arrived, then flush.
pub(super) fn run(mut files: Files, rx: Receiver<Stamped>, dropped: Arc<AtomicU64>) {
    while let Ok(first) = rx.recv() {
        files.each(LogFile::reopen_if_gone);
        files.write(&first);
        while let Ok(next) = rx.try_recv() {
            files.write(&next);
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            files.write_dropped(lost);
        }
        files.each(LogFile::flush);
    }
    files.each(LogFile::flush);
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

pub(super) fn json_line(ev: &Stamped) -> String {
    let line = JsonLine {
        time: ev.time.to_rfc3339_opts(SecondsFormat::Millis, true),
        event: &ev.event,
    };
    match serde_json::to_string(&line) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        Err(e) => format!(
            "{{\"event\":\"audit_error\",\"error\":{:?}}}\n",
            e.to_string()
        ),
    }
}

/// The original's line for session starts, ends and failures; `None` for other events.
pub(super) fn text_line(ev: &Stamped) -> Option<String> {
    // Perl's scalar localtime(), as the original printed it.
    let time = ev.time.with_timezone(&Local).format("%a %b %e %H:%M:%S %Y");
    let gpu = |g: &Option<String>| g.clone().unwrap_or_default();
    let line = match &ev.event {
        Event::SessionStart {
            session,
            user,
            machine,
            cpu,
            memory_mb,
            gpu: g,
            ..
        } => format!(
            "[{time}] START CPU={cpu} MEM={memory_mb} GPU={} USER={user} VM={machine} NAME={session}",
            gpu(g)
        ),
        Event::SessionEnd {
            session,
            user,
            machine,
            cpu,
            memory_mb,
            gpu: g,
            ..
        } => format!(
            "[{time}] STOP  CPU={cpu} MEM={memory_mb} GPU={} USER={user} VM={machine} NAME={session}",
            gpu(g)
        ),
        Event::SessionError {
            user,
            machine,
            cpu,
            memory_mb,
            error,
            ..
        } => format!("[{time}] ERROR CPU={cpu} MEM={memory_mb} GPU= USER={user} VM={machine} {error}"),
        _ => return None,
    };
    // One event, one line, whatever an error message holds.
    Some(line.replace(['\n', '\r'], " ") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EndKind;

    fn stamped(event: Event) -> Stamped {
        Stamped {
            time: chrono::Utc::now(),
            event,
        }
    }

    fn start() -> Event {
        Event::SessionStart {
            session: "darts-aaaaaaaaaaaa".into(),
            user: "alice".into(),
            machine: "debian.qcow2".into(),
            cpu: 2,
            memory_mb: 4096,
            gpu: Some("0000:01:00.0".into()),
            oneshot: false,
            expires: 0,
            client: Some("192.0.2.7".into()),
        }
    }

    #[test]
    fn json_lines_start_with_time_and_event() {
        let line = json_line(&stamped(start()));
        assert!(line.starts_with("{\"time\":\""), "{line}");
        assert!(line.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "session_start");
        assert_eq!(v["memory_mb"], 4096);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn text_lines_are_the_originals() {
        let line = text_line(&stamped(start())).unwrap();
        let re = regex::Regex::new(
            r"^\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] START CPU=2 MEM=4096 GPU=0000:01:00.0 USER=alice VM=debian.qcow2 NAME=darts-aaaaaaaaaaaa\n$",
        )
        .unwrap();
        assert!(re.is_match(&line), "{line:?}");
        let end = Event::SessionEnd {
            session: "darts-aaaaaaaaaaaa".into(),
            user: "alice".into(),
            machine: "debian.qcow2".into(),
            cpu: 2,
            memory_mb: 4096,
            gpu: None,
            how: EndKind::Expire,
            reason: "lifetime over".into(),
            lived_s: 10,
        };
        let line = text_line(&stamped(end)).unwrap();
        assert!(
            line.ends_with(
                "] STOP  CPU=2 MEM=4096 GPU= USER=alice VM=debian.qcow2 NAME=darts-aaaaaaaaaaaa\n"
            ),
            "{line:?}"
        );
        let err = Event::SessionError {
            user: "bob".into(),
            machine: "x.iso".into(),
            cpu: 1,
            memory_mb: 1024,
            gpu: false,
            client: None,
            code: "qemu".into(),
            error: "QEMU: bad\noption".into(),
        };
        let line = text_line(&stamped(err)).unwrap();
        assert!(
            line.ends_with("] ERROR CPU=1 MEM=1024 GPU= USER=bob VM=x.iso QEMU: bad option\n"),
            "{line:?}"
        );
        assert!(text_line(&stamped(Event::ServiceStop {})).is_none());
    }

    #[test]
    fn files_rotate_by_size_and_keep_n() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut log = LogFile::open(&path, 100, 2, None).unwrap();
        let line = format!("{}\n", "x".repeat(59)); // 60 bytes: one per file
        for i in 0..4 {
            log.write_line(&line.replacen('x', &i.to_string(), 1));
        }
        log.flush();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["audit.log", "audit.log.1", "audit.log.2"]);
        // Newest in the live file, then .1, .2; the first line is gone (keep = 2).
        assert!(read(&path).starts_with('3'));
        assert!(read(&dir.path().join("audit.log.1")).starts_with('2'));
        assert!(read(&dir.path().join("audit.log.2")).starts_with('1'));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn a_new_log_belongs_to_its_directorys_owner() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        // Only root may give the directory away; others see their own ownership kept.
        let expected = match std::os::unix::fs::chown(&logs, Some(4242), Some(4243)) {
            Ok(()) => (4242, 4243),
            Err(_) => {
                let m = std::fs::metadata(&logs).unwrap();
                (m.uid(), m.gid())
            }
        };
        let path = logs.join("audit.log");
        let mut log = LogFile::open(&path, 0, 1, None).unwrap();
        log.write_line("x\n");
        log.flush();
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!((m.uid(), m.gid()), expected);
    }

    #[test]
    fn a_new_text_log_starts_with_the_header_again_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service.log");
        let mut log = LogFile::open(&path, 80, 1, Some(TEXT_HEADER)).unwrap();
        log.write_line(&format!("{}\n", "a".repeat(40)));
        log.write_line(&format!("{}\n", "b".repeat(40)));
        log.flush();
        let live = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(dir.path().join("service.log.1")).unwrap();
        assert!(old.starts_with(TEXT_HEADER) && old.contains("aaaa"));
        assert!(live.starts_with(TEXT_HEADER) && live.contains("bbbb"));
    }
}
