//! Printing a condition back in the language.

use std::fmt;

use super::{Condition, Expr};
use crate::script::symbols::Piece;

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
