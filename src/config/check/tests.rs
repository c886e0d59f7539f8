use super::*;

fn problems_of(text: &str) -> Vec<Problem> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    std::fs::write(&f, text).unwrap();
    check(&ConfigSource::new(Some(&f), &[])).problems
}

#[test]
fn unknown_keys_suggest_and_name_the_line() {
    let p = problems_of("machine = \"a\"\nservice_max_sesion_nb = 3\n");
    let e = p.iter().find(|p| p.is_error()).unwrap();
    assert_eq!(e.key.as_deref(), Some("service_max_sesion_nb"));
    assert!(
        matches!(&e.origin, Some(Origin::File { line: 2, .. })),
        "{e}"
    );
    assert!(
        e.message.contains("did you mean service_max_session_nb?"),
        "{e}"
    );
}

#[test]
fn wrong_types_show_the_value() {
    let p = problems_of("service_max_session_nb = \"ten\"\n");
    let e = p.iter().find(|p| p.is_error()).unwrap();
    assert_eq!(e.key.as_deref(), Some("service_max_session_nb"));
    assert_eq!(
        e.message,
        "wrong type: expected a whole number from 0 to 4294967295, got \"ten\""
    );
    let p = problems_of("email_passwd = 12345678\n");
    assert!(p[0].message.ends_with("got \"********\""), "{}", p[0]);
    let p = problems_of("service_port = 70000\nlayout_cpu = 4\noneshot = 2\n");
    let msgs: Vec<&str> = p
        .iter()
        .filter(|p| p.is_error())
        .map(|p| p.message.as_str())
        .collect();
    assert_eq!(
        msgs[0],
        "wrong type: expected a whole number from 0 to 65535, got 70000"
    );
    assert_eq!(msgs[1], "wrong type: expected a list, got 4");
    assert!(
        msgs[2].starts_with("wrong value: 2 is not a boolean"),
        "{msgs:?}"
    );
}

#[test]
fn a_per_address_connection_cap_too_low_for_browsers_is_a_warning() {
    let warned = |text: &str| {
        problems_of(text)
            .iter()
            .any(|p| p.key.as_deref() == Some("service_max_connections_per_ip") && !p.is_error())
    };
    assert!(warned("service_max_connections_per_ip = 4\n"));
    assert!(!warned("service_max_connections_per_ip = 0\n"));
    assert!(!warned("service_max_connections_per_ip = 64\n"));
    assert!(!warned(""));
}

#[test]
fn vnc_on_tcp_needs_x509_off_loopback_and_a_certificate_for_its_address() {
    let of = |text: &str, key: &str| -> Vec<Problem> {
        problems_of(text)
            .into_iter()
            .filter(|p| p.key.as_deref() == Some(key))
            .collect()
    };
    // Unset: unix sockets, nothing to say.
    assert!(of("", "qemu_vnc_listen").is_empty());
    assert!(of("service_port_vnc = 80\n", "service_port_vnc").is_empty());
    // Off loopback with a password only: an error naming the fix.
    let p = of("qemu_vnc_listen = \"10.0.0.5\"\n", "qemu_vnc_listen");
    assert!(p[0].is_error(), "{p:?}");
    assert!(
        p[0].message.contains("qemu_vnc_security = \"x509\""),
        "{p:?}"
    );
    // On loopback: a warning.
    let p = of("qemu_vnc_listen = \"127.0.0.1\"\n", "qemu_vnc_listen");
    assert!(p.len() == 1 && !p[0].is_error(), "{p:?}");
    // Not an address, every interface, ports below 5900.
    let p = of("qemu_vnc_listen = \"vnc.example.org\"\n", "qemu_vnc_listen");
    assert!(
        p[0].is_error() && p[0].message.contains("not an IP address"),
        "{p:?}"
    );
    let p = of("qemu_vnc_listen = \"0.0.0.0\"\n", "qemu_vnc_listen");
    assert!(
        p[0].is_error() && p[0].message.contains("every interface"),
        "{p:?}"
    );
    let p = of(
        "qemu_vnc_listen = \"127.0.0.1\"\nservice_port_vnc = 5899\n",
        "service_port_vnc",
    );
    assert!(
        p[0].is_error() && p[0].message.contains("below 5900"),
        "{p:?}"
    );
    let p = of(
        "qemu_vnc_listen = \"127.0.0.1\"\nservice_port_vnc = 65530\n",
        "service_port_vnc",
    );
    assert!(p[0].message.contains("stop at 65535"), "{p:?}");
    assert!(!p[0].is_error());

    // x509: the server certificate must name the address.
    let certs = tempfile::tempdir().unwrap();
    crate::certs::init(&crate::certs::Request {
        dir: certs.path().to_owned(),
        server_names: vec!["localhost".into(), "127.0.0.1".into()],
        client_name: "darts".into(),
        days: 1,
        crl: false,
        force: false,
    })
    .unwrap();
    let x509 = format!(
        "qemu_vnc_security = \"x509\"\nqemu_vnc_x509_dir = \"{}\"\n",
        certs.path().display()
    );
    assert!(of(
        &format!("{x509}qemu_vnc_listen = \"127.0.0.1\"\n"),
        "qemu_vnc_listen"
    )
    .is_empty());
    let p = of(
        &format!("{x509}qemu_vnc_listen = \"10.0.0.5\"\n"),
        "qemu_vnc_listen",
    );
    assert!(p[0].is_error(), "{p:?}");
    assert!(
        p[0].message
            .contains("darts certs init --server-name 10.0.0.5"),
        "{p:?}"
    );
}

#[test]
fn a_token_registry_needs_a_readable_source_and_the_shared_secret() {
    let of = |text: &str, key: &str| -> Vec<Problem> {
        problems_of(text)
            .into_iter()
            .filter(|p| p.key.as_deref() == Some(key))
            .collect()
    };
    assert!(of("", "token_redis").is_empty() && of("", "token_redis_key").is_empty());
    let p = of("token_redis = \"h:notaport\"\n", "token_redis");
    assert!(
        p[0].is_error() && p[0].message.contains("\"notaport\""),
        "{p:?}"
    );
    let p = of("token_redis = \"127.0.0.1:6379\"\n", "token_redis_key");
    assert!(
        p[0].is_error() && p[0].message.contains("32 bytes"),
        "{p:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "tiny").unwrap();
    let p = of(
        &format!(
            "token_redis = \"redis://127.0.0.1/0?namespace=d\"\ntoken_redis_key = \"{}\"\n",
            short.display()
        ),
        "token_redis_key",
    );
    assert!(p[0].is_error() && p[0].message.contains("4 bytes"), "{p:?}");
    let good = dir.path().join("good");
    std::fs::write(&good, "k".repeat(32)).unwrap();
    let text = format!(
        "token_redis = \"127.0.0.1::::darts\"\ntoken_redis_key = \"{}\"\n",
        good.display()
    );
    assert!(of(&text, "token_redis").is_empty());
    assert!(of(&text, "token_redis_key").is_empty());
    let p = of(
        &format!("token_redis_key = \"{}\"\n", good.display()),
        "token_redis_key",
    );
    assert!(p.len() == 1 && !p[0].is_error(), "{p:?}");
}
