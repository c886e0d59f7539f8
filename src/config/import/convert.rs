//! Mapping parsed Perl values to darts keys, and advice for what cannot be mapped.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;

use super::perl::{number_text, parse_value, shorten, statements, PerlValue, Unconvertible};
use super::{Converted, Import, Skipped};
use crate::config::keys::{self, KEYS};
use crate::config::layers::{Origin, Setting};
use crate::config::{check, show};

#[derive(Default)]
pub(super) struct State {
    values: Vec<Converted>,
    skipped: Vec<Skipped>,
}

impl State {
    pub(super) fn file(&mut self, path: &Path, text: &str) {
        for stmt in statements(text) {
            let origin = Origin::File {
                path: path.to_owned(),
                line: stmt.line,
            };
            if let Err(advice) = self.statement(&stmt.text, &origin) {
                self.skipped.push(Skipped {
                    origin,
                    what: describe(&stmt.text),
                    advice,
                });
            }
        }
    }

    /// Applies one statement; `Err(advice)` when it cannot be converted.
    fn statement(&mut self, text: &str, origin: &Origin) -> Result<(), String> {
        static ASSIGN: OnceLock<Option<Regex>> = OnceLock::new();
        static PUSH: OnceLock<Option<Regex>> = OnceLock::new();
        static SUB: OnceLock<Option<Regex>> = OnceLock::new();
        let assign = ASSIGN.get_or_init(|| {
            Regex::new(
                r#"(?s)^\$config\s*\{\s*(?:'([^']*)'|"([^"]*)"|(\w+))\s*\}\s*(\.=|\|\|=|//=|\+=|-=|\*=|=)(.*)$"#,
            )
            .ok()
        });
        let push = PUSH.get_or_init(|| {
            Regex::new(r#"(?s)^push\s*(\()?\s*@\s*\{\s*\$config\s*\{\s*['"]?(\w+)['"]?\s*\}\s*\}\s*,(.*)$"#)
                .ok()
        });
        let sub = SUB.get_or_init(|| Regex::new(r"^sub\s+(\w+)").ok());
        let trimmed = text.trim();
        if trimmed == "1" || is_pragma(trimmed) || is_declaration(trimmed) {
            return Ok(());
        }
        if let Some(c) = assign.as_ref().and_then(|r| r.captures(trimmed)) {
            let key = c
                .get(1)
                .or_else(|| c.get(2))
                .or_else(|| c.get(3))
                .map_or("", |m| m.as_str());
            let op = c.get(4).map_or("=", |m| m.as_str());
            let rhs = c.get(5).map_or("", |m| m.as_str());
            if op != "=" {
                return Err(format!(
                    "`{op}` computes from the current value: write the resulting value of {key}"
                ));
            }
            return self.assign(key, rhs, origin, false);
        }
        if let Some(c) = push.as_ref().and_then(|r| r.captures(trimmed)) {
            let key = c.get(2).map_or("", |m| m.as_str());
            let mut rhs = c.get(3).map_or("", |m| m.as_str()).trim();
            if c.get(1).is_some() {
                rhs = rhs.strip_suffix(')').unwrap_or(rhs);
            }
            return self.assign(key, &format!("({rhs})"), origin, true);
        }
        if let Some(c) = sub.as_ref().and_then(|r| r.captures(trimmed)) {
            let name = c.get(1).map_or("", |m| m.as_str());
            return Err(format!(
                "Perl subroutine {name}: darts runs no Perl. If check_user_custom uses it, {}",
                CUSTOM_ADVICE
            ));
        }
        if trimmed.starts_with("use ") || trimmed.starts_with("require ") {
            return Err("a Perl module for code darts does not run; nothing to convert".into());
        }
        if trimmed.starts_with("%config") {
            return Err("a whole-hash assignment: write each key as key = value".into());
        }
        Err("Perl code darts does not run: set the value it computes by hand".into())
    }

    fn assign(
        &mut self,
        key: &str,
        rhs: &str,
        origin: &Origin,
        append: bool,
    ) -> Result<(), String> {
        let (name, was) = match keys::renamed(key).or_else(|| moved(key)) {
            Some(new) => (new, Some(key.to_owned())),
            None => (key, None),
        };
        if keys::find(name).is_none() {
            return Err(match (keys::obsolete(key), keys::suggest(key)) {
                (Some(why), _) => format!("{key} is not used by darts: {why}"),
                (None, Some(s)) => format!("unknown key {key} (did you mean {s}?)"),
                (None, None) => format!("unknown key {key}"),
            });
        }
        let value = parse_value(rhs).map_err(|why| {
            // Never repeat a secret's text (a password written as an expression).
            let why = match why {
                Unconvertible::Expr(_) if show::is_secret_key(name) => {
                    Unconvertible::Expr("…".into())
                }
                Unconvertible::Interpolation(_) if show::is_secret_key(name) => {
                    Unconvertible::Interpolation("a variable".into())
                }
                other => other,
            };
            advice_for(name, &why)
        })?;
        let default = keys::defaults()
            .get(name)
            .cloned()
            .unwrap_or(toml::Value::String(String::new()));
        let mut value = to_toml(&value, &default).map_err(|e| format!("{name}: {e}"))?;
        if append {
            let base = self
                .values
                .iter()
                .rev()
                .find(|c| c.key == name)
                .map_or(default.clone(), |c| c.value.clone());
            match (base, value) {
                (toml::Value::Array(mut a), toml::Value::Array(b)) => {
                    a.extend(b);
                    value = toml::Value::Array(a);
                }
                _ => return Err(format!("push onto {name}, which is not a list")),
            }
        }
        let setting = Setting {
            key: name.to_owned(),
            value: value.clone(),
            origin: origin.clone(),
        };
        if let Some(p) = check::settings(std::slice::from_ref(&setting))
            .into_iter()
            .next()
        {
            return Err(p.message);
        }
        self.values.push(Converted {
            key: name.to_owned(),
            value,
            origin: origin.clone(),
            was,
        });
        Ok(())
    }

    pub(super) fn finish(self, files: Vec<PathBuf>) -> Import {
        let converted = KEYS
            .iter()
            .filter_map(|k| self.values.iter().rev().find(|c| c.key == k.name).cloned())
            .collect();
        Import {
            files,
            converted,
            skipped: self.skipped,
        }
    }
}

/// Keys whose meaning moved to another darts key: the original's `service_logfile` held
/// the START/STOP/ERROR lines, which darts writes to `service_logfile_text` (its
/// `service_logfile` is the JSON audit log).
fn moved(key: &str) -> Option<&'static str> {
    match key {
        "service_logfile" => Some("service_logfile_text"),
        _ => None,
    }
}

const CUSTOM_ADVICE: &str = "write the check as a program and set check_user_custom = \"/path/to/program\": \
it gets the login as JSON on stdin ({\"user\", \"password\", \"remote\", \"previous\"}) and prints SUCCESS or FAILED";

/// What darts offers instead of a value it cannot read.
fn advice_for(key: &str, why: &Unconvertible) -> String {
    match (key, why) {
        ("check_user_custom", Unconvertible::Code | Unconvertible::CodeRef(_)) => {
            format!("a Perl function: darts runs no Perl; {CUSTOM_ADVICE}")
        }
        (_, Unconvertible::Code | Unconvertible::CodeRef(_)) => {
            format!("a Perl function: {key} takes a plain value in darts")
        }
        (_, Unconvertible::Hash) => format!("a Perl hash: {key} takes a plain value or a list in darts"),
        (_, Unconvertible::Undef) => format!("undef: leave {key} out to get its default"),
        (_, Unconvertible::Interpolation(v)) => format!(
            "Perl replaces {v} inside double quotes: write the value {key} should get (in single quotes the text stays as written)"
        ),
        (_, Unconvertible::Expr(e)) => {
            format!("the Perl expression `{e}` is not evaluated: write the value {key} should get")
        }
    }
}

fn is_pragma(s: &str) -> bool {
    [
        "use strict",
        "use warnings",
        "use utf8",
        "no warnings",
        "no strict",
    ]
    .iter()
    .any(|p| s == *p || s.starts_with(&format!("{p} ")))
}

/// `my %config` / `our %config`: the original's script declares the hash itself.
fn is_declaration(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    matches!(words.as_slice(), ["my" | "our", "%config"])
}

/// A skipped statement as the report shows it: shortened, a secret's value hidden.
fn describe(stmt: &str) -> String {
    let secret = stmt
        .strip_prefix("$config")
        .and_then(|rest| rest.split_once('='))
        .filter(|(key, _)| show::is_secret_key(key))
        .map(|(key, _)| key.trim());
    match secret {
        Some(key) => format!("$config{key} = {}", show::HIDDEN),
        None => shorten(stmt),
    }
}

/// The TOML value for a key whose default is `default`, with Perl's meaning: numbers
/// from strings, truth as Perl sees it (`0`, `""` and `"0"` are false), one value from a
/// one-element list.
pub(super) fn to_toml(v: &PerlValue, default: &toml::Value) -> Result<toml::Value, String> {
    use toml::Value as T;
    let one = |v: &PerlValue| -> Result<PerlValue, String> {
        match v {
            PerlValue::List(items) if items.len() == 1 => Ok(items[0].clone()),
            PerlValue::List(items) if items.is_empty() => Ok(PerlValue::Str(String::new())),
            PerlValue::List(_) => Err("a list where darts takes one value".into()),
            other => Ok(other.clone()),
        }
    };
    let number = |v: &PerlValue| -> Result<f64, String> {
        match one(v)? {
            PerlValue::Num(n) => Ok(n),
            PerlValue::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a number")),
            PerlValue::List(_) => Err("a list where darts takes a number".into()),
        }
    };
    match default {
        T::Boolean(_) => Ok(T::Boolean(match one(v)? {
            PerlValue::Num(n) => n != 0.0,
            PerlValue::Str(s) => !(s.is_empty() || s == "0"),
            PerlValue::List(_) => true,
        })),
        T::Integer(_) => {
            let n = number(v)?;
            if n.fract() != 0.0 || n < i64::MIN as f64 || n > i64::MAX as f64 {
                return Err(format!("{n} is not a whole number"));
            }
            Ok(T::Integer(n as i64))
        }
        T::Float(_) => Ok(T::Float(number(v)?)),
        T::Array(defaults) => {
            let element = defaults
                .first()
                .cloned()
                .unwrap_or(T::String(String::new()));
            let items = match v {
                PerlValue::List(items) => items.clone(),
                other => vec![other.clone()],
            };
            let mut out = Vec::new();
            for item in &items {
                if let (T::String(_), PerlValue::Str(s)) = (&element, item) {
                    // The original wrote empty lists as [''].
                    if s.is_empty() {
                        continue;
                    }
                }
                out.push(to_toml(item, &element)?);
            }
            Ok(T::Array(out))
        }
        _ => Ok(T::String(match one(v)? {
            PerlValue::Str(s) => s,
            PerlValue::Num(n) => number_text(n),
            PerlValue::List(_) => return Err("a list where darts takes one value".into()),
        })),
    }
}
