//! `token::file::parse` on arbitrary text (lossy UTF-8).
//!
//! Every non-blank, non-comment line yields exactly one entry or one issue, in order; a
//! token is non-empty, trimmed, and cannot be split differently; every target prints back
//! to itself (`Target::parse(&t.to_string())`), and writing the entries out again (token,
//! target, options) parses back to the same entries with no issues.

#![no_main]

use darts_proxy::token::file::{parse, Entry, EntryOptions};
use darts_proxy::Target;

/// The options as words after the target, in the syntax `parse` reads.
fn option_words(o: &EntryOptions) -> String {
    let mut words = Vec::new();
    if o.view_only {
        words.push("view-only".to_owned());
    }
    if o.view_clipboard {
        words.push("view-clipboard".to_owned());
    }
    let mut push = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            words.push(format!("{key}={v}"));
        }
    };
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    push("clipboard", o.clipboard.map(|c| c.to_string()));
    push("security", o.security.clone());
    push("password", o.password.clone());
    push("password-file", path(&o.password_file));
    push("ca", path(&o.ca));
    push("cert", path(&o.cert));
    push("key", path(&o.key));
    push("server-name", o.server_name.clone());
    words.join(" ")
}

fn essence(entries: &[Entry]) -> Vec<(&str, &Target, &EntryOptions)> {
    entries
        .iter()
        .map(|e| (e.token.as_str(), &e.target, &e.options))
        .collect()
}
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (entries, issues) = parse(&text);

    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#')
        })
        .map(|(i, _)| i + 1)
        .collect();
    let mut seen: Vec<usize> = entries.iter().map(|e| e.line).collect();
    seen.extend(issues.iter().map(|i| i.line));
    seen.sort_unstable();
    assert_eq!(seen, lines, "each entry line gives one entry or one issue");
    assert!(
        entries.windows(2).all(|w| w[0].line < w[1].line),
        "entries out of order"
    );
    assert!(
        issues.windows(2).all(|w| w[0].line < w[1].line),
        "issues out of order"
    );
    assert!(issues.iter().all(|i| !i.reason.is_empty()));

    let mut rewritten = String::new();
    for Entry {
        token,
        target,
        options,
        ..
    } in &entries
    {
        assert!(!token.is_empty(), "empty token");
        assert_eq!(token.trim(), token, "token not trimmed");
        assert!(!token.starts_with('#'));
        assert!(
            !token
                .as_bytes()
                .windows(2)
                .any(|w| w[0] == b':' && w[1].is_ascii_whitespace()),
            "token {token:?} holds the separator"
        );
        let shown = target.to_string();
        assert_eq!(
            Target::parse(&shown).as_ref(),
            Some(target),
            "target {target:?} prints as {shown:?}"
        );
        rewritten.push_str(&format!("{token}: {shown} {}\n", option_words(options)));
    }
    let (again, new_issues) = parse(&rewritten);
    assert!(
        new_issues.is_empty(),
        "rewritten file has issues: {new_issues:?}"
    );
    assert_eq!(
        essence(&again),
        essence(&entries),
        "rewritten file parses differently"
    );
});
