use super::convert::to_toml;
use super::perl::{parse_value, statements, PerlValue, Unconvertible};
use super::*;

fn value(rhs: &str) -> Result<PerlValue, Unconvertible> {
    parse_value(rhs)
}

#[test]
fn literals() {
    assert_eq!(value(" 86400*4"), Ok(PerlValue::Num(345600.0)));
    assert_eq!(value("(3600 * 24) * 2 + 1"), Ok(PerlValue::Num(172801.0)));
    assert_eq!(value("-1"), Ok(PerlValue::Num(-1.0)));
    assert_eq!(value("0.8"), Ok(PerlValue::Num(0.8)));
    assert_eq!(value("1_000"), Ok(PerlValue::Num(1000.0)));
    assert_eq!(value("'it\\'s'"), Ok(PerlValue::Str("it's".into())));
    assert_eq!(
        value("\"a\\tb\\\"c\""),
        Ok(PerlValue::Str("a\tb\"c".into()))
    );
    assert_eq!(
        value("'/var/lib/' . \"x\""),
        Ok(PerlValue::Str("/var/lib/x".into()))
    );
    assert_eq!(
        value("qw(/mnt /media)"),
        Ok(PerlValue::List(vec![
            PerlValue::Str("/mnt".into()),
            PerlValue::Str("/media".into())
        ]))
    );
    assert_eq!(
        value("[2, 4, 8,]"),
        Ok(PerlValue::List(vec![
            PerlValue::Num(2.0),
            PerlValue::Num(4.0),
            PerlValue::Num(8.0)
        ]))
    );
    assert_eq!(value("q{a b}"), Ok(PerlValue::Str("a b".into())));
    assert_eq!(
        value("[qw(4 8), (16)]"),
        Ok(PerlValue::List(vec![
            PerlValue::Str("4".into()),
            PerlValue::Str("8".into()),
            PerlValue::Num(16.0)
        ]))
    );
}

#[test]
fn what_is_not_a_literal() {
    assert_eq!(value("sub { return 1 }"), Err(Unconvertible::Code));
    assert_eq!(
        value("\\&check"),
        Err(Unconvertible::CodeRef("check".into()))
    );
    assert_eq!(value("{ a => 1 }"), Err(Unconvertible::Hash));
    assert_eq!(value("(a => 1, b => 2)"), Err(Unconvertible::Hash));
    assert_eq!(value("undef"), Err(Unconvertible::Undef));
    assert_eq!(
        value("\"admin@example.org\""),
        Err(Unconvertible::Interpolation("@example".into()))
    );
    assert_eq!(
        value("'admin@example.org'"),
        Ok(PerlValue::Str("admin@example.org".into()))
    );
    assert!(matches!(
        value("$ENV{HOME} . '/x'"),
        Err(Unconvertible::Expr(_))
    ));
    assert!(matches!(value("`hostname`"), Err(Unconvertible::Expr(_))));
}

#[test]
fn statements_split_on_semicolons_outside_strings_blocks_and_regexes() {
    let text = "# head ; not a statement\n$config{a} = 'x;y'; # trailing ; comment\n\
                sub f {\n  my $pw = shift;\n  if ($pw !~ /[@#*;]/) { return 0; }\n  return 1;\n}\n\
                $config{b} = [1,\n 2];\n=pod\n$config{c} = 1;\n=cut\n$config{d} = s/a;b/c/r;\n1;\n__END__\n$config{e} = 1;\n";
    let s = statements(text);
    let got: Vec<(usize, &str)> = s.iter().map(|s| (s.line, s.text.as_str())).collect();
    assert_eq!(got[0], (2, "$config{a} = 'x;y'"));
    assert_eq!(got[1].0, 3);
    assert!(
        got[1].1.starts_with("sub f {") && got[1].1.ends_with('}'),
        "{got:?}"
    );
    assert_eq!(got[2], (8, "$config{b} = [1,\n 2]"));
    assert_eq!(got[3].0, 13);
    assert_eq!(got[4], (14, "1"));
    assert_eq!(got.len(), 5, "{got:?}");
}

#[test]
fn secrets_are_not_repeated_in_the_report() {
    let r = import_text(
        Path::new("config.pl"),
        "$config{email_passwd} = \"pa$$word\";\n$config{email_passwd} = 'a' x 3;\n",
    );
    assert_eq!(r.skipped.len(), 2);
    for s in &r.skipped {
        assert_eq!(s.what, "$config{email_passwd} = \"********\"");
        assert!(
            !s.advice.contains("word") && !s.advice.contains("'a'"),
            "{}",
            s.advice
        );
    }
}

#[test]
fn here_documents_are_skipped_as_text() {
    let text = "$config{layout_footer} = <<\"EOT\";\n<p>it's; here</p>\nEOT\n$config{machine} = 'm';\nmy $x = 1 << 2;\n";
    let s = statements(text);
    let got: Vec<(usize, &str)> = s.iter().map(|s| (s.line, s.text.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (1, "$config{layout_footer} = <<\"EOT\""),
            (4, "$config{machine} = 'm'"),
            (5, "my $x = 1 << 2"),
        ]
    );
}

#[test]
fn types_follow_the_darts_key() {
    let b = toml::Value::Boolean(false);
    assert_eq!(
        to_toml(&PerlValue::Num(1.0), &b),
        Ok(toml::Value::Boolean(true))
    );
    assert_eq!(
        to_toml(&PerlValue::Str("0".into()), &b),
        Ok(toml::Value::Boolean(false))
    );
    let i = toml::Value::Integer(0);
    assert_eq!(
        to_toml(&PerlValue::Str("6080".into()), &i),
        Ok(toml::Value::Integer(6080))
    );
    assert!(to_toml(&PerlValue::Num(1.5), &i).is_err());
    let list = toml::Value::Array(vec![]);
    assert_eq!(
        to_toml(&PerlValue::List(vec![PerlValue::Str(String::new())]), &list),
        Ok(toml::Value::Array(vec![]))
    );
    let s = toml::Value::String(String::new());
    assert_eq!(
        to_toml(&PerlValue::List(vec![PerlValue::Str("a".into())]), &s),
        Ok(toml::Value::String("a".into()))
    );
}
