//! The `@SYMBOL@` placeholders of config scripts and how their values are inserted.
//!
//! Values come from outside the administrator's control (a login, a VM file name), so
//! they are inserted in two ways only: as data into a parsed condition (never re-parsed),
//! or into a script body, URL, path or QEMU argument when they hold nothing but
//! [`is_safe_value`] characters. A login such as `x;reboot` therefore never reaches a
//! root shell in the guest, and a VM name with a comma never adds QEMU sub-options.

use std::fmt;

use super::Vars;

/// A placeholder that scripts may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symbol {
    /// `@USER@`: the login.
    User,
    /// `@SESSION_NAME@`: the session's name.
    SessionName,
    /// `@VM@`: the machine's file name.
    Vm,
}

impl Symbol {
    pub const ALL: [Symbol; 3] = [Symbol::User, Symbol::SessionName, Symbol::Vm];

    /// The name between the two `@`.
    pub fn name(self) -> &'static str {
        match self {
            Symbol::User => "USER",
            Symbol::SessionName => "SESSION_NAME",
            Symbol::Vm => "VM",
        }
    }

    /// The symbol written `@name@`, if `name` is one.
    pub fn from_name(name: &str) -> Option<Symbol> {
        Symbol::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}@", self.name())
    }
}

/// The original's `@PW@` (the user's password in clear). It is refused everywhere: a
/// script lands in a file on the host, in the guest's disk and in virt-customize's
/// logs, and the original's use of it inside `if(...)` made the condition injectable.
pub const PASSWORD: &str = "@PW@";

impl Vars {
    /// The value a symbol stands for.
    pub fn get(&self, symbol: Symbol) -> &str {
        match symbol {
            Symbol::User => &self.user,
            Symbol::SessionName => &self.session_name,
            Symbol::Vm => &self.vm,
        }
    }
}

/// Whether a value may be written into a script body, URL, path or QEMU argument:
/// ASCII letters, digits and `. _ + - @ = : % ~` only (no quote, `$`, `;`, space,
/// comma, slash or newline).
pub fn is_safe_value(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._+-@=:%~".contains(c))
}

/// One part of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Symbol(Symbol),
}

/// Text with symbols, scanned left to right: `@VM@` is a symbol, an unknown `@NAME@`
/// stays text (as in the original), `@PW@` is refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template(pub Vec<Piece>);

/// Why a text cannot be used as a template or filled in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    #[error("@PW@ is refused: the user's password is never written into a script")]
    Password,
    #[error("the value of {0} holds characters that are unsafe in a script (allowed: letters, digits, . _ + - @ = : % ~)")]
    UnsafeValue(Symbol),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, SymbolError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('@') {
            literal.push_str(&rest[..at]);
            rest = &rest[at..];
            if rest.starts_with(PASSWORD) {
                return Err(SymbolError::Password);
            }
            match Symbol::ALL.into_iter().find(|s| {
                rest[1..].starts_with(s.name()) && rest[1 + s.name().len()..].starts_with('@')
            }) {
                Some(symbol) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Symbol(symbol));
                    rest = &rest[symbol.name().len() + 2..];
                }
                None => {
                    literal.push('@');
                    rest = &rest[1..];
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template(pieces))
    }

    /// The symbols used, in order.
    pub fn symbols(&self) -> impl Iterator<Item = Symbol> + '_ {
        self.0.iter().filter_map(|p| match p {
            Piece::Symbol(s) => Some(*s),
            Piece::Text(_) => None,
        })
    }

    /// The text with each symbol replaced by `value(symbol)`.
    pub fn render(&self, mut value: impl FnMut(Symbol) -> String) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Symbol(s) => out.push_str(&value(*s)),
            }
        }
        out
    }
}

/// Fills in the symbols of a script body, URL, path or QEMU argument. Refuses `@PW@`
/// and any value that is not [`is_safe_value`].
pub fn substitute(text: &str, vars: &Vars) -> Result<String, SymbolError> {
    let template = Template::parse(text)?;
    if let Some(bad) = template.symbols().find(|s| !is_safe_value(vars.get(*s))) {
        return Err(SymbolError::UnsafeValue(bad));
    }
    Ok(template.render(|s| vars.get(s).to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            user: "alice".into(),
            session_name: "s-42".into(),
            vm: "debian12.qcow2".into(),
        }
    }

    #[test]
    fn substitutes_every_symbol_everywhere() {
        assert_eq!(
            substitute("@USER@/@SESSION_NAME@/@VM@ @USER@", &vars()).unwrap(),
            "alice/s-42/debian12.qcow2 alice"
        );
    }

    #[test]
    fn unknown_symbols_and_lone_at_signs_stay_text() {
        assert_eq!(
            substitute("mail root@host @FOO@ @@VM@@ @", &vars()).unwrap(),
            "mail root@host @FOO@ @debian12.qcow2@ @"
        );
    }

    #[test]
    fn password_symbol_is_refused() {
        assert_eq!(substitute("echo @PW@", &vars()), Err(SymbolError::Password));
        assert_eq!(Template::parse("\"@PW@\""), Err(SymbolError::Password));
    }

    #[test]
    fn unsafe_values_are_refused_only_where_used() {
        let v = Vars {
            user: "x;reboot".into(),
            ..vars()
        };
        assert_eq!(
            substitute("touch /tmp/@USER@", &v),
            Err(SymbolError::UnsafeValue(Symbol::User))
        );
        assert_eq!(
            substitute("touch /tmp/@VM@", &v).unwrap(),
            "touch /tmp/debian12.qcow2"
        );
        for bad in [
            "a b", "a,b", "a/b", "$(id)", "`id`", "a\"b", "a'b", "a\nb", "é",
        ] {
            assert!(!is_safe_value(bad), "{bad:?}");
        }
        for good in [
            "alice",
            "debian-12.qcow2",
            "j.doe+x@example.org",
            "a=b:c%d~e",
            "",
        ] {
            assert!(is_safe_value(good), "{good:?}");
        }
    }

    #[test]
    fn template_pieces_are_canonical() {
        let t = Template::parse("a@VM@b@USER@").unwrap();
        assert_eq!(
            t.0,
            vec![
                Piece::Text("a".into()),
                Piece::Symbol(Symbol::Vm),
                Piece::Text("b".into()),
                Piece::Symbol(Symbol::User)
            ]
        );
        assert_eq!(t.render(|s| s.to_string()), "a@VM@b@USER@");
        assert_eq!(Template::parse("").unwrap(), Template::default());
    }
}
