//! `darts config import`: the original's `config.pl` (and `config.d/*.pl` beside it, in
//! name order) as darts TOML. Literal assignments `$config{key} = value;` convert: numbers
//! (with simple arithmetic such as `4*86400`), quoted strings (joined with `.`), lists
//! `(…)`, `[…]` and `qw(…)`, `1`/`0` booleans, and `push @{$config{key}}, …`. The rest
//! (subroutines, hashes, variables, other Perl) is listed with the darts way to do it.
//!
//! darts runs no Perl: this is a reader of the literal subset operators write, not a Perl
//! interpreter. Anything outside that subset is reported, never guessed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;

use super::keys::{self, KEYS};
use super::layers::{Origin, Setting};
use super::{check, show};

/// Errors reading the files to convert.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A key converted, with where it was set.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub key: String,
    pub value: toml::Value,
    pub origin: Origin,
    /// The original's name when darts spells it differently.
    pub was: Option<String>,
}

/// Something that could not be converted, and what to do in darts instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub origin: Origin,
    /// The statement, shortened.
    pub what: String,
    pub advice: String,
}

/// The result of an import.
#[derive(Debug, Clone, Default)]
pub struct Import {
    pub files: Vec<PathBuf>,
    /// The effective value of each key (later files win), in the order of the key table.
    pub converted: Vec<Converted>,
    pub skipped: Vec<Skipped>,
}

/// Converts `main` and `config.d/*.pl` beside it.
pub fn import(main: &Path) -> Result<Import, ImportError> {
    let mut files = vec![main.to_owned()];
    let dir = match main.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join("config.d"),
        _ => PathBuf::from("config.d"),
    };
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut pl: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "pl") && p.is_file())
            .collect();
        pl.sort();
        files.extend(pl);
    }
    let mut state = State::default();
    for path in &files {
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
            path: path.clone(),
            source,
        })?;
        state.file(path, &text);
    }
    Ok(state.finish(files))
}

/// Converts one file's text (for tests and for `import`).
pub fn import_text(path: &Path, text: &str) -> Import {
    let mut state = State::default();
    state.file(path, text);
    state.finish(vec![path.to_owned()])
}

#[derive(Default)]
struct State {
    values: Vec<Converted>,
    skipped: Vec<Skipped>,
}

impl State {
    fn file(&mut self, path: &Path, text: &str) {
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

    fn finish(self, files: Vec<PathBuf>) -> Import {
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

fn shorten(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 72 {
        format!("{}…", one.chars().take(71).collect::<String>())
    } else {
        one
    }
}

/// Renders the TOML file: what was not converted first (as comments), then each key with
/// where it came from.
pub fn render(import: &Import) -> String {
    let mut out = String::new();
    out.push_str("# darts configuration converted by `darts config import` from:\n");
    for f in &import.files {
        out.push_str(&format!("#   {}\n", f.display()));
    }
    out.push_str("# Check it with `darts config check -c FILE`.\n");
    if !import.skipped.is_empty() {
        out.push_str(&format!("#\n# Not converted ({}):\n", import.skipped.len()));
        for s in &import.skipped {
            out.push_str(&format!(
                "#   {}: {}\n#       {}\n",
                s.origin, s.what, s.advice
            ));
        }
    }
    out.push('\n');
    for c in &import.converted {
        let was = c
            .was
            .as_deref()
            .map(|w| format!(" (was {w})"))
            .unwrap_or_default();
        out.push_str(&format!("{} = {}  # {}{was}\n", c.key, c.value, c.origin));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Statements

/// One Perl statement without its comments, and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    text: String,
    line: usize,
}

/// Words after which a `/` starts a regular expression rather than a division.
const OPERAND_WORDS: &[&str] = &[
    "split", "grep", "if", "unless", "and", "or", "not", "return", "while", "until", "when",
];

/// Statements that end at their block's closing brace, without a `;`.
const BLOCK_WORDS: &[&str] = &[
    "sub", "if", "unless", "for", "foreach", "while", "until", "else", "elsif", "BEGIN", "END",
];

/// Splits Perl source into statements: `;` at bracket depth 0, or the closing brace of a
/// block statement (`sub f { … }`). Strings, quote-like operators, regular expressions,
/// comments, POD and `__END__` are understood well enough not to be split inside.
fn statements(text: &str) -> Vec<Statement> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0usize;
    let mut line = 1usize;
    let mut depth = 0i32;
    let mut operand = true;
    let mut i = 0;
    let mut at_line_start = true;
    let mut heredocs: Vec<String> = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if at_line_start {
            let rest: String = chars[i..].iter().take(8).collect();
            if rest.starts_with("__END__") || rest.starts_with("__DATA__") {
                break;
            }
            if c == '=' && chars.get(i + 1).is_some_and(|n| n.is_ascii_alphabetic()) {
                // POD, up to a line starting with =cut.
                while i < chars.len() {
                    let l: String = chars[i..].iter().take_while(|c| **c != '\n').collect();
                    i += l.chars().count();
                    if i < chars.len() {
                        i += 1;
                        line += 1;
                    }
                    if l.starts_with("=cut") {
                        break;
                    }
                }
                continue;
            }
        }
        at_line_start = c == '\n';
        if cur.trim().is_empty() && !c.is_whitespace() {
            start = line;
        }
        match c {
            '\n' => {
                line += 1;
                cur.push(c);
                // Here-documents started on this line: their bodies are text, not code.
                for term in std::mem::take(&mut heredocs) {
                    i += 1;
                    while i < chars.len() {
                        let l: String = chars[i..].iter().take_while(|c| **c != '\n').collect();
                        i += l.chars().count() + 1;
                        line += 1;
                        if l.trim() == term {
                            break;
                        }
                    }
                    i -= 1;
                }
                at_line_start = true;
            }
            '<' if chars.get(i + 1) == Some(&'<') => match heredoc_terminator(&chars[i + 2..]) {
                Some((term, len)) => {
                    cur.extend(&chars[i..i + 2 + len]);
                    i += 2 + len;
                    heredocs.push(term);
                    operand = false;
                    continue;
                }
                None => {
                    cur.push_str("<<");
                    i += 2;
                    operand = true;
                    continue;
                }
            },
            '#' if !cur.ends_with('$') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '\'' | '"' | '`' => {
                let (s, end, nl) = delimited(&chars, i, c);
                cur.push_str(&s);
                line += nl;
                i = end;
                operand = false;
                continue;
            }
            '/' if operand => {
                let (s, end, nl) = delimited(&chars, i, '/');
                cur.push_str(&s);
                line += nl;
                i = flags(&chars, end, &mut cur);
                operand = false;
                continue;
            }
            '(' | '[' | '{' => {
                depth += 1;
                cur.push(c);
                operand = true;
            }
            ')' | ']' | '}' => {
                depth -= 1;
                cur.push(c);
                operand = false;
                if c == '}' && depth == 0 && starts_block(&cur) {
                    push_statement(&mut out, &mut cur, start);
                }
            }
            ';' if depth <= 0 => {
                depth = 0;
                push_statement(&mut out, &mut cur, start);
                operand = true;
            }
            c if c.is_alphabetic() || c == '_' => {
                let word: String = chars[i..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_')
                    .collect();
                let len = word.chars().count();
                let sigil = cur.ends_with(['$', '@', '%', '&']);
                if !sigil {
                    if let Some(end) = quote_like(&chars, i, &word, &mut cur, &mut line) {
                        i = end;
                        operand = false;
                        continue;
                    }
                }
                cur.push_str(&word);
                i += len;
                operand = !sigil && OPERAND_WORDS.contains(&word.as_str());
                continue;
            }
            c if c.is_whitespace() => cur.push(c),
            c if c.is_ascii_digit() => {
                cur.push(c);
                operand = false;
            }
            _ => {
                cur.push(c);
                operand = !matches!(c, '$' | '@' | '%' | '&');
            }
        }
        i += 1;
    }
    push_statement(&mut out, &mut cur, start);
    out
}

/// After `<<`: the terminator of a here-document (`"EOT"`, `'EOT'`, `EOT`, `~EOT`) and
/// the characters it takes; `None` for a shift (`1 << 2`).
fn heredoc_terminator(after: &[char]) -> Option<(String, usize)> {
    let tilde = usize::from(after.first() == Some(&'~'));
    let rest = &after[tilde..];
    match rest.first() {
        Some(&q) if q == '"' || q == '\'' => {
            let word: String = rest[1..].iter().take_while(|c| **c != q).collect();
            let len = word.chars().count();
            (rest.get(1 + len) == Some(&q)).then(|| (word, tilde + len + 2))
        }
        Some(c) if c.is_alphabetic() || *c == '_' => {
            let word: String = rest
                .iter()
                .take_while(|c| c.is_alphanumeric() || **c == '_')
                .collect();
            let len = word.chars().count();
            Some((word, tilde + len))
        }
        _ => None,
    }
}

fn starts_block(stmt: &str) -> bool {
    let t = stmt.trim_start();
    t.starts_with('{')
        || t.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .is_some_and(|w| BLOCK_WORDS.contains(&w))
}

fn push_statement(out: &mut Vec<Statement>, cur: &mut String, line: usize) {
    let text = cur.trim().to_owned();
    cur.clear();
    if !text.is_empty() {
        out.push(Statement { text, line });
    }
}

/// The text from `chars[at]` (an opening delimiter) through its closing delimiter
/// (backslash escapes honoured, brackets nested); returns it, the index after it, and the
/// newlines crossed.
fn delimited(chars: &[char], at: usize, open: char) -> (String, usize, usize) {
    let close = match open {
        '(' => ')',
        '[' => ']',
        '{' => '}',
        '<' => '>',
        c => c,
    };
    let mut s = String::from(open);
    let mut nested = 0;
    let mut newlines = 0;
    let mut i = at + 1;
    while i < chars.len() {
        let c = chars[i];
        s.push(c);
        i += 1;
        if c == '\n' {
            newlines += 1;
        }
        if c == '\\' {
            if let Some(&n) = chars.get(i) {
                s.push(n);
                if n == '\n' {
                    newlines += 1;
                }
                i += 1;
            }
            continue;
        }
        if c == close && nested == 0 {
            break;
        }
        if close != open {
            if c == open {
                nested += 1;
            } else if c == close {
                nested -= 1;
            }
        }
    }
    (s, i, newlines)
}

/// Regular-expression flags after a closing delimiter.
fn flags(chars: &[char], mut i: usize, cur: &mut String) -> usize {
    while i < chars.len() && chars[i].is_ascii_alphabetic() {
        cur.push(chars[i]);
        i += 1;
    }
    i
}

/// `q`, `qq`, `qw`, `qr`, `m` (one delimited part) and `s`, `tr`, `y` (two): copies the
/// whole construct into `cur` and returns the index after it.
fn quote_like(
    chars: &[char],
    at: usize,
    word: &str,
    cur: &mut String,
    line: &mut usize,
) -> Option<usize> {
    let parts = match word {
        "q" | "qq" | "qw" | "qr" | "m" => 1,
        "s" | "tr" | "y" => 2,
        _ => return None,
    };
    let mut i = at + word.chars().count();
    while i < chars.len() && chars[i] == ' ' {
        i += 1;
    }
    let d = *chars.get(i)?;
    // `q => 1` or `s = …` are not quote-like operators.
    if d.is_alphanumeric()
        || d.is_whitespace()
        || matches!(d, '=' | ',' | ';' | ')' | ']' | '}' | '>' | '_')
    {
        return None;
    }
    cur.push_str(word);
    let (s, mut end, nl) = delimited(chars, i, d);
    cur.push_str(&s);
    *line += nl;
    if parts == 2 {
        if d == '(' || d == '[' || d == '{' || d == '<' {
            while end < chars.len() && chars[end].is_whitespace() {
                end += 1;
            }
            if let Some(&d2) = chars.get(end) {
                let (s, e, nl) = delimited(chars, end, d2);
                cur.push_str(&s);
                *line += nl;
                end = e;
            }
        } else {
            // `s/a/b/`: the second part shares the middle delimiter.
            let (s, e, nl) = delimited(chars, end - 1, d);
            cur.push_str(&s[1..]);
            *line += nl;
            end = e;
        }
    }
    Some(flags(chars, end, cur))
}

// ---------------------------------------------------------------------------------------
// Values

/// A Perl literal value.
#[derive(Debug, Clone, PartialEq)]
enum PerlValue {
    Num(f64),
    Str(String),
    List(Vec<PerlValue>),
}

/// Why a value cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unconvertible {
    Code,
    CodeRef(String),
    Hash,
    Undef,
    Interpolation(String),
    Expr(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Words(Vec<String>),
    Open(char),
    Close(char),
    Comma,
    FatComma,
    Op(char),
    Sub,
    CodeRef(String),
    Undef,
    Other(String),
}

/// Parses the right-hand side of an assignment.
fn parse_value(rhs: &str) -> Result<PerlValue, Unconvertible> {
    let toks = tokens(rhs)?;
    let mut p = Parser {
        toks: &toks,
        at: 0,
        src: rhs,
    };
    let v = p.list_or_value()?;
    if p.at < toks.len() {
        return Err(Unconvertible::Expr(shorten(rhs)));
    }
    Ok(v)
}

fn tokens(s: &str) -> Result<Vec<Tok>, Unconvertible> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let expr = || Unconvertible::Expr(shorten(s));
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '\'' => {
                let (raw, end, _) = delimited(&chars, i, '\'');
                out.push(Tok::Str(single_quoted(&raw[1..raw.len() - 1])));
                i = end;
            }
            '"' => {
                let (raw, end, _) = delimited(&chars, i, '"');
                out.push(Tok::Str(double_quoted(&raw[1..raw.len() - 1])?));
                i = end;
            }
            '(' | '[' | '{' => {
                out.push(Tok::Open(c));
                i += 1;
            }
            ')' | ']' | '}' => {
                out.push(Tok::Close(c));
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '=' if chars.get(i + 1) == Some(&'>') => {
                out.push(Tok::FatComma);
                i += 2;
            }
            '*' | '+' | '-' | '/' | '.'
                if !(c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                out.push(Tok::Op(c));
                i += 1;
            }
            '\\' if chars.get(i + 1) == Some(&'&') => {
                let name: String = chars[i + 2..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_' || **c == ':')
                    .collect();
                i += 2 + name.chars().count();
                out.push(Tok::CodeRef(name));
            }
            c if c.is_ascii_digit() || c == '.' => {
                let n: String = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_'))
                    .collect();
                i += n.chars().count();
                out.push(Tok::Num(perl_number(&n).ok_or_else(expr)?));
            }
            c if c.is_alphabetic() || c == '_' => {
                let w: String = chars[i..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_')
                    .collect();
                i += w.chars().count();
                match w.as_str() {
                    "sub" => out.push(Tok::Sub),
                    "undef" => out.push(Tok::Undef),
                    "q" | "qq" | "qw" => {
                        while i < chars.len() && chars[i] == ' ' {
                            i += 1;
                        }
                        let Some(&d) = chars.get(i) else {
                            return Err(expr());
                        };
                        let (raw, end, _) = delimited(&chars, i, d);
                        let inner: String = raw
                            .chars()
                            .skip(1)
                            .take(raw.chars().count().saturating_sub(2))
                            .collect();
                        i = end;
                        out.push(match w.as_str() {
                            "q" => Tok::Str(single_quoted(&inner)),
                            "qq" => Tok::Str(double_quoted(&inner)?),
                            _ => Tok::Words(inner.split_whitespace().map(str::to_owned).collect()),
                        });
                    }
                    // A bare word before `=>` is a string (a hash key).
                    _ => out.push(Tok::Other(w)),
                }
            }
            _ => {
                let rest: String = chars[i..].iter().collect();
                out.push(Tok::Other(rest));
                i = chars.len();
            }
        }
    }
    Ok(out)
}

fn perl_number(s: &str) -> Option<f64> {
    let s = s.replace('_', "");
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok().map(|n| n as f64);
    }
    s.parse().ok()
}

fn single_quoted(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some('\\') | Some('\'')) {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

fn double_quoted(s: &str) -> Result<String, Unconvertible> {
    let mut out = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let n = chars.get(i + 1).copied().unwrap_or('\\');
                out.push(match n {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'e' => '\u{1b}',
                    other => other,
                });
                i += 2;
            }
            '$' | '@'
                if chars.get(i + 1).is_some_and(|n| {
                    n.is_alphabetic() || *n == '_' || *n == '{' || (c == '$' && *n == ':')
                }) =>
            {
                let var: String = std::iter::once(c)
                    .chain(
                        chars[i + 1..]
                            .iter()
                            .take_while(|c| {
                                c.is_alphanumeric() || matches!(c, '_' | '{' | '}' | ':')
                            })
                            .copied(),
                    )
                    .collect();
                return Err(Unconvertible::Interpolation(var));
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: &'a [Tok],
    at: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expr(&self) -> Unconvertible {
        Unconvertible::Expr(shorten(self.src))
    }

    /// A value, or a bare comma list (`$x = 1, 2` is rare but harmless to read as a list).
    fn list_or_value(&mut self) -> Result<PerlValue, Unconvertible> {
        let first = self.concat()?;
        if !matches!(self.peek(), Some(Tok::Comma)) {
            return Ok(first);
        }
        let mut items = vec![first];
        while matches!(self.peek(), Some(Tok::Comma)) {
            self.at += 1;
            if self.peek().is_none() {
                break;
            }
            items.push(self.concat()?);
        }
        Ok(PerlValue::List(items))
    }

    fn concat(&mut self) -> Result<PerlValue, Unconvertible> {
        let mut v = self.sum()?;
        while matches!(self.peek(), Some(Tok::Op('.'))) {
            self.at += 1;
            let r = self.sum()?;
            v = PerlValue::Str(format!("{}{}", self.text(&v)?, self.text(&r)?));
        }
        Ok(v)
    }

    fn sum(&mut self) -> Result<PerlValue, Unconvertible> {
        let mut v = self.product()?;
        while let Some(Tok::Op(op @ ('+' | '-'))) = self.peek().cloned() {
            self.at += 1;
            let r = self.product()?;
            let (a, b) = (self.num(&v)?, self.num(&r)?);
            v = PerlValue::Num(if op == '+' { a + b } else { a - b });
        }
        Ok(v)
    }

    fn product(&mut self) -> Result<PerlValue, Unconvertible> {
        let mut v = self.unary()?;
        while let Some(Tok::Op(op @ ('*' | '/'))) = self.peek().cloned() {
            self.at += 1;
            let r = self.unary()?;
            let (a, b) = (self.num(&v)?, self.num(&r)?);
            if op == '/' && b == 0.0 {
                return Err(self.expr());
            }
            v = PerlValue::Num(if op == '*' { a * b } else { a / b });
        }
        Ok(v)
    }

    fn unary(&mut self) -> Result<PerlValue, Unconvertible> {
        if matches!(self.peek(), Some(Tok::Op('-'))) {
            self.at += 1;
            let v = self.unary()?;
            return Ok(PerlValue::Num(-self.num(&v)?));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<PerlValue, Unconvertible> {
        match self.next() {
            Some(Tok::Num(n)) => Ok(PerlValue::Num(n)),
            Some(Tok::Str(s)) => Ok(PerlValue::Str(s)),
            Some(Tok::Words(w)) => Ok(PerlValue::List(w.into_iter().map(PerlValue::Str).collect())),
            Some(Tok::Open('{')) => Err(Unconvertible::Hash),
            Some(Tok::Open(open)) => {
                let close = if open == '(' { ')' } else { ']' };
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        Some(Tok::Close(c)) if *c == close => {
                            self.at += 1;
                            break;
                        }
                        None => return Err(self.expr()),
                        _ => {}
                    }
                    // `(a => 1)` is a hash.
                    if matches!(self.toks.get(self.at + 1), Some(Tok::FatComma)) {
                        return Err(Unconvertible::Hash);
                    }
                    // Perl flattens `qw(…)` and `(…)` inside a list; `[…]` stays nested.
                    let flattens = matches!(self.peek(), Some(Tok::Words(_) | Tok::Open('(')));
                    match self.concat()? {
                        PerlValue::List(inner) if flattens => items.extend(inner),
                        item => items.push(item),
                    }
                    match self.next() {
                        Some(Tok::Comma) => {}
                        Some(Tok::FatComma) => return Err(Unconvertible::Hash),
                        Some(Tok::Close(c)) if c == close => break,
                        _ => return Err(self.expr()),
                    }
                }
                Ok(PerlValue::List(items))
            }
            Some(Tok::Sub) => Err(Unconvertible::Code),
            Some(Tok::CodeRef(name)) => Err(Unconvertible::CodeRef(name)),
            Some(Tok::Undef) => Err(Unconvertible::Undef),
            _ => Err(self.expr()),
        }
    }

    fn num(&self, v: &PerlValue) -> Result<f64, Unconvertible> {
        match v {
            PerlValue::Num(n) => Ok(*n),
            PerlValue::List(items) if items.len() == 1 => self.num(&items[0]),
            _ => Err(self.expr()),
        }
    }

    fn text(&self, v: &PerlValue) -> Result<String, Unconvertible> {
        match v {
            PerlValue::Str(s) => Ok(s.clone()),
            PerlValue::Num(n) => Ok(number_text(*n)),
            PerlValue::List(items) if items.len() == 1 => self.text(&items[0]),
            PerlValue::List(_) => Err(self.expr()),
        }
    }
}

fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// The TOML value for a key whose default is `default`, with Perl's meaning: numbers
/// from strings, truth as Perl sees it (`0`, `""` and `"0"` are false), one value from a
/// one-element list.
fn to_toml(v: &PerlValue, default: &toml::Value) -> Result<toml::Value, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn value(rhs: &str) -> Result<PerlValue, Unconvertible> {
        parse_value(rhs)
    }

    #[test]
    fn literals() {
        assert_eq!(value(" 86400*4"), Ok(PerlValue::Num(345600.0)));
        assert_eq!(value("(3600 * 24) * 2 + 1"), Ok(PerlValue::Num(172801.0)));
        assert_eq!(value("-1"), Ok(PerlValue::Num(-1.0)));
        assert_eq!(value("0.8"), Ok(PerlValue::Num(0.8)));
        assert_eq!(value("1_000"), Ok(PerlValue::Num(1000.0)));
        assert_eq!(value("'it\\'s'"), Ok(PerlValue::Str("it's".into())));
        assert_eq!(
            value("\"a\\tb\\\"c\""),
            Ok(PerlValue::Str("a\tb\"c".into()))
        );
        assert_eq!(
            value("'/var/lib/' . \"x\""),
            Ok(PerlValue::Str("/var/lib/x".into()))
        );
        assert_eq!(
            value("qw(/mnt /media)"),
            Ok(PerlValue::List(vec![
                PerlValue::Str("/mnt".into()),
                PerlValue::Str("/media".into())
            ]))
        );
        assert_eq!(
            value("[2, 4, 8,]"),
            Ok(PerlValue::List(vec![
                PerlValue::Num(2.0),
                PerlValue::Num(4.0),
                PerlValue::Num(8.0)
            ]))
        );
        assert_eq!(value("q{a b}"), Ok(PerlValue::Str("a b".into())));
        assert_eq!(
            value("[qw(4 8), (16)]"),
            Ok(PerlValue::List(vec![
                PerlValue::Str("4".into()),
                PerlValue::Str("8".into()),
                PerlValue::Num(16.0)
            ]))
        );
    }

    #[test]
    fn what_is_not_a_literal() {
        assert_eq!(value("sub { return 1 }"), Err(Unconvertible::Code));
        assert_eq!(
            value("\\&check"),
            Err(Unconvertible::CodeRef("check".into()))
        );
        assert_eq!(value("{ a => 1 }"), Err(Unconvertible::Hash));
        assert_eq!(value("(a => 1, b => 2)"), Err(Unconvertible::Hash));
        assert_eq!(value("undef"), Err(Unconvertible::Undef));
        assert_eq!(
            value("\"admin@example.org\""),
            Err(Unconvertible::Interpolation("@example".into()))
        );
        assert_eq!(
            value("'admin@example.org'"),
            Ok(PerlValue::Str("admin@example.org".into()))
        );
        assert!(matches!(
            value("$ENV{HOME} . '/x'"),
            Err(Unconvertible::Expr(_))
        ));
        assert!(matches!(value("`hostname`"), Err(Unconvertible::Expr(_))));
    }

    #[test]
    fn statements_split_on_semicolons_outside_strings_blocks_and_regexes() {
        let text = "# head ; not a statement\n$config{a} = 'x;y'; # trailing ; comment\n\
                    sub f {\n  my $pw = shift;\n  if ($pw !~ /[@#*;]/) { return 0; }\n  return 1;\n}\n\
                    $config{b} = [1,\n 2];\n=pod\n$config{c} = 1;\n=cut\n$config{d} = s/a;b/c/r;\n1;\n__END__\n$config{e} = 1;\n";
        let s = statements(text);
        let got: Vec<(usize, &str)> = s.iter().map(|s| (s.line, s.text.as_str())).collect();
        assert_eq!(got[0], (2, "$config{a} = 'x;y'"));
        assert_eq!(got[1].0, 3);
        assert!(
            got[1].1.starts_with("sub f {") && got[1].1.ends_with('}'),
            "{got:?}"
        );
        assert_eq!(got[2], (8, "$config{b} = [1,\n 2]"));
        assert_eq!(got[3].0, 13);
        assert_eq!(got[4], (14, "1"));
        assert_eq!(got.len(), 5, "{got:?}");
    }

    #[test]
    fn secrets_are_not_repeated_in_the_report() {
        let r = import_text(
            Path::new("config.pl"),
            "$config{email_passwd} = \"pa$$word\";\n$config{email_passwd} = 'a' x 3;\n",
        );
        assert_eq!(r.skipped.len(), 2);
        for s in &r.skipped {
            assert_eq!(s.what, "$config{email_passwd} = \"********\"");
            assert!(
                !s.advice.contains("word") && !s.advice.contains("'a'"),
                "{}",
                s.advice
            );
        }
    }

    #[test]
    fn here_documents_are_skipped_as_text() {
        let text = "$config{layout_footer} = <<\"EOT\";\n<p>it's; here</p>\nEOT\n$config{machine} = 'm';\nmy $x = 1 << 2;\n";
        let s = statements(text);
        let got: Vec<(usize, &str)> = s.iter().map(|s| (s.line, s.text.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (1, "$config{layout_footer} = <<\"EOT\""),
                (4, "$config{machine} = 'm'"),
                (5, "my $x = 1 << 2"),
            ]
        );
    }

    #[test]
    fn types_follow_the_darts_key() {
        let b = toml::Value::Boolean(false);
        assert_eq!(
            to_toml(&PerlValue::Num(1.0), &b),
            Ok(toml::Value::Boolean(true))
        );
        assert_eq!(
            to_toml(&PerlValue::Str("0".into()), &b),
            Ok(toml::Value::Boolean(false))
        );
        let i = toml::Value::Integer(0);
        assert_eq!(
            to_toml(&PerlValue::Str("6080".into()), &i),
            Ok(toml::Value::Integer(6080))
        );
        assert!(to_toml(&PerlValue::Num(1.5), &i).is_err());
        let list = toml::Value::Array(vec![]);
        assert_eq!(
            to_toml(&PerlValue::List(vec![PerlValue::Str(String::new())]), &list),
            Ok(toml::Value::Array(vec![]))
        );
        let s = toml::Value::String(String::new());
        assert_eq!(
            to_toml(&PerlValue::List(vec![PerlValue::Str("a".into())]), &s),
            Ok(toml::Value::String("a".into()))
        );
    }
}
