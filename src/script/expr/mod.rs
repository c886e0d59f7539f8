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

mod display;
mod parser;
mod pattern;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use super::symbols::{Piece, Symbol, Template};
use super::Vars;
use parser::Parser;
use pattern::compile;

/// Longest condition, in bytes.
pub const MAX_EXPR_LEN: usize = 4096;
/// Deepest nesting of `(` and `!`.
pub const MAX_DEPTH: usize = 32;

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
