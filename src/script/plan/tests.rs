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
            Customize::CommandsFromFile("run-command touch /tmp/x\nwrite /etc/darts:s-1".into()),
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
    let reasons: Vec<(usize, String)> = skipped.iter().map(|(i, s)| (*i, s.to_string())).collect();
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
