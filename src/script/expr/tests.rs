use super::*;

fn vars() -> Vars {
    Vars {
        user: "farhie".into(),
        session_name: "s-7".into(),
        vm: "Debian12.qcow2".into(),
    }
}

fn eval_with(text: &str, vars: &Vars) -> Result<bool, ExprError> {
    parse(text)?.eval(vars)
}

fn is_true(text: &str) -> bool {
    eval_with(text, &vars()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn syntax(text: &str) -> (usize, SyntaxError) {
    match parse(text) {
        Err(ExprError::Syntax { column, kind }) => (column, kind),
        other => panic!("{text}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn documented_examples() {
    for (script, vm, user, expected) in [
        (
            r#"if("@VM@" =~ /debian/i): http://some/url"#,
            "Debian12.qcow2",
            "x",
            true,
        ),
        (
            r#"if("@VM@" =~ /debian/i): http://some/url"#,
            "ubuntu.qcow2",
            "x",
            false,
        ),
        (
            r#"if("@VM@" =~ /debian/): exec: touch /tmp/x"#,
            "Debian12.qcow2",
            "x",
            false,
        ),
        (
            r#"if("@VM@" =~ /debian/): exec: touch /tmp/x"#,
            "debian12.qcow2",
            "x",
            true,
        ),
        (
            r#"if("@VM@" =~ /unstable/i): /host/path/script.sh"#,
            "Debian-UNSTABLE",
            "x",
            true,
        ),
        (
            r#"if("@USER@" =~ /farhie/): http://some/url"#,
            "vm",
            "farhie",
            true,
        ),
        (
            r#"if("@USER@" =~ /farhie/): http://some/url"#,
            "vm",
            "alice",
            false,
        ),
    ] {
        let v = Vars {
            user: user.into(),
            session_name: "s".into(),
            vm: vm.into(),
        };
        let (cond, at) = parse_prefix(script).unwrap().unwrap();
        assert_eq!(
            cond.eval(&v).unwrap(),
            expected,
            "{script} with {vm}/{user}"
        );
        assert!(
            script[at..].trim_start().starts_with(['h', 'e', '/']),
            "{script}"
        );
    }
}

#[test]
fn prefix_is_found_only_at_the_start() {
    assert!(parse_prefix("exec: if(1): true").unwrap().is_none());
    assert!(parse_prefix("http://x/if(1):").unwrap().is_none());
    assert!(parse_prefix("ifconfig").unwrap().is_none());
    let (_, at) = parse_prefix("  if (1) : rest").unwrap().unwrap();
    assert_eq!(&"  if (1) : rest"[at..], " rest");
    // `)` and `:` inside strings and regexes do not end the condition.
    let text = r#"if("a):" =~ /\):/ && (1)): exec: x"#;
    let (cond, at) = parse_prefix(text).unwrap().unwrap();
    assert!(cond.eval(&vars()).unwrap());
    assert_eq!(&text[at..], " exec: x");
}

#[test]
fn prefix_errors() {
    let column = |text: &str| match parse_prefix(text) {
        Err(ExprError::Syntax { column, kind }) => (column, kind),
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(
        column("if(1 exec: x"),
        (6, SyntaxError::UnexpectedWord("exec".into()))
    );
    assert_eq!(column("if(1) exec: x"), (7, SyntaxError::ExpectedColon));
    assert_eq!(column("if(1"), (5, SyntaxError::ExpectedCloseParen));
    assert_eq!(column("if(): x"), (4, SyntaxError::ExpectedOperand));
}

#[test]
fn string_comparisons() {
    assert!(is_true(r#""a" eq "a""#));
    assert!(!is_true(r#""a" eq "b""#));
    assert!(is_true(r#""a" ne "b""#));
    assert!(!is_true(r#""a" ne "a""#));
    assert!(is_true(r#"'a'eq"a""#));
    assert!(is_true(r#""@USER@" eq "farhie""#));
    assert!(is_true(r#"@USER@ eq 'farhie'"#));
    assert!(is_true(r#""@USER@-@SESSION_NAME@" eq "farhie-s-7""#));
    assert!(is_true(r#"1 eq "1""#));
    assert!(is_true(r#"1.50 eq "1.5""#));
    assert!(!is_true(r#""1.0" eq 1"#));
}

#[test]
fn numeric_comparisons() {
    assert!(is_true("1 == 1"));
    assert!(is_true("1 != 2"));
    assert!(!is_true("2 != 2"));
    assert!(is_true(r#""1.0" == 1"#));
    assert!(is_true(r#"" 3 " == 3"#));
    assert!(is_true("0.5 == 0.50"));
    assert!(is_true("(1 == 1) == 1"));
    assert_eq!(
        eval_with(r#""abc" == 0"#, &vars()),
        Err(ExprError::NotANumber)
    );
    assert_eq!(eval_with(r#""" == 0"#, &vars()), Err(ExprError::NotANumber));
    assert_eq!(eval_with("@VM@ == 1", &vars()), Err(ExprError::NotANumber));
}

#[test]
fn matches_and_flags() {
    assert!(is_true(r#""@VM@" =~ /^Debian\d+\.qcow2$/"#));
    assert!(is_true(r#""@VM@" !~ /ubuntu/"#));
    assert!(!is_true(r#""@VM@" !~ /Debian/"#));
    assert!(!is_true(r#""@VM@" =~ /debian/"#));
    assert!(is_true(r#""@VM@" =~ /debian/i"#));
    assert!(is_true(r#""a/b" =~ /a\/b/"#));
    assert!(is_true(r#""a\nb" =~ /^b$/m"#));
    assert!(!is_true(r#""a\nb" =~ /^b$/"#));
    assert!(is_true(r#""a\nb" =~ /a.b/s"#));
    assert!(!is_true(r#""a\nb" =~ /a.b/"#));
    assert!(is_true(
        r#""ab" =~ / a b # comment
            /x"#
    ));
    assert!(is_true(r#""AB" =~ /a b/xi"#));
    assert!(is_true(r#""x" =~ /x/imsx"#));
    // A match gives 1 or "", so it chains like Perl's.
    assert!(is_true(r#""a" =~ /a/ =~ /1/"#));
    assert!(is_true(r#""a" !~ /b/ !~ /^$/"#));
}

#[test]
fn symbols_in_regexes_match_their_value_literally() {
    let v = Vars {
        user: "a.b+c".into(),
        session_name: "x y#z".into(),
        vm: "(".into(),
    };
    assert!(eval_with(r#""a.b+c" =~ /^@USER@$/"#, &v).unwrap());
    assert!(!eval_with(r#""aXbbc" =~ /^@USER@$/"#, &v).unwrap());
    assert!(eval_with(r#""x y#z" =~ /^@SESSION_NAME@$/x"#, &v).unwrap());
    assert!(eval_with(r#""vm(" =~ /vm@VM@/"#, &v).unwrap());
}

#[test]
fn logic_and_truth() {
    assert!(is_true("1 && 1"));
    assert!(!is_true("1 && 0"));
    assert!(is_true("0 || 1"));
    assert!(!is_true("0 || 0"));
    assert!(is_true("!0"));
    assert!(!is_true("!1"));
    assert!(is_true("!!1"));
    assert!(!is_true(r#""""#));
    assert!(!is_true(r#""0""#));
    assert!(is_true(r#""0.0""#));
    assert!(is_true(r#""00""#));
    assert!(!is_true("0.0"));
    assert!(is_true("@USER@"));
    assert!(!eval_with("@USER@", &Vars::default()).unwrap());
}

#[test]
fn precedence() {
    // && before ||.
    assert!(is_true("1 || 0 && 0"));
    assert!(!is_true("(1 || 0) && 0"));
    // Comparisons before &&.
    assert!(is_true(r#""a" eq "a" && "b" eq "b""#));
    // =~ before eq: ("a" =~ /a/) is 1.
    assert!(is_true(r#""a" =~ /a/ eq 1"#));
    // ! before =~, as in Perl: (!"debian") =~ /debian/ is "" =~ /debian/.
    assert!(!is_true(r#"!"debian" =~ /debian/"#));
    assert!(!is_true(r#"!("debian" =~ /debian/)"#));
    assert!(is_true(r#"!("debian" =~ /ubuntu/)"#));
    assert_eq!(
        parse(r#"!"x" =~ /y/ || 1 && "a" eq "b""#)
            .unwrap()
            .to_string(),
        r#"((!"x" =~ /y/) || (1 && ("a" eq "b")))"#
    );
}

#[test]
fn short_circuit_skips_errors() {
    assert!(is_true(r#"1 || "x" == 1"#));
    assert!(!is_true(r#"0 && "x" == 1"#));
    assert!(eval_with(r#"0 || "x" == 1"#, &vars()).is_err());
}

#[test]
fn injection_through_values_is_data() {
    for vm in [
        r#"x") || system("id"#,
        r#"x" || "1"#,
        "x') || ('1",
        r#"x"; `reboot`; ""#,
        r#"$(reboot)"#,
        "@USER@",
        "a/ || 1 || /b",
    ] {
        let v = Vars {
            vm: vm.into(),
            ..vars()
        };
        assert!(
            !eval_with(r#""@VM@" eq "debian""#, &v).unwrap(),
            "{vm:?} changed the condition"
        );
        assert!(eval_with(r#""@VM@" ne "debian""#, &v).unwrap());
        assert!(!eval_with(r#""@VM@" =~ /^debian$/"#, &v).unwrap());
        assert!(eval_with(r#""@VM@" =~ /^@VM@$/"#, &v).unwrap());
        assert!(eval_with("@VM@ eq \"@VM@\"", &v).unwrap());
        let (cond, _) = parse_prefix(r#"if("@VM@" =~ /debian/i): exec: x"#)
            .unwrap()
            .unwrap();
        assert!(!cond.eval(&v).unwrap());
    }
}

#[test]
fn everything_outside_the_grammar_is_refused_with_its_column() {
    assert_eq!(
        syntax(r#"system("id")"#),
        (1, SyntaxError::UnexpectedWord("system".into()))
    );
    assert_eq!(
        syntax(r#"1 || system("id")"#),
        (6, SyntaxError::UnexpectedWord("system".into()))
    );
    assert_eq!(
        syntax(r#""a" eq lc("A")"#),
        (8, SyntaxError::UnexpectedWord("lc".into()))
    );
    assert_eq!(syntax("`id`"), (1, SyntaxError::Backtick));
    assert_eq!(syntax("1 && `id`"), (6, SyntaxError::Backtick));
    assert_eq!(syntax("$x eq 1"), (1, SyntaxError::Variable));
    assert_eq!(syntax("$ENV{HOME}"), (1, SyntaxError::Variable));
    assert_eq!(syntax("1; 2"), (2, SyntaxError::Semicolon));
    assert_eq!(syntax(r#""a$x""#), (3, SyntaxError::Interpolation));
    assert_eq!(syntax("1 + 1"), (3, SyntaxError::Trailing));
    assert_eq!(syntax("1 = 1"), (3, SyntaxError::Trailing));
    assert_eq!(syntax("-1"), (1, SyntaxError::UnexpectedChar('-')));
    assert_eq!(syntax("/x/"), (1, SyntaxError::UnexpectedChar('/')));
    assert_eq!(syntax("@ARGV"), (1, SyntaxError::UnexpectedChar('@')));
    assert_eq!(
        syntax("@HOME@"),
        (1, SyntaxError::UnknownSymbol("HOME".into()))
    );
    assert_eq!(syntax("@PW@"), (1, SyntaxError::Password));
    assert_eq!(syntax(r#"1 && "@PW@" eq "x""#), (6, SyntaxError::Password));
    assert_eq!(syntax(r#""x" =~ /@PW@/"#), (8, SyntaxError::Password));
    assert_eq!(syntax("(1"), (3, SyntaxError::ExpectedCloseParen));
    assert_eq!(syntax("(1 2)"), (4, SyntaxError::ExpectedCloseParen));
    assert_eq!(syntax(""), (1, SyntaxError::ExpectedOperand));
    assert_eq!(syntax("1 &&"), (5, SyntaxError::ExpectedOperand));
    assert_eq!(
        syntax("eq 1"),
        (1, SyntaxError::UnexpectedWord("eq".into()))
    );
    assert_eq!(
        syntax("1 and 1"),
        (3, SyntaxError::UnexpectedWord("and".into()))
    );
    assert_eq!(syntax(r#""abc"#), (1, SyntaxError::UnterminatedString));
    assert_eq!(syntax("'abc"), (1, SyntaxError::UnterminatedString));
    assert_eq!(
        syntax(r#""x" =~ /abc"#),
        (8, SyntaxError::UnterminatedRegex)
    );
    assert_eq!(syntax(r#""x" =~ "x""#), (8, SyntaxError::ExpectedRegex));
    assert_eq!(
        syntax(r#""x" =~ /x/g"#),
        (11, SyntaxError::UnknownFlag('g'))
    );
    assert_eq!(
        syntax(r#""x" =~ /x/e"#),
        (11, SyntaxError::UnknownFlag('e'))
    );
    assert_eq!(syntax("1 == 1 == 1"), (8, SyntaxError::ChainedComparison));
    assert_eq!(
        syntax(r#""a" eq "a" ne "b""#),
        (12, SyntaxError::ChainedComparison)
    );
    assert_eq!(syntax("1.x"), (1, SyntaxError::InvalidNumber));
    assert_eq!(syntax("1."), (1, SyntaxError::InvalidNumber));
    assert_eq!(syntax("0x10"), (1, SyntaxError::InvalidNumber));
    assert_eq!(syntax("1.2.3"), (1, SyntaxError::InvalidNumber));
    assert_eq!(syntax("1e5"), (1, SyntaxError::InvalidNumber));
    // Columns count characters, not bytes.
    assert_eq!(syntax(r#""é" eq ; "#), (8, SyntaxError::Semicolon));
}

#[test]
fn regex_errors_are_clear() {
    let (column, kind) = syntax(r#""x" =~ /a(/"#);
    assert_eq!(column, 8);
    let SyntaxError::Regex(message) = kind else {
        panic!("{kind:?}")
    };
    assert!(message.contains("unclosed group"), "{message}");
    assert!(!message.contains('\n'));
    // Backreferences and lookaround do not exist in this engine.
    assert!(matches!(
        syntax(r#""x" =~ /(a)\1/"#).1,
        SyntaxError::Regex(_)
    ));
    assert!(matches!(
        syntax(r#""x" =~ /a(?=b)/"#).1,
        SyntaxError::Regex(_)
    ));
}

#[test]
fn hostile_regexes_are_bounded() {
    let (_, kind) = syntax(r#""x" =~ /((a{100}){100}){100}/"#);
    let SyntaxError::Regex(message) = kind else {
        panic!("{kind:?}")
    };
    assert!(message.contains("size limit"), "{message}");
    let nested = format!(r#""x" =~ /{}a{}/"#, "(".repeat(40), ")".repeat(40));
    assert!(matches!(syntax(&nested).1, SyntaxError::Regex(_)));
    // Ordinary Unicode classes fit.
    assert!(is_true(r#""été" =~ /^\w+$/i"#));
    // Matching is linear: the classic catastrophic pattern answers at once.
    let text = format!(r#""{}b" =~ /^(a+)+$/"#, "a".repeat(3000));
    assert!(!is_true(&text));
}

#[test]
fn a_symbol_value_can_make_a_regex_fail_at_evaluation() {
    let v = Vars {
        vm: String::new(),
        ..vars()
    };
    let cond = parse(r#""x" =~ /[@VM@]/"#).unwrap();
    assert!(matches!(cond.eval(&v), Err(ExprError::Regex(_))));
    assert!(!cond.eval(&vars()).unwrap());
}

#[test]
fn depth_is_capped() {
    let ok = format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(is_true(&ok));
    let deep = format!(
        "{}1{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert_eq!(syntax(&deep), (MAX_DEPTH + 1, SyntaxError::TooDeep));
    assert!(is_true(&format!("{}1", "!".repeat(MAX_DEPTH))));
    assert_eq!(
        syntax(&format!("{}1", "!".repeat(MAX_DEPTH + 1))).1,
        SyntaxError::TooDeep
    );
    // Long flat chains are fine: they do not nest.
    assert!(is_true(&vec!["1"; 500].join(" && ")));
}

#[test]
fn length_is_capped() {
    let long = format!("\"{}\"", "a".repeat(MAX_EXPR_LEN));
    assert_eq!(syntax(&long).1, SyntaxError::TooLong);
    let fits = format!("\"{}\"", "a".repeat(MAX_EXPR_LEN - 2));
    assert!(is_true(&fits));
    let script = format!("if(\"{}\"): exec: x", "a".repeat(MAX_EXPR_LEN));
    assert!(matches!(
        parse_prefix(&script),
        Err(ExprError::Syntax {
            kind: SyntaxError::TooLong,
            ..
        })
    ));
    // A multi-byte character across the limit is no problem.
    let wide = "é".repeat(MAX_EXPR_LEN);
    assert_eq!(syntax(&wide).1, SyntaxError::TooLong);
}

#[test]
fn escapes_in_strings() {
    assert!(is_true(r#""a\"b" eq 'a"b'"#));
    assert!(is_true(r#"'a\'b' eq "a'b""#));
    assert!(is_true(r#""\$HOME" eq '$HOME'"#));
    assert!(is_true(r#"'a\nb' eq "a\\nb""#));
    assert!(is_true(r#""a\tb" =~ /\t/"#));
    assert!(is_true(r#""user\@host" eq 'user@host'"#));
}

#[test]
fn printing_parses_back_to_the_same_condition() {
    for text in [
        r#""@VM@" =~ /debian/i"#,
        r#"!("@USER@" =~ /a\/b\\/ms) && ("x" ne 'y\n' || 1.25 == @VM@)"#,
        r#""q\"\\\$" !~ /\// =~ /1/x"#,
        r#"'a@@VM@@' eq "@" || !!0"#,
    ] {
        let first = parse(text).unwrap();
        let printed = first.to_string();
        assert_eq!(
            parse(&printed).unwrap(),
            first,
            "{text} printed as {printed}"
        );
    }
}
