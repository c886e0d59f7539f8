//! From `config_script` entries to what one session needs: extra QEMU arguments, and
//! the scripts virt-customize puts into its overlay.
//!
//! A script that cannot apply to this session (false condition, condition error,
//! download failure, too long, unsafe symbol value...) is skipped with a log line that
//! names its index, never its content. Only `@PW@` and refused QEMU arguments stop the
//! whole plan: they are configuration mistakes that [`check`] reports at startup.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use tracing::{debug, info, warn};

use super::expr::{self, ExprError};
use super::qemu_args;
use super::symbols::{substitute, SymbolError, PASSWORD};
use super::{Customize, Plan, ScriptError, Vars};

/// Downloads a URL and returns its body as text. Its error text is logged, so it must
/// not hold credentials (e.g. a URL's query string).
pub type Fetch<'a> = dyn Fn(&str) -> Result<String, String> + 'a;

/// Why one script does not apply to a session.
#[derive(Debug, thiserror::Error)]
enum Skip {
    #[error("longer than service_max_script_length ({0} bytes)")]
    TooLong(usize),
    #[error("empty")]
    Empty,
    #[error("condition is false")]
    False,
    #[error("condition: {0}")]
    Condition(ExprError),
    #[error("unknown form (expected exec:, bash:, virt-customize:, qemu:, qemu-system-ARCH:, http(s)://, file:// or an absolute path)")]
    UnknownForm,
    #[error(transparent)]
    Symbol(SymbolError),
    #[error("qemu arguments: {0}")]
    QemuSyntax(shell_words::ParseError),
    #[error("download failed: {0}")]
    Fetch(String),
    #[error("cannot read the file: {0}")]
    Read(io::Error),
    #[error("content: {0}")]
    Content(Box<Skip>),
}

enum Outcome {
    Skip(Skip),
    Fail(ScriptError),
}

impl From<Skip> for Outcome {
    fn from(s: Skip) -> Self {
        Outcome::Skip(s)
    }
}

enum Step {
    Qemu(Vec<String>),
    Customize(Customize),
}

/// The forms an entry can take after its optional condition.
enum Form<'a> {
    /// `exec:` or `bash:` shell commands, run once at first boot.
    FirstBoot(&'a str),
    /// `virt-customize:` commands, one per line.
    Commands(&'a str),
    /// `qemu:` or `qemu-system-ARCH:` arguments.
    Qemu(&'a str),
    Url(&'a str),
    Path(&'a str),
}

fn form(body: &str) -> Option<Form<'_>> {
    if let Some(rest) = body
        .strip_prefix("exec:")
        .or_else(|| body.strip_prefix("bash:"))
    {
        return Some(Form::FirstBoot(rest));
    }
    if let Some(rest) = body.strip_prefix("virt-customize:") {
        return Some(Form::Commands(rest));
    }
    if let Some(rest) = body.strip_prefix("qemu:") {
        return Some(Form::Qemu(rest));
    }
    // `qemu-system-ARCH:` is a synonym of `qemu:`: the executable stays the one darts
    // chose for the machine; only the arguments are used.
    if let Some((arch, rest)) = body
        .strip_prefix("qemu-system-")
        .and_then(|r| r.split_once(':'))
    {
        if !arch.is_empty()
            && arch
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Some(Form::Qemu(rest));
        }
    }
    if body.starts_with("http://") || body.starts_with("https://") {
        return Some(Form::Url(body));
    }
    if let Some(path) = body.strip_prefix("file://") {
        return Some(Form::Path(path));
    }
    if body.starts_with('/') {
        return Some(Form::Path(body));
    }
    None
}

/// Builds a session's plan from the `config_script` entries, in order. `max_len` is
/// `service_max_script_length`; `fetch` downloads `http(s)://` scripts. Blocking (it
/// downloads and reads files): from async code, call it in `spawn_blocking`.
pub fn plan(
    scripts: &[String],
    vars: &Vars,
    max_len: usize,
    fetch: &Fetch<'_>,
) -> Result<Plan, ScriptError> {
    build(scripts, vars, max_len, fetch).map(|(plan, _)| plan)
}

/// [`plan`], also returning the skipped scripts.
fn build(
    scripts: &[String],
    vars: &Vars,
    max_len: usize,
    fetch: &Fetch<'_>,
) -> Result<(Plan, Vec<(usize, Skip)>), ScriptError> {
    let mut plan = Plan::default();
    let mut skipped = Vec::new();
    for (index, script) in scripts.iter().enumerate() {
        match step(index, script, vars, max_len, fetch) {
            Ok(Step::Qemu(args)) => {
                info!(
                    script = index,
                    args = args.len(),
                    "config_script adds QEMU arguments"
                );
                plan.qemu_args.extend(args);
            }
            Ok(Step::Customize(item)) => {
                info!(
                    script = index,
                    option = item.option(),
                    bytes = item.content().len(),
                    "config_script goes to virt-customize"
                );
                plan.customize.push(item);
            }
            Err(Outcome::Skip(reason)) => {
                match &reason {
                    Skip::Empty => debug!(script = index, "config_script skipped: empty"),
                    Skip::False => {
                        info!(script = index, "config_script skipped: condition is false")
                    }
                    Skip::Content(inner) if matches!(**inner, Skip::False) => info!(
                        script = index,
                        "config_script skipped: its content's condition is false"
                    ),
                    _ => warn!(script = index, %reason, "config_script skipped"),
                }
                skipped.push((index, reason));
            }
            Err(Outcome::Fail(e)) => return Err(e),
        }
    }
    Ok((plan, skipped))
}

fn step(
    index: usize,
    script: &str,
    vars: &Vars,
    max_len: usize,
    fetch: &Fetch<'_>,
) -> Result<Step, Outcome> {
    if script.len() > max_len {
        return Err(Skip::TooLong(max_len).into());
    }
    if script.trim().is_empty() {
        return Err(Skip::Empty.into());
    }
    if script.contains(PASSWORD) {
        return Err(Outcome::Fail(ScriptError::Password { index }));
    }
    let body = match expr::parse_prefix(script) {
        Ok(Some((condition, at))) => match condition.eval(vars) {
            Ok(true) => &script[at..],
            Ok(false) => return Err(Skip::False.into()),
            Err(e) => return Err(Skip::Condition(e).into()),
        },
        Ok(None) => script,
        Err(e) => return Err(Skip::Condition(e).into()),
    };
    match form(body.trim()).ok_or(Skip::UnknownForm)? {
        Form::FirstBoot(text) => Ok(Step::Customize(Customize::FirstBoot(inline(text, vars)?))),
        Form::Commands(text) => Ok(Step::Customize(Customize::CommandsFromFile(inline(
            text, vars,
        )?))),
        Form::Qemu(text) => qemu(index, text, vars),
        Form::Url(url) => {
            let url = substitute(url, vars).map_err(Skip::Symbol)?;
            let body = fetch(&url).map_err(Skip::Fetch)?;
            Ok(Step::Customize(Customize::FirstBoot(content(
                body.into_bytes(),
                vars,
                max_len,
            )?)))
        }
        Form::Path(path) => {
            let path = substitute(path, vars).map_err(Skip::Symbol)?;
            if !Path::new(&path).is_absolute() {
                return Err(Skip::UnknownForm.into());
            }
            let raw = read_capped(Path::new(&path), max_len).map_err(Skip::Read)?;
            Ok(Step::Customize(Customize::FirstBoot(content(
                raw, vars, max_len,
            )?)))
        }
    }
}

/// The text of an `exec:`, `bash:` or `virt-customize:` script.
fn inline(text: &str, vars: &Vars) -> Result<String, Skip> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Skip::Empty);
    }
    substitute(text, vars).map_err(Skip::Symbol)
}

fn qemu(index: usize, text: &str, vars: &Vars) -> Result<Step, Outcome> {
    let words = qemu_args::split(text).map_err(Skip::QemuSyntax)?;
    if words.is_empty() {
        return Err(Skip::Empty.into());
    }
    let args = words
        .iter()
        .map(|w| substitute(w, vars))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Skip::Symbol)?;
    if let Some((arg, reason)) = qemu_args::refused(&args) {
        return Err(Outcome::Fail(ScriptError::RefusedQemuArg {
            index,
            arg,
            reason,
        }));
    }
    Ok(Step::Qemu(args))
}

/// A downloaded or host file's content: at most `max_len` bytes, non-ASCII bytes
/// dropped, an optional `if(...):` at its very start, then symbols filled in. A
/// condition is recognised only there, so an `if(x):` line inside, say, a Python
/// script stays script text (the original evaluated the first one found anywhere).
fn content(raw: Vec<u8>, vars: &Vars, max_len: usize) -> Result<String, Skip> {
    let wrap = |s: Skip| Skip::Content(Box::new(s));
    if raw.len() > max_len {
        return Err(wrap(Skip::TooLong(max_len)));
    }
    let text: String = raw
        .into_iter()
        .filter(u8::is_ascii)
        .map(char::from)
        .collect();
    if text.contains(PASSWORD) {
        return Err(wrap(Skip::Symbol(SymbolError::Password)));
    }
    let body = match expr::parse_prefix(&text) {
        Ok(Some((condition, at))) => match condition.eval(vars) {
            Ok(true) => text[at..].trim_start(),
            Ok(false) => return Err(wrap(Skip::False)),
            Err(e) => return Err(wrap(Skip::Condition(e))),
        },
        Ok(None) => &text,
        Err(e) => return Err(wrap(Skip::Condition(e))),
    };
    if body.trim().is_empty() {
        return Err(wrap(Skip::Empty));
    }
    substitute(body, vars).map_err(|e| wrap(Skip::Symbol(e)))
}

/// Reads a regular file, at most `max_len + 1` bytes (enough to tell it is too long).
fn read_capped(path: &Path, max_len: usize) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut raw = Vec::new();
    file.take(max_len as u64 + 1).read_to_end(&mut raw)?;
    Ok(raw)
}

/// Checks what does not depend on a session, for configuration loading: lengths,
/// `@PW@`, condition syntax, forms, QEMU argument quoting and refused options (on the
/// arguments as written, before symbols are filled in). Empty entries are accepted
/// (they are skipped).
pub fn check(scripts: &[String], max_len: usize) -> Result<(), ScriptError> {
    for (index, script) in scripts.iter().enumerate() {
        let invalid = |reason: Skip| ScriptError::Invalid {
            index,
            reason: reason.to_string(),
        };
        if script.len() > max_len {
            return Err(invalid(Skip::TooLong(max_len)));
        }
        if script.trim().is_empty() {
            continue;
        }
        if script.contains(PASSWORD) {
            return Err(ScriptError::Password { index });
        }
        let body = match expr::parse_prefix(script) {
            Ok(Some((_, at))) => &script[at..],
            Ok(None) => script,
            Err(source) => return Err(ScriptError::Condition { index, source }),
        };
        match form(body.trim()) {
            None => return Err(invalid(Skip::UnknownForm)),
            Some(Form::Qemu(text)) => {
                let words = qemu_args::split(text).map_err(|e| invalid(Skip::QemuSyntax(e)))?;
                if let Some((arg, reason)) = qemu_args::refused(&words) {
                    return Err(ScriptError::RefusedQemuArg { index, arg, reason });
                }
            }
            Some(Form::Path(path)) if !path.starts_with('/') => {
                return Err(invalid(Skip::UnknownForm))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
