//! A QMP client (QEMU Machine Protocol, JSON over QEMU's monitor socket): what darts
//! needs to steer a VM — VNC passwords, status, power — plus its asynchronous events.
//!
//! Every call has a deadline. Commands carry an `id`; events that arrive while a reply
//! is awaited are kept for `next_event`. Arguments are never logged (they may hold a
//! password); only command names are.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// Longest line accepted from QEMU (a `query-*` reply is a few KiB).
const MAX_LINE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QmpError {
    #[error("QMP socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP {0} timed out after {1:?}")]
    Timeout(&'static str, Duration),
    #[error("QMP connection closed by QEMU")]
    Closed,
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
}

/// An asynchronous event, e.g. `SHUTDOWN`, `VNC_CONNECTED`, `STOP`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// `query-status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub running: bool,
    /// `running`, `paused`, `shutdown`, `internal-error`, …
    pub status: String,
}

/// A QMP session in command mode.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    events: VecDeque<Event>,
    /// The part of a message read so far: kept here, not on the stack, so that a read
    /// cancelled by a timeout or a `select!` loses nothing (`next_event` is cancel-safe).
    partial: Vec<u8>,
    timeout: Duration,
    next_id: u64,
    /// QEMU's version from the greeting, e.g. `10.0.2`.
    pub version: String,
}

impl Qmp {
    /// Connects, reads the greeting and enters command mode (`qmp_capabilities`).
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| QmpError::Timeout("connect", timeout))??;
        let (r, w) = stream.into_split();
        let mut qmp = Self {
            reader: BufReader::new(r),
            writer: w,
            events: VecDeque::new(),
            partial: Vec::new(),
            timeout,
            next_id: 1,
            version: String::new(),
        };
        let greeting = tokio::time::timeout(timeout, qmp.read_message())
            .await
            .map_err(|_| QmpError::Timeout("greeting", timeout))??;
        let v = &greeting["QMP"]["version"]["qemu"];
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol("no QMP greeting".into()));
        }
        qmp.version = format!("{}.{}.{}", v["major"], v["minor"], v["micro"]);
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Runs a command and returns its `return` value.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = serde_json::to_vec(&msg).map_err(|e| QmpError::Protocol(e.to_string()))?;
        line.push(b'\n');
        tracing::debug!(command, "QMP command");
        let timeout = self.timeout;
        let exchange = async {
            self.writer.write_all(&line).await?;
            loop {
                let reply = self.read_message().await?;
                if let Some(name) = reply.get("event").and_then(Value::as_str) {
                    self.events.push_back(Event {
                        name: name.to_owned(),
                        data: reply.get("data").cloned().unwrap_or(Value::Null),
                    });
                    continue;
                }
                if reply.get("id").and_then(Value::as_u64) != Some(id) {
                    continue;
                }
                if let Some(ret) = reply.get("return") {
                    return Ok(ret.clone());
                }
                let err = &reply["error"];
                return Err(QmpError::Command {
                    command: command.to_owned(),
                    class: err["class"].as_str().unwrap_or("unknown").to_owned(),
                    desc: err["desc"].as_str().unwrap_or("").to_owned(),
                });
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(QmpError::Timeout("command", timeout)),
        }
    }

    /// Sets the VNC password; viewers already connected stay connected.
    pub async fn set_vnc_password(&mut self, password: &str) -> Result<(), QmpError> {
        self.execute(
            "set_password",
            Some(json!({ "protocol": "vnc", "password": password, "connected": "keep" })),
        )
        .await
        .map(drop)
    }

    /// Makes the VNC password expire: `"now"`, `"never"`, `"+SECONDS"` or a UNIX time.
    pub async fn expire_vnc_password(&mut self, time: &str) -> Result<(), QmpError> {
        self.execute(
            "expire_password",
            Some(json!({ "protocol": "vnc", "time": time })),
        )
        .await
        .map(drop)
    }

    pub async fn query_vnc(&mut self) -> Result<Value, QmpError> {
        self.execute("query-vnc", None).await
    }

    pub async fn query_status(&mut self) -> Result<Status, QmpError> {
        let v = self.execute("query-status", None).await?;
        Ok(Status {
            running: v["running"].as_bool().unwrap_or(false),
            status: v["status"].as_str().unwrap_or("unknown").to_owned(),
        })
    }

    /// Asks the guest to power off (ACPI power button).
    pub async fn system_powerdown(&mut self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).await.map(drop)
    }

    /// Stops QEMU at once.
    pub async fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None).await {
            // QEMU may close the socket before the reply arrives.
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The next event, waiting at most `wait`. `Ok(None)` when none came in time.
    pub async fn next_event(&mut self, wait: Duration) -> Result<Option<Event>, QmpError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        let read = async {
            loop {
                let msg = self.read_message().await?;
                if let Some(name) = msg.get("event").and_then(Value::as_str) {
                    return Ok(Event {
                        name: name.to_owned(),
                        data: msg.get("data").cloned().unwrap_or(Value::Null),
                    });
                }
            }
        };
        match tokio::time::timeout(wait, read).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn read_message(&mut self) -> Result<Value, QmpError> {
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Err(QmpError::Closed);
            }
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            if self.partial.len() + chunk.len() > MAX_LINE {
                return Err(QmpError::Protocol("QMP message too long".into()));
            }
            self.partial.extend_from_slice(chunk);
            let n = chunk.len();
            self.reader.consume(n);
            if done {
                let line = std::mem::take(&mut self.partial);
                return serde_json::from_slice(&line)
                    .map_err(|e| QmpError::Protocol(e.to_string()));
            }
        }
    }
}
