//! The condition language of `if(EXPR):`, parsed and evaluated here and never handed to
//! a shell or an interpreter.
//!
//! ```text
//! or      := and ('||' and)*
//! and     := compare ('&&' compare)*
//! compare := match (('==' | '!=' | 'eq' | 'ne') match)?      no chaining
//! match   := unary (('=~' | '!~') /regex/flags)*              flags: i m s x
//! unary   := '!' unary | primary
//! primary := "string" | 'string' | number | @SYMBOL@ | '(' or ')'
//! ```
//!
//! Precedence and truth follow Perl, so the original's conditions keep their meaning:
//! `!` binds tighter than `=~`, `""` and `"0"` are false, `eq` compares text, `==`
//! compares numbers. Nothing else exists: function calls, `$variables`, backticks and
//! `;` are syntax errors that name their column.
//!
//! Symbols are variables, not text pasted in before parsing. `"@VM@"` is parsed as a
//! string whose content is looked up when the condition is evaluated, so a VM named
//! `x") || system("id` is only ever compared as data. (The original substituted first
//! and then ran Perl's `eval` on the result, which let such a value inject code.)
//! Inside a regex a symbol matches its value literally (the value is escaped).

use std::borrow::Cow;
use std::fmt;

use regex::{Regex, RegexBuilder};

use super::symbols::{Piece, Symbol, SymbolError, Template, PASSWORD};
use super::Vars;

/// Longest condition, in bytes.
pub const MAX_EXPR_LEN: usize = 4096;
/// Deepest nesting of `(` and `!`.
pub const MAX_DEPTH: usize = 32;
/// Compiled size limits for one regex, so a hostile pattern cannot take much memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const REGEX_DFA_SIZE_LIMIT: usize = 1 << 20;
const REGEX_NEST_LIMIT: u32 = 32;

/// Why a condition cannot be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExprError {
    /// `column` counts characters from 1 at the start of the text given to the parser.
    #[error("column {column}: {kind}")]
    Syntax { column: usize, kind: SyntaxError },
    #[error("`==` and `!=` compare numbers, and a side is not a number")]
    NotANumber,
    #[error("regular expression after symbol substitution: {0}")]
    Regex(String),
}

impl ExprError {
    /// The syntax error's kind, if this is one.
    pub fn syntax(&self) -> Option<&SyntaxError> {
        match self {
            ExprError::Syntax { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// What is wrong at a column of a condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxError {
    #[error("unexpected character {0:?}")]
    UnexpectedChar(char),
    #[error("unexpected word `{0}` (the only words are `eq` and `ne`; there are no functions)")]
    UnexpectedWord(String),
    #[error("`$` variables are not supported; use @USER@, @SESSION_NAME@ or @VM@")]
    Variable,
    #[error("backticks are not supported")]
    Backtick,
    #[error("`;` is not supported: a condition is one expression")]
    Semicolon,
    #[error("string not closed")]
    UnterminatedString,
    #[error("`$` in a double-quoted string: there is no interpolation (write \\$ for a dollar)")]
    Interpolation,
    #[error("regular expression not closed by `/`")]
    UnterminatedRegex,
    #[error("unknown regular expression flag {0:?} (allowed: i, m, s, x)")]
    UnknownFlag(char),
    #[error("`=~` and `!~` need a /regular expression/ on their right")]
    ExpectedRegex,
    #[error("invalid regular expression: {0}")]
    Regex(String),
    #[error("unknown symbol @{0}@ (known: @USER@, @SESSION_NAME@, @VM@)")]
    UnknownSymbol(String),
    #[error("@PW@ is refused: the user's password is never written into a script")]
    Password,
    #[error("expected a value: a string, a number, a symbol, `!` or `(`")]
    ExpectedOperand,
    #[error("expected an operator or `)`")]
    ExpectedCloseParen,
    #[error("expected `:` after `if(...)`")]
    ExpectedColon,
    #[error("expected an operator or the end of the condition")]
    Trailing,
    #[error("comparisons cannot be chained; use parentheses")]
    ChainedComparison,
    #[error("invalid number")]
    InvalidNumber,
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("longer than {MAX_EXPR_LEN} bytes")]
    TooLong,
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition(Expr);

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Str(Template),
    Num(f64),
    Var(Symbol),
    Not(Box<Expr>),
    Any(Vec<Expr>),
    All(Vec<Expr>),
    Compare {
        op: CompareOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Match {
        subject: Box<Expr>,
        tests: Vec<RegexTest>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompareOp {
    NumEq,
    NumNe,
    StrEq,
    StrNe,
}

impl CompareOp {
    fn text(self) -> &'static str {
        match self {
            CompareOp::NumEq => "==",
            CompareOp::NumNe => "!=",
            CompareOp::StrEq => "eq",
            CompareOp::StrNe => "ne",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct RegexTest {
    negate: bool,
    pattern: Template,
    flags: Flags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Flags {
    case_insensitive: bool,
    multi_line: bool,
    dot_all: bool,
    extended: bool,
}

/// Parses a whole text as one condition (no `if(`, no `):`).
pub fn parse(text: &str) -> Result<Condition, ExprError> {
    let mut p = Parser::new(text, 0);
    if text.len() > MAX_EXPR_LEN {
        return Err(p.error_at(MAX_EXPR_LEN, SyntaxError::TooLong));
    }
    let expr = p.or()?;
    p.skip_ws()?;
    if p.pos < text.len() {
        return Err(p.unexpected(SyntaxError::Trailing));
    }
    Ok(Condition(expr))
}

/// Parses an `if(EXPR):` at the start of `script` (after blanks). Returns `None` when
/// the script has no such prefix, else the condition and the byte offset just after
/// the `:`. Errors count columns from the start of `script`.
pub fn parse_prefix(script: &str) -> Result<Option<(Condition, usize)>, ExprError> {
    let trimmed = script.trim_start();
    let Some(after_if) = trimmed.strip_prefix("if") else {
        return Ok(None);
    };
    let Some(inner) = after_if.trim_start().strip_prefix('(') else {
        return Ok(None);
    };
    let mut p = Parser::new(script, script.len() - inner.len());
    let expr = p.or()?;
    p.skip_ws()?;
    if !p.eat(")") {
        return Err(p.unexpected(SyntaxError::ExpectedCloseParen));
    }
    p.skip_ws()?;
    if !p.eat(":") {
        return Err(p.error_at(p.pos, SyntaxError::ExpectedColon));
    }
    Ok(Some((Condition(expr), p.pos)))
}

struct Parser<'a> {
    src: &'a str,
    /// Where the condition starts (for the length limit).
    start: usize,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, start: usize) -> Self {
        Parser {
            src,
            start,
            pos: start,
            depth: 0,
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn error_at(&self, pos: usize, kind: SyntaxError) -> ExprError {
        let mut pos = pos.min(self.src.len());
        while !self.src.is_char_boundary(pos) {
            pos -= 1;
        }
        let column = self.src[..pos].chars().count() + 1;
        ExprError::Syntax { column, kind }
    }

    /// Skips blanks, and enforces the length limit before every token.
    fn skip_ws(&mut self) -> Result<(), ExprError> {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
        if self.pos - self.start > MAX_EXPR_LEN {
            return Err(self.error_at(self.pos, SyntaxError::TooLong));
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(self.pos, SyntaxError::TooDeep));
        }
        Ok(())
    }

    /// The error for whatever stands at the current position, naming the constructs
    /// people try (`$x`, backticks, `;`, function names); `fallback` otherwise.
    fn unexpected(&self, fallback: SyntaxError) -> ExprError {
        let kind = match self.peek() {
            Some('$') => SyntaxError::Variable,
            Some('`') => SyntaxError::Backtick,
            Some(';') => SyntaxError::Semicolon,
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                // Cut, as the text may come from a downloaded script.
                SyntaxError::UnexpectedWord(self.word().chars().take(32).collect())
            }
            Some(')') => fallback,
            Some(c) if fallback == SyntaxError::ExpectedOperand => SyntaxError::UnexpectedChar(c),
            _ => fallback,
        };
        self.error_at(self.pos, kind)
    }

    fn word(&self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        &rest[..end]
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut terms = vec![self.and()?];
        loop {
            self.skip_ws()?;
            if !self.eat("||") {
                break;
            }
            terms.push(self.and()?);
        }
        Ok(one_or(terms, Expr::Any))
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut terms = vec![self.compare()?];
        loop {
            self.skip_ws()?;
            if !self.eat("&&") {
                break;
            }
            terms.push(self.compare()?);
        }
        Ok(one_or(terms, Expr::All))
    }

    fn compare_op(&mut self) -> Option<CompareOp> {
        let op = if self.rest().starts_with("==") {
            CompareOp::NumEq
        } else if self.rest().starts_with("!=") {
            CompareOp::NumNe
        } else if self.word() == "eq" {
            CompareOp::StrEq
        } else if self.word() == "ne" {
            CompareOp::StrNe
        } else {
            return None;
        };
        self.pos += 2;
        Some(op)
    }

    fn compare(&mut self) -> Result<Expr, ExprError> {
        let left = self.matches()?;
        self.skip_ws()?;
        let Some(op) = self.compare_op() else {
            return Ok(left);
        };
        let right = self.matches()?;
        self.skip_ws()?;
        let at = self.pos;
        if self.compare_op().is_some() {
            return Err(self.error_at(at, SyntaxError::ChainedComparison));
        }
        Ok(Expr::Compare {
            op,
            left: Box::new(left),
            right: Box::new(right),
        })
    }

    fn matches(&mut self) -> Result<Expr, ExprError> {
        let subject = self.unary()?;
        let mut tests = Vec::new();
        loop {
            self.skip_ws()?;
            let negate = if self.eat("=~") {
                false
            } else if self.eat("!~") {
                true
            } else {
                break;
            };
            self.skip_ws()?;
            let (pattern, flags) = self.regex()?;
            tests.push(RegexTest {
                negate,
                pattern,
                flags,
            });
        }
        Ok(if tests.is_empty() {
            subject
        } else {
            Expr::Match {
                subject: Box::new(subject),
                tests,
            }
        })
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        self.skip_ws()?;
        if self.eat("!") {
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let at = self.pos;
        match self.peek() {
            Some('(') => {
                self.enter()?;
                self.pos += 1;
                let inner = self.or()?;
                self.skip_ws()?;
                if !self.eat(")") {
                    return Err(self.unexpected(SyntaxError::ExpectedCloseParen));
                }
                self.depth -= 1;
                Ok(inner)
            }
            Some(quote @ ('"' | '\'')) => {
                let text = self.string(quote)?;
                let template = Template::parse(&text).map_err(|e| self.symbol_error(at, e))?;
                Ok(Expr::Str(template))
            }
            Some(c) if c.is_ascii_digit() => self.number(),
            Some('@') => self.symbol(),
            _ => Err(self.unexpected(SyntaxError::ExpectedOperand)),
        }
    }

    fn symbol_error(&self, at: usize, e: SymbolError) -> ExprError {
        match e {
            SymbolError::Password | SymbolError::UnsafeValue(_) => {
                self.error_at(at, SyntaxError::Password)
            }
        }
    }

    /// A string literal. Double quotes: `\n`, `\t`, and `\x` for any other `x`; a bare
    /// `$` is refused rather than silently taken literally. Single quotes (as in Perl):
    /// only `\\` and `\'` are escapes.
    fn string(&mut self, quote: char) -> Result<String, ExprError> {
        let open = self.pos;
        let mut out = String::new();
        let mut chars = self.src[open + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.pos = open + 1 + i + 1;
                    return Ok(out);
                }
                '\\' => {
                    let Some((_, e)) = chars.next() else { break };
                    match (quote, e) {
                        ('"', 'n') => out.push('\n'),
                        ('"', 't') => out.push('\t'),
                        ('"', e) => out.push(e),
                        (_, e @ ('\\' | '\'')) => out.push(e),
                        (_, e) => {
                            out.push('\\');
                            out.push(e);
                        }
                    }
                }
                '$' if quote == '"' => {
                    return Err(self.error_at(open + 1 + i, SyntaxError::Interpolation));
                }
                c => out.push(c),
            }
        }
        Err(self.error_at(open, SyntaxError::UnterminatedString))
    }

    /// Digits, optionally `.` and more digits.
    fn number(&mut self) -> Result<Expr, ExprError> {
        let at = self.pos;
        let rest = self.rest();
        let int = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mut end = int;
        if rest[int..].starts_with('.') {
            let frac = rest[int + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - int - 1);
            if frac == 0 {
                return Err(self.error_at(at, SyntaxError::InvalidNumber));
            }
            end = int + 1 + frac;
        }
        if rest[end..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return Err(self.error_at(at, SyntaxError::InvalidNumber));
        }
        let value: f64 = rest[..end]
            .parse()
            .map_err(|_| self.error_at(at, SyntaxError::InvalidNumber))?;
        if !value.is_finite() {
            return Err(self.error_at(at, SyntaxError::InvalidNumber));
        }
        self.pos += end;
        Ok(Expr::Num(value))
    }

    /// A bare `@NAME@`, read as the symbol's value.
    fn symbol(&mut self) -> Result<Expr, ExprError> {
        let at = self.pos;
        let after = &self.rest()[1..];
        let len = after
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .unwrap_or(after.len());
        if len == 0 || !after[len..].starts_with('@') {
            return Err(self.error_at(at, SyntaxError::UnexpectedChar('@')));
        }
        let name = &after[..len];
        if self.rest().starts_with(PASSWORD) {
            return Err(self.error_at(at, SyntaxError::Password));
        }
        let symbol = Symbol::from_name(name)
            .ok_or_else(|| self.error_at(at, SyntaxError::UnknownSymbol(name.to_owned())))?;
        self.pos += len + 2;
        Ok(Expr::Var(symbol))
    }

    /// `/pattern/flags`; `\/` stands for `/`, other escapes go to the regex engine.
    fn regex(&mut self) -> Result<(Template, Flags), ExprError> {
        let open = self.pos;
        if !self.eat("/") {
            return Err(self.error_at(open, SyntaxError::ExpectedRegex));
        }
        let mut body = String::new();
        let mut chars = self.rest().char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '/' => {
                    end = Some(i + 1);
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, '/')) => body.push('/'),
                    Some((_, e)) => {
                        body.push('\\');
                        body.push(e);
                    }
                    None => break,
                },
                c => body.push(c),
            }
        }
        let Some(end) = end else {
            return Err(self.error_at(open, SyntaxError::UnterminatedRegex));
        };
        self.pos += end;
        let mut flags = Flags::default();
        while let Some(c) = self.peek().filter(char::is_ascii_alphabetic) {
            match c {
                'i' => flags.case_insensitive = true,
                'm' => flags.multi_line = true,
                's' => flags.dot_all = true,
                'x' => flags.extended = true,
                other => return Err(self.error_at(self.pos, SyntaxError::UnknownFlag(other))),
            }
            self.pos += 1;
        }
        let pattern = Template::parse(&body).map_err(|e| self.symbol_error(open, e))?;
        // Checked now with a stand-in value, so that mistakes show at parse time.
        compile(&pattern, flags, |_| "x")
            .map_err(|e| self.error_at(open, SyntaxError::Regex(e)))?;
        Ok((pattern, flags))
    }
}

fn one_or(mut terms: Vec<Expr>, group: fn(Vec<Expr>) -> Expr) -> Expr {
    if terms.len() == 1 {
        terms.remove(0)
    } else {
        group(terms)
    }
}

/// Compiles a pattern whose symbols match `value(symbol)` literally.
fn compile<'v>(
    pattern: &Template,
    flags: Flags,
    value: impl Fn(Symbol) -> &'v str,
) -> Result<Regex, String> {
    let source = pattern.render(|s| escape(value(s)));
    RegexBuilder::new(&source)
        .case_insensitive(flags.case_insensitive)
        .multi_line(flags.multi_line)
        .dot_matches_new_line(flags.dot_all)
        .ignore_whitespace(flags.extended)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
        .map_err(|e| {
            // The engine's message repeats the pattern over several lines; keep the cause.
            let text = e.to_string();
            let last = text.lines().last().unwrap_or_default().trim();
            last.strip_prefix("error: ").unwrap_or(last).to_owned()
        })
}

/// `regex::escape`, plus whitespace and `#` as `\x{..}` so that they stay literal under
/// the `x` flag.
fn escape(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if c.is_whitespace() || c == '#' {
            out.push_str(&format!("\\x{{{:x}}}", u32::from(c)));
        } else {
            out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4])));
        }
    }
    out
}

#[derive(Debug)]
enum Value<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Bool(bool),
}

impl Value<'_> {
    fn truthy(&self) -> bool {
        match self {
            Value::Str(s) => !(s.is_empty() || s == "0"),
            Value::Num(n) => *n != 0.0,
            Value::Bool(b) => *b,
        }
    }

    fn text(&self) -> Cow<'_, str> {
        match self {
            Value::Str(s) => Cow::Borrowed(s.as_ref()),
            Value::Num(n) => Cow::Owned(n.to_string()),
            Value::Bool(b) => Cow::Borrowed(if *b { "1" } else { "" }),
        }
    }

    fn number(&self) -> Result<f64, ExprError> {
        match self {
            Value::Num(n) => Ok(*n),
            Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
            Value::Str(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or(ExprError::NotANumber),
        }
    }
}

impl Condition {
    /// Evaluates with the symbols bound to `vars`.
    pub fn eval(&self, vars: &Vars) -> Result<bool, ExprError> {
        Ok(eval(&self.0, vars)?.truthy())
    }
}

fn eval<'a>(expr: &'a Expr, vars: &'a Vars) -> Result<Value<'a>, ExprError> {
    Ok(match expr {
        Expr::Str(t) => Value::Str(match t.0.as_slice() {
            [] => Cow::Borrowed(""),
            [Piece::Text(s)] => Cow::Borrowed(s.as_str()),
            _ => Cow::Owned(t.render(|s| vars.get(s).to_owned())),
        }),
        Expr::Num(n) => Value::Num(*n),
        Expr::Var(s) => Value::Str(Cow::Borrowed(vars.get(*s))),
        Expr::Not(e) => Value::Bool(!eval(e, vars)?.truthy()),
        Expr::Any(terms) => {
            for t in terms {
                if eval(t, vars)?.truthy() {
                    return Ok(Value::Bool(true));
                }
            }
            Value::Bool(false)
        }
        Expr::All(terms) => {
            for t in terms {
                if !eval(t, vars)?.truthy() {
                    return Ok(Value::Bool(false));
                }
            }
            Value::Bool(true)
        }
        Expr::Compare { op, left, right } => {
            let (l, r) = (eval(left, vars)?, eval(right, vars)?);
            Value::Bool(match op {
                CompareOp::NumEq => l.number()? == r.number()?,
                CompareOp::NumNe => l.number()? != r.number()?,
                CompareOp::StrEq => l.text() == r.text(),
                CompareOp::StrNe => l.text() != r.text(),
            })
        }
        Expr::Match { subject, tests } => {
            let mut value = eval(subject, vars)?;
            for test in tests {
                let re = compile(&test.pattern, test.flags, |s| vars.get(s))
                    .map_err(ExprError::Regex)?;
                let hit = re.is_match(&value.text());
                value = Value::Bool(hit != test.negate);
            }
            value
        }
    })
}

/// Prints the condition back in the language, each group in parentheses; parsing the
/// output gives the same condition.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, &self.0)
    }
}

fn write_expr(f: &mut fmt::Formatter<'_>, expr: &Expr) -> fmt::Result {
    match expr {
        Expr::Str(t) => {
            f.write_str("\"")?;
            for piece in &t.0 {
                match piece {
                    Piece::Symbol(s) => write!(f, "{s}")?,
                    Piece::Text(text) => {
                        for c in text.chars() {
                            match c {
                                '"' | '\\' | '$' => write!(f, "\\{c}")?,
                                '\n' => f.write_str("\\n")?,
                                '\t' => f.write_str("\\t")?,
                                c => write!(f, "{c}")?,
                            }
                        }
                    }
                }
            }
            f.write_str("\"")
        }
        Expr::Num(n) => write!(f, "{n}"),
        Expr::Var(s) => write!(f, "{s}"),
        Expr::Not(e) => {
            f.write_str("!")?;
            write_expr(f, e)
        }
        Expr::Any(terms) | Expr::All(terms) => {
            let op = if matches!(expr, Expr::Any(_)) {
                " || "
            } else {
                " && "
            };
            f.write_str("(")?;
            for (i, t) in terms.iter().enumerate() {
                if i > 0 {
                    f.write_str(op)?;
                }
                write_expr(f, t)?;
            }
            f.write_str(")")
        }
        Expr::Compare { op, left, right } => {
            f.write_str("(")?;
            write_expr(f, left)?;
            write!(f, " {} ", op.text())?;
            write_expr(f, right)?;
            f.write_str(")")
        }
        Expr::Match { subject, tests } => {
            f.write_str("(")?;
            write_expr(f, subject)?;
            for t in tests {
                f.write_str(if t.negate { " !~ /" } else { " =~ /" })?;
                for piece in &t.pattern.0 {
                    match piece {
                        Piece::Symbol(s) => write!(f, "{s}")?,
                        Piece::Text(text) => {
                            // Escape pairs are copied whole; a lone `/` gets its backslash.
                            let mut chars = text.chars();
                            while let Some(c) = chars.next() {
                                match c {
                                    '\\' => {
                                        f.write_str("\\")?;
                                        if let Some(e) = chars.next() {
                                            write!(f, "{e}")?;
                                        }
                                    }
                                    '/' => f.write_str("\\/")?,
                                    c => write!(f, "{c}")?,
                                }
                            }
                        }
                    }
                }
                f.write_str("/")?;
                let fl = t.flags;
                for (on, c) in [
                    (fl.case_insensitive, 'i'),
                    (fl.multi_line, 'm'),
                    (fl.dot_all, 's'),
                    (fl.extended, 'x'),
                ] {
                    if on {
                        write!(f, "{c}")?;
                    }
                }
            }
            f.write_str(")")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            user: "farhie".into(),
            session_name: "s-7".into(),
            vm: "Debian12.qcow2".into(),
        }
    }

    fn eval_with(text: &str, vars: &Vars) -> Result<bool, ExprError> {
        parse(text)?.eval(vars)
    }

    fn is_true(text: &str) -> bool {
        eval_with(text, &vars()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn syntax(text: &str) -> (usize, SyntaxError) {
        match parse(text) {
            Err(ExprError::Syntax { column, kind }) => (column, kind),
            other => panic!("{text}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn documented_examples() {
        for (script, vm, user, expected) in [
            (
                r#"if("@VM@" =~ /debian/i): http://some/url"#,
                "Debian12.qcow2",
                "x",
                true,
            ),
            (
                r#"if("@VM@" =~ /debian/i): http://some/url"#,
                "ubuntu.qcow2",
                "x",
                false,
            ),
            (
                r#"if("@VM@" =~ /debian/): exec: touch /tmp/x"#,
                "Debian12.qcow2",
                "x",
                false,
            ),
            (
                r#"if("@VM@" =~ /debian/): exec: touch /tmp/x"#,
                "debian12.qcow2",
                "x",
                true,
            ),
            (
                r#"if("@VM@" =~ /unstable/i): /host/path/script.sh"#,
                "Debian-UNSTABLE",
                "x",
                true,
            ),
            (
                r#"if("@USER@" =~ /farhie/): http://some/url"#,
                "vm",
                "farhie",
                true,
            ),
            (
                r#"if("@USER@" =~ /farhie/): http://some/url"#,
                "vm",
                "alice",
                false,
            ),
        ] {
            let v = Vars {
                user: user.into(),
                session_name: "s".into(),
                vm: vm.into(),
            };
            let (cond, at) = parse_prefix(script).unwrap().unwrap();
            assert_eq!(
                cond.eval(&v).unwrap(),
                expected,
                "{script} with {vm}/{user}"
            );
            assert!(
                script[at..].trim_start().starts_with(['h', 'e', '/']),
                "{script}"
            );
        }
    }

    #[test]
    fn prefix_is_found_only_at_the_start() {
        assert!(parse_prefix("exec: if(1): true").unwrap().is_none());
        assert!(parse_prefix("http://x/if(1):").unwrap().is_none());
        assert!(parse_prefix("ifconfig").unwrap().is_none());
        let (_, at) = parse_prefix("  if (1) : rest").unwrap().unwrap();
        assert_eq!(&"  if (1) : rest"[at..], " rest");
        // `)` and `:` inside strings and regexes do not end the condition.
        let text = r#"if("a):" =~ /\):/ && (1)): exec: x"#;
        let (cond, at) = parse_prefix(text).unwrap().unwrap();
        assert!(cond.eval(&vars()).unwrap());
        assert_eq!(&text[at..], " exec: x");
    }

    #[test]
    fn prefix_errors() {
        let column = |text: &str| match parse_prefix(text) {
            Err(ExprError::Syntax { column, kind }) => (column, kind),
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            column("if(1 exec: x"),
            (6, SyntaxError::UnexpectedWord("exec".into()))
        );
        assert_eq!(column("if(1) exec: x"), (7, SyntaxError::ExpectedColon));
        assert_eq!(column("if(1"), (5, SyntaxError::ExpectedCloseParen));
        assert_eq!(column("if(): x"), (4, SyntaxError::ExpectedOperand));
    }

    #[test]
    fn string_comparisons() {
        assert!(is_true(r#""a" eq "a""#));
        assert!(!is_true(r#""a" eq "b""#));
        assert!(is_true(r#""a" ne "b""#));
        assert!(!is_true(r#""a" ne "a""#));
        assert!(is_true(r#"'a'eq"a""#));
        assert!(is_true(r#""@USER@" eq "farhie""#));
        assert!(is_true(r#"@USER@ eq 'farhie'"#));
        assert!(is_true(r#""@USER@-@SESSION_NAME@" eq "farhie-s-7""#));
        assert!(is_true(r#"1 eq "1""#));
        assert!(is_true(r#"1.50 eq "1.5""#));
        assert!(!is_true(r#""1.0" eq 1"#));
    }

    #[test]
    fn numeric_comparisons() {
        assert!(is_true("1 == 1"));
        assert!(is_true("1 != 2"));
        assert!(!is_true("2 != 2"));
        assert!(is_true(r#""1.0" == 1"#));
        assert!(is_true(r#"" 3 " == 3"#));
        assert!(is_true("0.5 == 0.50"));
        assert!(is_true("(1 == 1) == 1"));
        assert_eq!(
            eval_with(r#""abc" == 0"#, &vars()),
            Err(ExprError::NotANumber)
        );
        assert_eq!(eval_with(r#""" == 0"#, &vars()), Err(ExprError::NotANumber));
        assert_eq!(eval_with("@VM@ == 1", &vars()), Err(ExprError::NotANumber));
    }

    #[test]
    fn matches_and_flags() {
        assert!(is_true(r#""@VM@" =~ /^Debian\d+\.qcow2$/"#));
        assert!(is_true(r#""@VM@" !~ /ubuntu/"#));
        assert!(!is_true(r#""@VM@" !~ /Debian/"#));
        assert!(!is_true(r#""@VM@" =~ /debian/"#));
        assert!(is_true(r#""@VM@" =~ /debian/i"#));
        assert!(is_true(r#""a/b" =~ /a\/b/"#));
        assert!(is_true(r#""a\nb" =~ /^b$/m"#));
        assert!(!is_true(r#""a\nb" =~ /^b$/"#));
        assert!(is_true(r#""a\nb" =~ /a.b/s"#));
        assert!(!is_true(r#""a\nb" =~ /a.b/"#));
        assert!(is_true(
            r#""ab" =~ / a b # comment
            /x"#
        ));
        assert!(is_true(r#""AB" =~ /a b/xi"#));
        assert!(is_true(r#""x" =~ /x/imsx"#));
        // A match gives 1 or "", so it chains like Perl's.
        assert!(is_true(r#""a" =~ /a/ =~ /1/"#));
        assert!(is_true(r#""a" !~ /b/ !~ /^$/"#));
    }

    #[test]
    fn symbols_in_regexes_match_their_value_literally() {
        let v = Vars {
            user: "a.b+c".into(),
            session_name: "x y#z".into(),
            vm: "(".into(),
        };
        assert!(eval_with(r#""a.b+c" =~ /^@USER@$/"#, &v).unwrap());
        assert!(!eval_with(r#""aXbbc" =~ /^@USER@$/"#, &v).unwrap());
        assert!(eval_with(r#""x y#z" =~ /^@SESSION_NAME@$/x"#, &v).unwrap());
        assert!(eval_with(r#""vm(" =~ /vm@VM@/"#, &v).unwrap());
    }

    #[test]
    fn logic_and_truth() {
        assert!(is_true("1 && 1"));
        assert!(!is_true("1 && 0"));
        assert!(is_true("0 || 1"));
        assert!(!is_true("0 || 0"));
        assert!(is_true("!0"));
        assert!(!is_true("!1"));
        assert!(is_true("!!1"));
        assert!(!is_true(r#""""#));
        assert!(!is_true(r#""0""#));
        assert!(is_true(r#""0.0""#));
        assert!(is_true(r#""00""#));
        assert!(!is_true("0.0"));
        assert!(is_true("@USER@"));
        assert!(!eval_with("@USER@", &Vars::default()).unwrap());
    }

    #[test]
    fn precedence() {
        // && before ||.
        assert!(is_true("1 || 0 && 0"));
        assert!(!is_true("(1 || 0) && 0"));
        // Comparisons before &&.
        assert!(is_true(r#""a" eq "a" && "b" eq "b""#));
        // =~ before eq: ("a" =~ /a/) is 1.
        assert!(is_true(r#""a" =~ /a/ eq 1"#));
        // ! before =~, as in Perl: (!"debian") =~ /debian/ is "" =~ /debian/.
        assert!(!is_true(r#"!"debian" =~ /debian/"#));
        assert!(!is_true(r#"!("debian" =~ /debian/)"#));
        assert!(is_true(r#"!("debian" =~ /ubuntu/)"#));
        assert_eq!(
            parse(r#"!"x" =~ /y/ || 1 && "a" eq "b""#)
                .unwrap()
                .to_string(),
            r#"((!"x" =~ /y/) || (1 && ("a" eq "b")))"#
        );
    }

    #[test]
    fn short_circuit_skips_errors() {
        assert!(is_true(r#"1 || "x" == 1"#));
        assert!(!is_true(r#"0 && "x" == 1"#));
        assert!(eval_with(r#"0 || "x" == 1"#, &vars()).is_err());
    }

    #[test]
    fn injection_through_values_is_data() {
        for vm in [
            r#"x") || system("id"#,
            r#"x" || "1"#,
            "x') || ('1",
            r#"x"; `reboot`; ""#,
            r#"$(reboot)"#,
            "@USER@",
            "a/ || 1 || /b",
        ] {
            let v = Vars {
                vm: vm.into(),
                ..vars()
            };
            assert!(
                !eval_with(r#""@VM@" eq "debian""#, &v).unwrap(),
                "{vm:?} changed the condition"
            );
            assert!(eval_with(r#""@VM@" ne "debian""#, &v).unwrap());
            assert!(!eval_with(r#""@VM@" =~ /^debian$/"#, &v).unwrap());
            assert!(eval_with(r#""@VM@" =~ /^@VM@$/"#, &v).unwrap());
            assert!(eval_with("@VM@ eq \"@VM@\"", &v).unwrap());
            let (cond, _) = parse_prefix(r#"if("@VM@" =~ /debian/i): exec: x"#)
                .unwrap()
                .unwrap();
            assert!(!cond.eval(&v).unwrap());
        }
    }

    #[test]
    fn everything_outside_the_grammar_is_refused_with_its_column() {
        assert_eq!(
            syntax(r#"system("id")"#),
            (1, SyntaxError::UnexpectedWord("system".into()))
        );
        assert_eq!(
            syntax(r#"1 || system("id")"#),
            (6, SyntaxError::UnexpectedWord("system".into()))
        );
        assert_eq!(
            syntax(r#""a" eq lc("A")"#),
            (8, SyntaxError::UnexpectedWord("lc".into()))
        );
        assert_eq!(syntax("`id`"), (1, SyntaxError::Backtick));
        assert_eq!(syntax("1 && `id`"), (6, SyntaxError::Backtick));
        assert_eq!(syntax("$x eq 1"), (1, SyntaxError::Variable));
        assert_eq!(syntax("$ENV{HOME}"), (1, SyntaxError::Variable));
        assert_eq!(syntax("1; 2"), (2, SyntaxError::Semicolon));
        assert_eq!(syntax(r#""a$x""#), (3, SyntaxError::Interpolation));
        assert_eq!(syntax("1 + 1"), (3, SyntaxError::Trailing));
        assert_eq!(syntax("1 = 1"), (3, SyntaxError::Trailing));
        assert_eq!(syntax("-1"), (1, SyntaxError::UnexpectedChar('-')));
        assert_eq!(syntax("/x/"), (1, SyntaxError::UnexpectedChar('/')));
        assert_eq!(syntax("@ARGV"), (1, SyntaxError::UnexpectedChar('@')));
        assert_eq!(
            syntax("@HOME@"),
            (1, SyntaxError::UnknownSymbol("HOME".into()))
        );
        assert_eq!(syntax("@PW@"), (1, SyntaxError::Password));
        assert_eq!(syntax(r#"1 && "@PW@" eq "x""#), (6, SyntaxError::Password));
        assert_eq!(syntax(r#""x" =~ /@PW@/"#), (8, SyntaxError::Password));
        assert_eq!(syntax("(1"), (3, SyntaxError::ExpectedCloseParen));
        assert_eq!(syntax("(1 2)"), (4, SyntaxError::ExpectedCloseParen));
        assert_eq!(syntax(""), (1, SyntaxError::ExpectedOperand));
        assert_eq!(syntax("1 &&"), (5, SyntaxError::ExpectedOperand));
        assert_eq!(
            syntax("eq 1"),
            (1, SyntaxError::UnexpectedWord("eq".into()))
        );
        assert_eq!(
            syntax("1 and 1"),
            (3, SyntaxError::UnexpectedWord("and".into()))
        );
        assert_eq!(syntax(r#""abc"#), (1, SyntaxError::UnterminatedString));
        assert_eq!(syntax("'abc"), (1, SyntaxError::UnterminatedString));
        assert_eq!(
            syntax(r#""x" =~ /abc"#),
            (8, SyntaxError::UnterminatedRegex)
        );
        assert_eq!(syntax(r#""x" =~ "x""#), (8, SyntaxError::ExpectedRegex));
        assert_eq!(
            syntax(r#""x" =~ /x/g"#),
            (11, SyntaxError::UnknownFlag('g'))
        );
        assert_eq!(
            syntax(r#""x" =~ /x/e"#),
            (11, SyntaxError::UnknownFlag('e'))
        );
        assert_eq!(syntax("1 == 1 == 1"), (8, SyntaxError::ChainedComparison));
        assert_eq!(
            syntax(r#""a" eq "a" ne "b""#),
            (12, SyntaxError::ChainedComparison)
        );
        assert_eq!(syntax("1.x"), (1, SyntaxError::InvalidNumber));
        assert_eq!(syntax("1."), (1, SyntaxError::InvalidNumber));
        assert_eq!(syntax("0x10"), (1, SyntaxError::InvalidNumber));
        assert_eq!(syntax("1.2.3"), (1, SyntaxError::InvalidNumber));
        assert_eq!(syntax("1e5"), (1, SyntaxError::InvalidNumber));
        // Columns count characters, not bytes.
        assert_eq!(syntax(r#""é" eq ; "#), (8, SyntaxError::Semicolon));
    }

    #[test]
    fn regex_errors_are_clear() {
        let (column, kind) = syntax(r#""x" =~ /a(/"#);
        assert_eq!(column, 8);
        let SyntaxError::Regex(message) = kind else {
            panic!("{kind:?}")
        };
        assert!(message.contains("unclosed group"), "{message}");
        assert!(!message.contains('\n'));
        // Backreferences and lookaround do not exist in this engine.
        assert!(matches!(
            syntax(r#""x" =~ /(a)\1/"#).1,
            SyntaxError::Regex(_)
        ));
        assert!(matches!(
            syntax(r#""x" =~ /a(?=b)/"#).1,
            SyntaxError::Regex(_)
        ));
    }

    #[test]
    fn hostile_regexes_are_bounded() {
        let (_, kind) = syntax(r#""x" =~ /((a{100}){100}){100}/"#);
        let SyntaxError::Regex(message) = kind else {
            panic!("{kind:?}")
        };
        assert!(message.contains("size limit"), "{message}");
        let nested = format!(r#""x" =~ /{}a{}/"#, "(".repeat(40), ")".repeat(40));
        assert!(matches!(syntax(&nested).1, SyntaxError::Regex(_)));
        // Ordinary Unicode classes fit.
        assert!(is_true(r#""été" =~ /^\w+$/i"#));
        // Matching is linear: the classic catastrophic pattern answers at once.
        let text = format!(r#""{}b" =~ /^(a+)+$/"#, "a".repeat(3000));
        assert!(!is_true(&text));
    }

    #[test]
    fn a_symbol_value_can_make_a_regex_fail_at_evaluation() {
        let v = Vars {
            vm: String::new(),
            ..vars()
        };
        let cond = parse(r#""x" =~ /[@VM@]/"#).unwrap();
        assert!(matches!(cond.eval(&v), Err(ExprError::Regex(_))));
        assert!(!cond.eval(&vars()).unwrap());
    }

    #[test]
    fn depth_is_capped() {
        let ok = format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(is_true(&ok));
        let deep = format!(
            "{}1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(syntax(&deep), (MAX_DEPTH + 1, SyntaxError::TooDeep));
        assert!(is_true(&format!("{}1", "!".repeat(MAX_DEPTH))));
        assert_eq!(
            syntax(&format!("{}1", "!".repeat(MAX_DEPTH + 1))).1,
            SyntaxError::TooDeep
        );
        // Long flat chains are fine: they do not nest.
        assert!(is_true(&vec!["1"; 500].join(" && ")));
    }

    #[test]
    fn length_is_capped() {
        let long = format!("\"{}\"", "a".repeat(MAX_EXPR_LEN));
        assert_eq!(syntax(&long).1, SyntaxError::TooLong);
        let fits = format!("\"{}\"", "a".repeat(MAX_EXPR_LEN - 2));
        assert!(is_true(&fits));
        let script = format!("if(\"{}\"): exec: x", "a".repeat(MAX_EXPR_LEN));
        assert!(matches!(
            parse_prefix(&script),
            Err(ExprError::Syntax {
                kind: SyntaxError::TooLong,
                ..
            })
        ));
        // A multi-byte character across the limit is no problem.
        let wide = "é".repeat(MAX_EXPR_LEN);
        assert_eq!(syntax(&wide).1, SyntaxError::TooLong);
    }

    #[test]
    fn escapes_in_strings() {
        assert!(is_true(r#""a\"b" eq 'a"b'"#));
        assert!(is_true(r#"'a\'b' eq "a'b""#));
        assert!(is_true(r#""\$HOME" eq '$HOME'"#));
        assert!(is_true(r#"'a\nb' eq "a\\nb""#));
        assert!(is_true(r#""a\tb" =~ /\t/"#));
        assert!(is_true(r#""user\@host" eq 'user@host'"#));
    }

    #[test]
    fn printing_parses_back_to_the_same_condition() {
        for text in [
            r#""@VM@" =~ /debian/i"#,
            r#"!("@USER@" =~ /a\/b\\/ms) && ("x" ne 'y\n' || 1.25 == @VM@)"#,
            r#""q\"\\\$" !~ /\// =~ /1/x"#,
            r#"'a@@VM@@' eq "@" || !!0"#,
        ] {
            let first = parse(text).unwrap();
            let printed = first.to_string();
            assert_eq!(
                parse(&printed).unwrap(),
                first,
                "{text} printed as {printed}"
            );
        }
    }
}
