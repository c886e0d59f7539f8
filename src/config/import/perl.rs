//! The Perl subset `config.pl` files are written in: statements, then literal values.

/// One Perl statement without its comments, and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Statement {
    pub(super) text: String,
    pub(super) line: usize,
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
pub(super) fn statements(text: &str) -> Vec<Statement> {
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
pub(super) enum PerlValue {
    Num(f64),
    Str(String),
    List(Vec<PerlValue>),
}

/// Why a value cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unconvertible {
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
pub(super) fn parse_value(rhs: &str) -> Result<PerlValue, Unconvertible> {
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

pub(super) fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

pub(super) fn shorten(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 72 {
        format!("{}…", one.chars().take(71).collect::<String>())
    } else {
        one
    }
}
