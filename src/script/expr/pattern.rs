//! Regexes of `=~` and `!~`: symbols match their value literally, and compiled size is
//! bounded.

use regex::{Regex, RegexBuilder};

use super::Flags;
use crate::script::symbols::{Symbol, Template};

/// Compiled size limits for one regex, so a hostile pattern cannot take much memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const REGEX_DFA_SIZE_LIMIT: usize = 1 << 20;
const REGEX_NEST_LIMIT: u32 = 32;

/// Compiles a pattern whose symbols match `value(symbol)` literally.
pub(super) fn compile<'v>(
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
