//! The recursive-descent parser of the condition language, one method per grammar rule.

use super::pattern::compile;
use super::{CompareOp, Expr, ExprError, Flags, RegexTest, SyntaxError, MAX_DEPTH, MAX_EXPR_LEN};
use crate::script::symbols::{Symbol, SymbolError, Template, PASSWORD};

pub(super) struct Parser<'a> {
    src: &'a str,
    /// Where the condition starts (for the length limit).
    start: usize,
    pub(super) pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str, start: usize) -> Self {
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

    pub(super) fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    pub(super) fn error_at(&self, pos: usize, kind: SyntaxError) -> ExprError {
        let mut pos = pos.min(self.src.len());
        while !self.src.is_char_boundary(pos) {
            pos -= 1;
        }
        let column = self.src[..pos].chars().count() + 1;
        ExprError::Syntax { column, kind }
    }

    /// Skips blanks, and enforces the length limit before every token.
    pub(super) fn skip_ws(&mut self) -> Result<(), ExprError> {
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
    pub(super) fn unexpected(&self, fallback: SyntaxError) -> ExprError {
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

    pub(super) fn or(&mut self) -> Result<Expr, ExprError> {
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
