//! From `config_script` entries to what one session needs: extra QEMU arguments, and
//! the scripts virt-customize puts into its overlay.
//!
//! A script that cannot apply to this session (false condition, condition error,
//! download failure, too long, unsafe symbol value...) is skipped with a log line that
//! names its index, never its content. Only `@PW@` and refused QEMU arguments stop the
//! whole plan: they are configuration mistakes that [`check`] reports at startup.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use tracing::{debug, info, warn};

use super::expr::{self, ExprError};
use super::qemu_args;
use super::symbols::{substitute, SymbolError, PASSWORD};
use super::{Customize, Plan, ScriptError, Vars};

/// Downloads a URL and returns its body as text. Its error text is logged, so it must
/// not hold credentials (e.g. a URL's query string).
pub type Fetch<'a> = dyn Fn(&str) -> Result<String, String> + 'a;

/// Why one script does not apply to a session.
#[derive(Debug, thiserror::Error)]
enum Skip {
    #[error("longer than service_max_script_length ({0} bytes)")]
    TooLong(usize),
    #[error("empty")]
    Empty,
    #[error("condition is false")]
    False,
    #[error("condition: {0}")]
    Condition(ExprError),
    #[error("unknown form (expected exec:, bash:, virt-customize:, qemu:, qemu-system-ARCH:, http(s)://, file:// or an absolute path)")]
    UnknownForm,
    #[error(transparent)]
    Symbol(SymbolError),
    #[error("qemu arguments: {0}")]
    QemuSyntax(shell_words::ParseError),
    #[error("download failed: {0}")]
    Fetch(String),
    #[error("cannot read the file: {0}")]
    Read(io::Error),
    #[error("content: {0}")]
    Content(Box<Skip>),
}

enum Outcome {
    Skip(Skip),
    Fail(ScriptError),
}

impl From<Skip> for Outcome {
    fn from(s: Skip) -> Self {
        Outcome::Skip(s)
    }
}

enum Step {
    Qemu(Vec<String>),
    Customize(Customize),
}

/// The forms an entry can take after its optional condition.
enum Form<'a> {
    /// `exec:` or `bash:` shell commands, run once at first boot.
    FirstBoot(&'a str),
    /// `virt-customize:` commands, one per line.
    Commands(&'a str),
    /// `qemu:` or `qemu-system-ARCH:` arguments.
    Qemu(&'a str),
    Url(&'a str),
    Path(&'a str),
}

fn form(body: &str) -> Option<Form<'_>> {
    if let Some(rest) = body
        .strip_prefix("exec:")
        .or_else(|| body.strip_prefix("bash:"))
    {
        return Some(Form::FirstBoot(rest));
    }
    if let Some(rest) = body.strip_prefix("virt-customize:") {
        return Some(Form::Commands(rest));
    }
    if let Some(rest) = body.strip_prefix("qemu:") {
        return Some(Form::Qemu(rest));
    }
    // `qemu-system-ARCH:` is a synonym of `qemu:`: the executable stays the one darts
    // chose for the machine; only the arguments are used.
    if let Some((arch, rest)) = body
        .strip_prefix("qemu-system-")
        .and_then(|r| r.split_once(':'))
    {
        if !arch.is_empty()
            && arch
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Some(Form::Qemu(rest));
        }
    }
    if body.starts_with("http://") || body.starts_with("https://") {
        return Some(Form::Url(body));
    }
    if let Some(path) = body.strip_prefix("file://") {
        return Some(Form::Path(path));
    }
    if body.starts_with('/') {
        return Some(Form::Path(body));
    }
    None
}

/// Builds a session's plan from the `config_script` entries, in order. `max_len` is
/// `service_max_script_length`; `fetch` downloads `http(s)://` scripts. Blocking (it
/// downloads and reads files): from async code, call it in `spawn_blocking`.
pub fn plan(
    scripts: &[String],
    vars: &Vars,
    max_len: usize,
    fetch: &Fetch<'_>,
) -> Result<Plan, ScriptError> {
    build(scripts, vars, max_len, fetch).map(|(plan, _)| plan)
}

/// [`plan`], also returning the skipped scripts.
fn build(
    scripts: &[String],
    vars: &Vars,
    max_len: usize,
    fetch: &Fetch<'_>,
) -> Result<(Plan, Vec<(usize, Skip)>), ScriptError> {
    let mut plan = Plan::default();
    let mut skipped = Vec::new();
    for (index, script) in scripts.iter().enumerate() {
        match step(index, script, vars, max_len, fetch) {
            Ok(Step::Qemu(args)) => {
                info!(
                    script = index,
                    args = args.len(),
                    "config_script adds QEMU arguments"
                );
                plan.qemu_args.extend(args);
            }
            Ok(Step::Customize(item)) => {
                info!(
                    script = index,
                    option = item.option(),
                    bytes = item.content().len(),
                    "config_script goes to virt-customize"
                );
                plan.customize.push(item);
            }
            Err(Outcome::Skip(reason)) => {
                match &reason {
                    Skip::Empty => debug!(script = index, "config_script skipped: empty"),
                    Skip::False => {
                        info!(script = index, "config_script skipped: condition is false")
                    }
                    Skip::Content(inner) if matches!(**inner, Skip::False) => info!(
                        script = index,
                        "config_script skipped: its content's condition is false"
                    ),
                    _ => warn!(script = index, %reason, "config_script skipped"),
                }
                skipped.push((index, reason));
            }
            Err(Outcome::Fail(e)) => return Err(e),
        }
    }
    Ok((plan, skipped))
}

fn step(
    index: usize,
    script: &str,
    vars: &Vars,
    max_len: usize,
    fetch: &Fetch<'_>,
) -> Result<Step, Outcome> {
    if script.len() > max_len {
        return Err(Skip::TooLong(max_len).into());
    }
    if script.trim().is_empty() {
        return Err(Skip::Empty.into());
    }
    if script.contains(PASSWORD) {
        return Err(Outcome::Fail(ScriptError::Password { index }));
    }
    let body = match expr::parse_prefix(script) {
        Ok(Some((condition, at))) => match condition.eval(vars) {
            Ok(true) => &script[at..],
            Ok(false) => return Err(Skip::False.into()),
            Err(e) => return Err(Skip::Condition(e).into()),
        },
        Ok(None) => script,
        Err(e) => return Err(Skip::Condition(e).into()),
    };
    match form(body.trim()).ok_or(Skip::UnknownForm)? {
        Form::FirstBoot(text) => Ok(Step::Customize(Customize::FirstBoot(inline(text, vars)?))),
        Form::Commands(text) => Ok(Step::Customize(Customize::CommandsFromFile(inline(
            text, vars,
        )?))),
        Form::Qemu(text) => qemu(index, text, vars),
        Form::Url(url) => {
            let url = substitute(url, vars).map_err(Skip::Symbol)?;
            let body = fetch(&url).map_err(Skip::Fetch)?;
            Ok(Step::Customize(Customize::FirstBoot(content(
                body.into_bytes(),
                vars,
                max_len,
            )?)))
        }
        Form::Path(path) => {
            let path = substitute(path, vars).map_err(Skip::Symbol)?;
            if !Path::new(&path).is_absolute() {
                return Err(Skip::UnknownForm.into());
            }
            let raw = read_capped(Path::new(&path), max_len).map_err(Skip::Read)?;
            Ok(Step::Customize(Customize::FirstBoot(content(
                raw, vars, max_len,
            )?)))
        }
    }
}

/// The text of an `exec:`, `bash:` or `virt-customize:` script.
fn inline(text: &str, vars: &Vars) -> Result<String, Skip> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Skip::Empty);
    }
    substitute(text, vars).map_err(Skip::Symbol)
}

fn qemu(index: usize, text: &str, vars: &Vars) -> Result<Step, Outcome> {
    let words = qemu_args::split(text).map_err(Skip::QemuSyntax)?;
    if words.is_empty() {
        return Err(Skip::Empty.into());
    }
    let args = words
        .iter()
        .map(|w| substitute(w, vars))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Skip::Symbol)?;
    if let Some((arg, reason)) = qemu_args::refused(&args) {
        return Err(Outcome::Fail(ScriptError::RefusedQemuArg {
            index,
            arg,
            reason,
        }));
    }
    Ok(Step::Qemu(args))
}

/// A downloaded or host file's content: at most `max_len` bytes, non-ASCII bytes
/// dropped, an optional `if(...):` at its very start, then symbols filled in. A
/// condition is recognised only there, so an `if(x):` line inside, say, a Python
/// script stays script text (the original evaluated the first one found anywhere).
fn content(raw: Vec<u8>, vars: &Vars, max_len: usize) -> Result<String, Skip> {
    let wrap = |s: Skip| Skip::Content(Box::new(s));
    if raw.len() > max_len {
        return Err(wrap(Skip::TooLong(max_len)));
    }
    let text: String = raw
        .into_iter()
        .filter(u8::is_ascii)
        .map(char::from)
        .collect();
    if text.contains(PASSWORD) {
        return Err(wrap(Skip::Symbol(SymbolError::Password)));
    }
    let body = match expr::parse_prefix(&text) {
        Ok(Some((condition, at))) => match condition.eval(vars) {
            Ok(true) => text[at..].trim_start(),
            Ok(false) => return Err(wrap(Skip::False)),
            Err(e) => return Err(wrap(Skip::Condition(e))),
        },
        Ok(None) => &text,
        Err(e) => return Err(wrap(Skip::Condition(e))),
    };
    if body.trim().is_empty() {
        return Err(wrap(Skip::Empty));
    }
    substitute(body, vars).map_err(|e| wrap(Skip::Symbol(e)))
}

/// Reads a regular file, at most `max_len + 1` bytes (enough to tell it is too long).
fn read_capped(path: &Path, max_len: usize) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut raw = Vec::new();
    file.take(max_len as u64 + 1).read_to_end(&mut raw)?;
    Ok(raw)
}

/// Checks what does not depend on a session, for configuration loading: lengths,
/// `@PW@`, condition syntax, forms, QEMU argument quoting and refused options (on the
/// arguments as written, before symbols are filled in). Empty entries are accepted
/// (they are skipped).
pub fn check(scripts: &[String], max_len: usize) -> Result<(), ScriptError> {
    for (index, script) in scripts.iter().enumerate() {
        let invalid = |reason: Skip| ScriptError::Invalid {
            index,
            reason: reason.to_string(),
        };
        if script.len() > max_len {
            return Err(invalid(Skip::TooLong(max_len)));
        }
        if script.trim().is_empty() {
            continue;
        }
        if script.contains(PASSWORD) {
            return Err(ScriptError::Password { index });
        }
        let body = match expr::parse_prefix(script) {
            Ok(Some((_, at))) => &script[at..],
            Ok(None) => script,
            Err(source) => return Err(ScriptError::Condition { index, source }),
        };
        match form(body.trim()) {
            None => return Err(invalid(Skip::UnknownForm)),
            Some(Form::Qemu(text)) => {
                let words = qemu_args::split(text).map_err(|e| invalid(Skip::QemuSyntax(e)))?;
                if let Some((arg, reason)) = qemu_args::refused(&words) {
                    return Err(ScriptError::RefusedQemuArg { index, arg, reason });
                }
            }
            Some(Form::Path(path)) if !path.starts_with('/') => {
                return Err(invalid(Skip::UnknownForm))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::super::symbols::Symbol;
    use super::*;

    const MAX: usize = 65535;

    fn vars() -> Vars {
        Vars {
            user: "alice".into(),
            session_name: "s-1".into(),
            vm: "debian12.qcow2".into(),
        }
    }

    fn no_fetch(url: &str) -> Result<String, String> {
        panic!("unexpected download of {url}")
    }

    fn scripts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// A fake web: URL → body; records what was asked.
    struct Web {
        pages: HashMap<String, String>,
        asked: RefCell<Vec<String>>,
    }

    impl Web {
        fn new(pages: &[(&str, &str)]) -> Self {
            Web {
                pages: pages
                    .iter()
                    .map(|(u, b)| (u.to_string(), b.to_string()))
                    .collect(),
                asked: RefCell::new(Vec::new()),
            }
        }

        fn fetch(&self, url: &str) -> Result<String, String> {
            self.asked.borrow_mut().push(url.to_owned());
            self.pages
                .get(url)
                .cloned()
                .ok_or_else(|| "404 Not Found".to_owned())
        }
    }

    fn build_with(list: &[&str], vars: &Vars, fetch: &Fetch<'_>) -> (Plan, Vec<(usize, Skip)>) {
        build(&scripts(list), vars, MAX, fetch).unwrap()
    }

    #[test]
    fn inline_forms() {
        let (plan, skipped) = build_with(
            &[
                "exec: touch /tmp/@USER@; echo @VM@ > /etc/motd",
                "bash:\n  apt-get update\n",
                "virt-customize: run-command touch /tmp/x\nwrite /etc/darts:@SESSION_NAME@",
            ],
            &vars(),
            &no_fetch,
        );
        assert!(skipped.is_empty());
        assert_eq!(plan.qemu_args, Vec::<String>::new());
        assert_eq!(
            plan.customize,
            vec![
                Customize::FirstBoot("touch /tmp/alice; echo debian12.qcow2 > /etc/motd".into()),
                Customize::FirstBoot("apt-get update".into()),
                Customize::CommandsFromFile(
                    "run-command touch /tmp/x\nwrite /etc/darts:s-1".into()
                ),
            ]
        );
    }

    #[test]
    fn qemu_forms_append_arguments_in_order() {
        let (plan, skipped) = build_with(
            &[
                "qemu: -smp 2 -name \"vm of @USER@\"",
                "if(\"@VM@\" =~ /debian/): qemu-system-x86_64: -device virtio-rng-pci",
                "qemu-system-aarch64: -usb",
            ],
            &vars(),
            &no_fetch,
        );
        assert!(skipped.is_empty());
        assert!(plan.customize.is_empty());
        assert_eq!(
            plan.qemu_args,
            [
                "-smp",
                "2",
                "-name",
                "vm of alice",
                "-device",
                "virtio-rng-pci",
                "-usb"
            ]
        );
    }

    #[test]
    fn a_symbol_value_cannot_add_qemu_arguments() {
        for user in ["x -vnc :1", "x,file=/etc/shadow", "\"x"] {
            let v = Vars {
                user: user.into(),
                ..vars()
            };
            let (plan, skipped) = build_with(&["qemu: -name @USER@"], &v, &no_fetch);
            assert!(plan.qemu_args.is_empty(), "{user}");
            assert!(matches!(
                skipped[..],
                [(0, Skip::Symbol(SymbolError::UnsafeValue(_)))]
            ));
        }
    }

    #[test]
    fn refused_qemu_arguments_stop_the_plan() {
        let err = build(
            &scripts(&["exec: true", "qemu: -smp 2 -vnc :3"]),
            &vars(),
            MAX,
            &no_fetch,
        )
        .unwrap_err();
        let ScriptError::RefusedQemuArg { index, arg, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!((*index, arg.as_str()), (1, "-vnc"));
        assert!(err.to_string().contains("config_script[1]"), "{err}");
        // Also when a symbol value spells it.
        let v = Vars {
            user: "-daemonize".into(),
            ..vars()
        };
        assert!(matches!(
            build(&scripts(&["qemu: @USER@"]), &v, MAX, &no_fetch),
            Err(ScriptError::RefusedQemuArg { index: 0, .. })
        ));
    }

    #[test]
    fn bad_qemu_quoting_skips() {
        let (plan, skipped) = build_with(&["qemu: -name \"open", "qemu:   "], &vars(), &no_fetch);
        assert_eq!(plan, Plan::default());
        assert!(matches!(
            skipped[..],
            [(0, Skip::QemuSyntax(_)), (1, Skip::Empty)]
        ));
    }

    #[test]
    fn urls_are_fetched_after_substitution_and_conditions() {
        let web = Web::new(&[
            (
                "https://conf.example/alice/debian12.qcow2.sh",
                "#!/bin/sh\necho hi @USER@\n",
            ),
            ("http://conf.example/all.sh", "echo all"),
        ]);
        let fetch = |u: &str| web.fetch(u);
        let (plan, skipped) = build_with(
            &[
                "https://conf.example/@USER@/@VM@.sh",
                "if(\"@VM@\" =~ /ubuntu/i): http://conf.example/ubuntu.sh",
                "if(\"@USER@\" eq \"alice\"): http://conf.example/all.sh",
                "http://conf.example/missing.sh",
            ],
            &vars(),
            &fetch,
        );
        assert_eq!(
            plan.customize,
            vec![
                Customize::FirstBoot("#!/bin/sh\necho hi alice\n".into()),
                Customize::FirstBoot("echo all".into()),
            ]
        );
        assert_eq!(
            *web.asked.borrow(),
            [
                "https://conf.example/alice/debian12.qcow2.sh",
                "http://conf.example/all.sh",
                "http://conf.example/missing.sh"
            ]
        );
        assert!(
            matches!(&skipped[..], [(1, Skip::False), (3, Skip::Fetch(e))] if e == "404 Not Found")
        );
    }

    #[test]
    fn content_is_ascii_capped_substituted_and_may_start_with_a_condition() {
        let web = Web::new(&[
            (
                "http://x/accents",
                "echo caf\u{e9} \u{1F600}ok @SESSION_NAME@",
            ),
            (
                "http://x/debian-only",
                "if(\"@VM@\" =~ /debian/):\n#!/bin/sh\necho d\n",
            ),
            ("http://x/ubuntu-only", "  if(\"@VM@\" =~ /ubuntu/): echo u"),
            ("http://x/bad-cond", "if(system(\"id\")): echo x"),
            (
                "http://x/python",
                "#!/usr/bin/python3\nx = 1\nif(x):\n    print(x)\n",
            ),
            ("http://x/long", &"#".repeat(101)),
            ("http://x/exact", &"#".repeat(100)),
            ("http://x/blank", " \n\t"),
            ("http://x/pw", "echo @PW@"),
            ("http://x/cond-only", "if(1):   "),
        ]);
        let fetch = |u: &str| web.fetch(u);
        let list = [
            "http://x/accents",
            "http://x/debian-only",
            "http://x/ubuntu-only",
            "http://x/bad-cond",
            "http://x/python",
            "http://x/long",
            "http://x/exact",
            "http://x/blank",
            "http://x/pw",
            "http://x/cond-only",
        ];
        let (plan, skipped) = build(&scripts(&list), &vars(), 100, &fetch).unwrap();
        assert_eq!(
            plan.customize,
            vec![
                Customize::FirstBoot("echo caf ok s-1".into()),
                Customize::FirstBoot("#!/bin/sh\necho d\n".into()),
                Customize::FirstBoot("#!/usr/bin/python3\nx = 1\nif(x):\n    print(x)\n".into()),
                Customize::FirstBoot("#".repeat(100)),
            ]
        );
        let reasons: Vec<(usize, String)> =
            skipped.iter().map(|(i, s)| (*i, s.to_string())).collect();
        assert_eq!(
            reasons.iter().map(|r| r.0).collect::<Vec<_>>(),
            [2, 3, 5, 7, 8, 9]
        );
        assert!(matches!(&skipped[0].1, Skip::Content(b) if matches!(**b, Skip::False)));
        assert!(
            reasons[1].1.contains("unexpected word `system`"),
            "{}",
            reasons[1].1
        );
        assert!(matches!(&skipped[2].1, Skip::Content(b) if matches!(**b, Skip::TooLong(100))));
        assert!(matches!(&skipped[3].1, Skip::Content(b) if matches!(**b, Skip::Empty)));
        assert!(
            matches!(&skipped[4].1, Skip::Content(b) if matches!(**b, Skip::Symbol(SymbolError::Password)))
        );
        assert!(matches!(&skipped[5].1, Skip::Content(b) if matches!(**b, Skip::Empty)));
    }

    #[test]
    fn host_files_are_read_like_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("debian12.qcow2.sh");
        std::fs::write(&file, b"echo \xff@USER@\n").unwrap();
        let big = dir.path().join("big.sh");
        std::fs::write(&big, vec![b'#'; 200]).unwrap();
        let d = dir.path().display();
        let list = [
            format!("{d}/@VM@.sh"),
            format!("file://{d}/debian12.qcow2.sh"),
            format!("if(@USER@ ne 'alice'): {d}/debian12.qcow2.sh"),
            format!("{d}/missing.sh"),
            format!("{d}"),
            format!("{d}/big.sh"),
            "file://relative/path.sh".into(),
        ];
        let (plan, skipped) = build(&list, &vars(), 100, &no_fetch).unwrap();
        assert_eq!(
            plan.customize,
            vec![
                Customize::FirstBoot("echo alice\n".into()),
                Customize::FirstBoot("echo alice\n".into())
            ]
        );
        assert_eq!(
            skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
            [2, 3, 4, 5, 6]
        );
        assert!(matches!(skipped[0].1, Skip::False));
        assert!(matches!(&skipped[1].1, Skip::Read(e) if e.kind() == io::ErrorKind::NotFound));
        assert!(matches!(&skipped[2].1, Skip::Read(_)));
        assert!(matches!(&skipped[3].1, Skip::Content(b) if matches!(**b, Skip::TooLong(100))));
        assert!(matches!(skipped[4].1, Skip::UnknownForm));
    }

    #[test]
    fn conditions_select_and_errors_skip() {
        let (plan, skipped) = build_with(
            &[
                r#"if("@VM@" =~ /debian/i): exec: echo debian"#,
                r#"if("@VM@" =~ /ubuntu/i): exec: echo ubuntu"#,
                r#"if(system("reboot")): exec: echo never"#,
                r#"if("@VM@" == 3): exec: echo nan"#,
                r#"if("@VM@" =~ /debian/ exec: echo unclosed"#,
                r#"if ( !("@USER@" eq "bob") && "@SESSION_NAME@" ne "" ) : exec: echo spaced"#,
            ],
            &vars(),
            &no_fetch,
        );
        assert_eq!(
            plan.customize,
            vec![
                Customize::FirstBoot("echo debian".into()),
                Customize::FirstBoot("echo spaced".into())
            ]
        );
        assert!(matches!(
            &skipped[..],
            [
                (1, Skip::False),
                (2, Skip::Condition(_)),
                (3, Skip::Condition(ExprError::NotANumber)),
                (4, Skip::Condition(_))
            ]
        ));
    }

    #[test]
    fn injection_through_the_vm_name_is_data() {
        let v = Vars {
            vm: r#"x") || system("reboot"#.into(),
            ..vars()
        };
        let (plan, skipped) = build_with(
            &[
                r#"if("@VM@" =~ /debian/i): exec: echo debian"#,
                "exec: echo @VM@",
            ],
            &v,
            &no_fetch,
        );
        assert_eq!(plan, Plan::default());
        assert!(matches!(
            &skipped[..],
            [
                (0, Skip::False),
                (1, Skip::Symbol(SymbolError::UnsafeValue(Symbol::Vm)))
            ]
        ));
    }

    #[test]
    fn length_emptiness_and_unknown_forms_skip() {
        let long = format!("exec: {}", "x".repeat(100));
        let list = [
            long.as_str(),
            "",
            "   ",
            "exec:   ",
            "touch /tmp/x",
            "relative/path.sh",
            "ftp://host/x",
            "if(1):",
        ];
        let (plan, skipped) = build(&scripts(&list), &vars(), 100, &no_fetch).unwrap();
        assert_eq!(plan, Plan::default());
        assert!(matches!(
            &skipped[..],
            [
                (0, Skip::TooLong(100)),
                (1, Skip::Empty),
                (2, Skip::Empty),
                (3, Skip::Empty),
                (4, Skip::UnknownForm),
                (5, Skip::UnknownForm),
                (6, Skip::UnknownForm),
                (7, Skip::UnknownForm)
            ]
        ));
    }

    #[test]
    fn password_symbol_is_an_error_in_configuration() {
        for script in [
            "exec: echo @PW@",
            r#"if("@PW@" eq "x"): exec: true"#,
            "http://x/?pw=@PW@",
        ] {
            let err = plan(&scripts(&["exec: true", script]), &vars(), MAX, &no_fetch).unwrap_err();
            assert!(
                matches!(err, ScriptError::Password { index: 1 }),
                "{script}: {err}"
            );
            assert!(!err.to_string().contains(script));
        }
    }

    #[test]
    fn skip_reasons_do_not_quote_content() {
        let web = Web::new(&[]);
        let fetch = |u: &str| web.fetch(u);
        let (_, skipped) = build_with(
            &[
                "exec:",
                "https://h/secret-token-123",
                "/nonexistent/secret-token-456",
            ],
            &vars(),
            &fetch,
        );
        for (_, reason) in skipped {
            let text = reason.to_string();
            assert!(!text.contains("secret-token"), "{text}");
        }
    }

    #[test]
    fn check_reports_configuration_mistakes() {
        assert!(check(
            &scripts(&[
                "",
                "exec: true",
                r#"if("@VM@" =~ /x/): qemu: -name @VM@ -smp 2"#,
                "qemu-system-x86_64: -usb",
                "https://x/@USER@.sh",
                "file:///etc/x",
                "/etc/x",
            ]),
            MAX
        )
        .is_ok());
        let index = |s: &str| match check(&scripts(&["exec: ok", s]), 100) {
            Err(e) => e,
            Ok(()) => panic!("{s} passed"),
        };
        assert!(matches!(
            index("exec: @PW@"),
            ScriptError::Password { index: 1 }
        ));
        assert!(matches!(
            index("if(`id`): exec: x"),
            ScriptError::Condition { index: 1, .. }
        ));
        assert!(matches!(
            index("qemu: -qmp stdio"),
            ScriptError::RefusedQemuArg { index: 1, .. }
        ));
        assert!(matches!(
            index("qemu: -name 'x"),
            ScriptError::Invalid { index: 1, .. }
        ));
        assert!(matches!(
            index("run this"),
            ScriptError::Invalid { index: 1, .. }
        ));
        assert!(matches!(
            index("file://x"),
            ScriptError::Invalid { index: 1, .. }
        ));
        let long = format!("exec: {}", "x".repeat(100));
        assert!(matches!(
            index(&long),
            ScriptError::Invalid { index: 1, .. }
        ));
    }

    #[test]
    fn plan_keeps_configuration_order_across_forms() {
        let web = Web::new(&[("http://h/a", "echo a")]);
        let fetch = |u: &str| web.fetch(u);
        let p = plan(
            &scripts(&[
                "virt-customize: install vim",
                "qemu: -m 2G",
                "http://h/a",
                "exec: echo b",
            ]),
            &vars(),
            MAX,
            &fetch,
        )
        .unwrap();
        assert_eq!(p.qemu_args, ["-m", "2G"]);
        assert_eq!(
            p.customize,
            vec![
                Customize::CommandsFromFile("install vim".into()),
                Customize::FirstBoot("echo a".into()),
                Customize::FirstBoot("echo b".into()),
            ]
        );
    }
}
