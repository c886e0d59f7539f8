//! `check_user_custom`: an operator's program has the last word, as the original's Perl
//! hook had.
//!
//! The option is a command line (split like a shell would, but run without one). The
//! program gets one JSON object on stdin:
//!
//! ```json
//! {"user": "alice", "password": "…", "remote": "192.0.2.7",
//!  "previous": {"result": "SUCCESS", "method": "imap", "user": "alice", "email": "alice@example.org"}}
//! ```
//!
//! `previous.result` is `SUCCESS` (a method before it proved the user), `FAILED` (methods
//! ran and none did) or `NONE` (no other method is configured). It prints one line:
//! `SUCCESS`, optionally `SUCCESS user=<login> email=<address>` to change who the user is,
//! or `FAILED` (optionally followed by a reason for the log), and exits 0. Anything else
//! (another exit status, no answer in time, too much output, unreadable output) means the
//! hook could not decide.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{AuthError, AuthFuture, Credentials, Identity};
use crate::config::Config;

const METHOD: &str = "custom";

/// Longest answer read from the program's stdout.
const MAX_STDOUT: u64 = 4096;
/// Longest part of its stderr kept for the error message.
const MAX_STDERR: u64 = 16 * 1024;

/// What the methods before the hook concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Previous {
    pub result: PreviousResult,
    pub method: Option<&'static str>,
    pub user: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PreviousResult {
    Success,
    Failed,
    None,
}

impl Previous {
    /// No other method configured.
    pub fn none() -> Self {
        Self {
            result: PreviousResult::None,
            method: None,
            user: None,
            email: None,
        }
    }

    /// Methods ran; none proved the user.
    pub fn failed() -> Self {
        Self {
            result: PreviousResult::Failed,
            ..Self::none()
        }
    }

    /// `identity` was proved by its method.
    pub fn success(identity: &Identity) -> Self {
        Self {
            result: PreviousResult::Success,
            method: Some(identity.method),
            user: Some(identity.user.clone()),
            email: identity.email.clone(),
        }
    }
}

/// The last step of the chain: sees what came before and decides. Unlike a password
/// method, it bounds its own time (the chain does not): an answer that does not come in
/// time is an `AuthError::Unavailable`, so the login is refused.
pub trait CustomHook: Send + Sync + std::fmt::Debug {
    fn decide<'a>(&'a self, creds: &'a Credentials, previous: &'a Previous) -> AuthFuture<'a>;
}

/// The hook as an external program.
#[derive(Debug, Clone)]
pub struct CustomCommand {
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
}

impl CustomCommand {
    /// From `check_user_custom`; `None` when it is empty.
    pub fn from_config(config: &Config) -> Result<Option<Self>, AuthError> {
        if config.check_user_custom.trim().is_empty() {
            return Ok(None);
        }
        Self::parse(&config.check_user_custom).map(Some)
    }

    /// Splits a command line (shell quoting rules, no shell) and finds the program.
    pub fn parse(command_line: &str) -> Result<Self, AuthError> {
        let mut words = shell_words::split(command_line)
            .map_err(|e| misconfigured(format!("check_user_custom: {e}")))?
            .into_iter();
        let program = words
            .next()
            .ok_or_else(|| misconfigured("check_user_custom is empty"))?;
        let program = if program.contains('/') {
            let path = PathBuf::from(&program);
            if !path.is_file() {
                return Err(misconfigured(format!(
                    "check_user_custom: {program} is not a file"
                )));
            }
            path
        } else {
            which::which(&program).map_err(|_| {
                misconfigured(format!("check_user_custom: {program} not found in PATH"))
            })?
        };
        Ok(Self {
            program,
            args: words.collect(),
            timeout: super::chain::METHOD_TIMEOUT,
        })
    }

    /// Bounds the program's run (it is killed when the time is up).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    fn unavailable(&self, reason: impl Into<String>) -> AuthError {
        AuthError::Unavailable {
            method: METHOD,
            server: self.program.display().to_string(),
            reason: reason.into(),
        }
    }

    async fn run(&self, creds: &Credentials, previous: &Previous) -> Result<Identity, AuthError> {
        let request = serde_json::to_vec(&Request {
            user: &creds.user,
            password: &creds.password,
            remote: creds.remote.map(|ip| ip.to_string()),
            previous,
        })
        .map_err(|e| self.unavailable(format!("request: {e}")))?;
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.unavailable(format!("cannot start: {e}")))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(self.unavailable("no pipes to the program"));
        };
        let write = async move {
            // A program that answers without reading its input closes the pipe: fine.
            let _ = stdin.write_all(&request).await;
            drop(stdin);
        };
        // Both pipes are read to the end, so the program never blocks on a full one.
        let (_, stdout, stderr) = tokio::join!(
            write,
            read_all_keep(stdout, MAX_STDOUT + 1),
            read_all_keep(stderr, MAX_STDERR)
        );
        let status = child
            .wait()
            .await
            .map_err(|e| self.unavailable(format!("wait: {e}")))?;
        let stdout = stdout.map_err(|e| self.unavailable(format!("reading its output: {e}")))?;
        let stderr = stderr.unwrap_or_default();
        if !status.success() {
            return Err(self.unavailable(format!(
                "exited with {status}{}",
                stderr_hint(&stderr, &creds.password)
            )));
        }
        if stdout.len() as u64 > MAX_STDOUT {
            return Err(self.unavailable(format!("answer longer than {MAX_STDOUT} bytes")));
        }
        let answer =
            std::str::from_utf8(&stdout).map_err(|_| self.unavailable("answer is not UTF-8"))?;
        match parse_answer(answer) {
            Ok(Answer::Success { user, email }) => Ok(Identity {
                user: user
                    .or_else(|| previous.user.clone())
                    .unwrap_or_else(|| creds.user.clone()),
                email: email.or_else(|| previous.email.clone()),
                method: METHOD,
            }),
            Ok(Answer::Failed { reason }) => {
                if let Some(reason) = reason {
                    tracing::info!(method = METHOD, user = %creds.user, reason = %scrub(&reason, &creds.password), "custom hook refused");
                }
                Err(AuthError::Rejected { method: METHOD })
            }
            Err(why) => Err(self.unavailable(format!(
                "answer {:?}: {why} (expected SUCCESS or FAILED)",
                truncate(&scrub(answer.trim(), &creds.password), 200)
            ))),
        }
    }
}

impl CustomHook for CustomCommand {
    fn decide<'a>(&'a self, creds: &'a Credentials, previous: &'a Previous) -> AuthFuture<'a> {
        Box::pin(async move {
            // The child is killed on drop when the time is up.
            tokio::time::timeout(self.timeout, self.run(creds, previous))
                .await
                .unwrap_or_else(|_| {
                    Err(self.unavailable(format!("no answer within {:?}", self.timeout)))
                })
        })
    }
}

#[derive(Serialize)]
struct Request<'a> {
    user: &'a str,
    password: &'a str,
    remote: Option<String>,
    previous: &'a Previous,
}

/// The program's verdict.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Success {
        user: Option<String>,
        email: Option<String>,
    },
    Failed {
        reason: Option<String>,
    },
}

/// One line: `SUCCESS [user=<login>] [email=<address>]` or `FAILED [reason…]`.
fn parse_answer(output: &str) -> Result<Answer, &'static str> {
    let line = output.trim();
    if line.is_empty() {
        return Err("empty");
    }
    if line.contains('\n') {
        return Err("more than one line");
    }
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    match word {
        "FAILED" => {
            let reason = rest.trim();
            Ok(Answer::Failed {
                reason: (!reason.is_empty()).then(|| reason.to_owned()),
            })
        }
        "SUCCESS" => {
            let (mut user, mut email) = (None, None);
            for field in rest.split_whitespace() {
                match field.split_once('=') {
                    Some(("user", v)) if valid_login(v) && user.is_none() => {
                        user = Some(v.to_owned())
                    }
                    Some(("email", v))
                        if super::chain::looks_like_address(v) && email.is_none() =>
                    {
                        email = Some(v.to_owned())
                    }
                    _ => return Err("unknown or invalid field after SUCCESS"),
                }
            }
            Ok(Answer::Success { user, email })
        }
        _ => Err("neither SUCCESS nor FAILED"),
    }
}

fn valid_login(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && !v.chars().any(char::is_control)
}

/// Reads to the end of `reader`, keeping only the first `cap` bytes.
async fn read_all_keep<R: AsyncRead + Unpin>(mut reader: R, cap: u64) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    (&mut reader).take(cap).read_to_end(&mut kept).await?;
    tokio::io::copy(&mut reader, &mut tokio::io::sink()).await?;
    Ok(kept)
}

/// The last line of stderr, for the error message, without the password.
fn stderr_hint(stderr: &[u8], password: &str) -> String {
    let text = String::from_utf8_lossy(stderr);
    match text.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => format!(": {}", truncate(&scrub(line.trim(), password), 300)),
        None => String::new(),
    }
}

fn scrub(text: &str, password: &str) -> String {
    if password.is_empty() {
        text.to_owned()
    } else {
        text.replace(password, "***")
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn misconfigured(reason: impl Into<String>) -> AuthError {
    AuthError::Misconfigured {
        method: METHOD,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(
            parse_answer("SUCCESS\n"),
            Ok(Answer::Success {
                user: None,
                email: None
            })
        );
        assert_eq!(
            parse_answer("SUCCESS user=bob email=bob@example.org"),
            Ok(Answer::Success {
                user: Some("bob".into()),
                email: Some("bob@example.org".into())
            })
        );
        assert_eq!(
            parse_answer("FAILED weak password\n"),
            Ok(Answer::Failed {
                reason: Some("weak password".into())
            })
        );
        assert_eq!(parse_answer("FAILED"), Ok(Answer::Failed { reason: None }));
        for garbage in [
            "",
            "ok",
            "success",
            "SUCCESSFUL",
            "SUCCESS\nFAILED",
            "SUCCESS admin=1",
            "SUCCESS email=not-an-address",
            "SUCCESS user=",
        ] {
            assert!(parse_answer(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn previous_serialises_as_documented() {
        let identity = Identity {
            user: "alice".into(),
            email: Some("alice@example.org".into()),
            method: "imap",
        };
        assert_eq!(
            serde_json::to_value(Previous::success(&identity)).unwrap(),
            serde_json::json!({"result": "SUCCESS", "method": "imap", "user": "alice", "email": "alice@example.org"})
        );
        assert_eq!(
            serde_json::to_value(Previous::none()).unwrap(),
            serde_json::json!({"result": "NONE", "method": null, "user": null, "email": null})
        );
        assert_eq!(
            serde_json::to_value(Previous::failed()).unwrap()["result"],
            "FAILED"
        );
    }

    #[test]
    fn command_lines() {
        let c = CustomCommand::parse("/bin/sh -c 'echo SUCCESS'").unwrap();
        assert_eq!(c.program(), Path::new("/bin/sh"));
        assert_eq!(c.args, ["-c", "echo SUCCESS"]);
        assert!(CustomCommand::parse("sh").is_ok(), "found in PATH");
        for bad in [
            "/nonexistent/hook",
            "'unterminated",
            "darts-no-such-program-xyz",
        ] {
            assert!(
                matches!(
                    CustomCommand::parse(bad),
                    Err(AuthError::Misconfigured { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn messages_never_carry_the_password() {
        assert_eq!(
            stderr_hint(b"boom\nbad s3cret here\n", "s3cret"),
            ": bad *** here"
        );
        assert_eq!(stderr_hint(b"", "x"), "");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }
}
