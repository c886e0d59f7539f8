//! `darts::script::expr` (the `if(EXPR):` condition language) on arbitrary text.
//!
//! Input: the first line is the value of every symbol (cut to 256 characters), the rest
//! is a condition. Checks: parsing never panics; a syntax error names a column inside
//! the text; a parsed condition evaluates the same twice, prints back to itself, and
//! parses the same inside `if(...):`. Whatever the value, it stays data: `"@VM@" eq
//! "debian"` is true exactly when the value is `debian`, and the value matches
//! `/^@VM@$/` (symbols in a regex are escaped).

#![no_main]

use std::sync::OnceLock;

use darts::script::expr::{parse, parse_prefix, Condition, ExprError, SyntaxError};
use darts::script::Vars;
use libfuzzer_sys::fuzz_target;

/// Conditions whose result is known for any symbol value, with a predicate on it.
fn fixed() -> &'static [(Condition, fn(&str) -> bool)] {
    static FIXED: OnceLock<Vec<(Condition, fn(&str) -> bool)>> = OnceLock::new();
    FIXED.get_or_init(|| {
        let cases: [(&str, fn(&str) -> bool); 4] = [
            (r#""@VM@" eq "debian""#, |v| v == "debian"),
            (r#""@VM@" ne "debian""#, |v| v != "debian"),
            (r#""@VM@" =~ /^@VM@$/"#, |_| true),
            (
                r#"@USER@ eq "@VM@" && "@SESSION_NAME@" !~ /^@VM@$/ || 1"#,
                |_| true,
            ),
        ];
        cases
            .into_iter()
            .map(|(c, expected)| (parse(c).expect("fixed condition parses"), expected))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (value, expr) = text.split_once('\n').unwrap_or(("", &text));
    let value: String = value.chars().take(256).collect();
    let vars = Vars {
        user: value.clone(),
        session_name: value.chars().rev().collect(),
        vm: value.clone(),
    };

    for (condition, expected) in fixed() {
        assert_eq!(
            condition.eval(&vars),
            Ok(expected(&value)),
            "{condition} with {value:?}"
        );
    }

    let chars = expr.chars().count();
    let condition = match parse(expr) {
        Ok(c) => c,
        Err(ExprError::Syntax { column, .. }) => {
            assert!(
                (1..=chars + 1).contains(&column),
                "column {column} of {chars}"
            );
            return;
        }
        Err(e) => panic!("parsing gave an evaluation error: {e}"),
    };
    assert_eq!(condition.eval(&vars), condition.eval(&vars));

    let printed = condition.to_string();
    match parse(&printed) {
        Ok(again) => assert_eq!(again, condition, "{expr:?} printed as {printed:?}"),
        // Printing adds parentheses, which may pass a limit.
        Err(e)
            if matches!(
                e.syntax(),
                Some(SyntaxError::TooDeep | SyntaxError::TooLong)
            ) => {}
        Err(e) => panic!("{expr:?} printed as {printed:?}, which fails: {e}"),
    }

    let script = format!("if({expr}): exec: x");
    let (in_prefix, at) = parse_prefix(&script)
        .unwrap_or_else(|e| panic!("{expr:?} parses alone but not in if(): {e}"))
        .expect("an if( prefix");
    assert_eq!(in_prefix, condition);
    assert_eq!(&script[at..], " exec: x");
});
