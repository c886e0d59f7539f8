//! `darts config check` on every kind of mistake, and `darts config keys`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use darts::config::check::{check, Problem};
use darts::config::ConfigSource;

use crate::helpers::{at, darts, text, write};
use crate::support::{self, Scratch};

/// A configuration that passes: directories that exist, nothing contradictory.
fn sound(dir: &Scratch) -> String {
    for d in ["machines", "etc", "html", "novnc"] {
        std::fs::create_dir_all(dir.path(d)).unwrap();
    }
    write(&dir.path("novnc/vnc.html"), "");
    format!(
        "dir_machines = \"{r}/machines\"\ndir_snapshots = \"{r}/snapshots\"\ndir_cfg = \"{r}/state\"\n\
         dir_service = \"{r}/service\"\ndir_etc = \"{r}/etc\"\ndir_html = \"{r}/html\"\n\
         dir_novnc = \"{r}/novnc\"\ndir_mounts = []\ncheck_user_custom = \"/bin/true\"\n",
        r = dir.0.display()
    )
}

/// Checks `sound` plus `extra` (appended at line 10 onwards); returns the errors.
fn errors_of(dir: &Scratch, extra: &str) -> (PathBuf, Vec<Problem>) {
    let _ = std::fs::remove_dir_all(dir.path("config.d"));
    let main = dir.path("config.toml");
    write(&main, &format!("{}{extra}", sound(dir)));
    let report = check(&ConfigSource::new(Some(&main), &[]));
    (main, report.errors().cloned().collect())
}

/// Checks `sound` with `dropin` as config.d/50-site.toml; returns that file and the errors.
fn dropin_errors(dir: &Scratch, dropin: &str) -> (PathBuf, Vec<Problem>) {
    let (main, _) = errors_of(dir, "");
    let file = dir.path("config.d/50-site.toml");
    write(&file, dropin);
    let report = check(&ConfigSource::new(Some(&main), &[]));
    (file, report.errors().cloned().collect())
}

/// Exactly one error, on `key` at `line` of the main file, whose message contains `needle`.
fn assert_one_error(dir: &Scratch, extra: &str, key: &str, line: usize, needle: &str) {
    let (main, errors) = errors_of(dir, extra);
    assert_eq!(errors.len(), 1, "{extra}: {errors:#?}");
    let e = &errors[0];
    assert_eq!(e.key.as_deref(), Some(key), "{e}");
    assert_eq!(e.origin, Some(at(&main, line)), "{e}");
    assert!(e.message.contains(needle), "{extra}: {e}");
}

#[test]
fn a_sound_configuration_passes_with_exit_status_zero() {
    let dir = Scratch::new("config-sound");
    let (main, errors) = errors_of(&dir, "");
    assert!(errors.is_empty(), "{errors:#?}");
    let out = darts(&["config", "check", "-c", main.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("configuration OK"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn unknown_keys_wrong_types_syntax_and_obsolete_keys() {
    let dir = Scratch::new("config-check-keys");
    // Line 10 is the first line after the sound part.
    assert_one_error(
        &dir,
        "service_max_sesion_nb = 3\n",
        "service_max_sesion_nb",
        10,
        "did you mean service_max_session_nb?",
    );
    assert_one_error(
        &dir,
        "certificate_cert = \"/x\"\n",
        "certificate_cert",
        10,
        "did you mean certificate_crt?",
    );
    assert_one_error(
        &dir,
        "\nservice_port = \"http\"\n",
        "service_port",
        11,
        "expected a whole number from 0 to 65535, got \"http\"",
    );
    assert_one_error(
        &dir,
        "oneshot = \"perhaps\"\n",
        "oneshot",
        10,
        "is not a boolean",
    );
    assert_one_error(
        &dir,
        "service_port_multiple = 1\n",
        "service_port_multiple",
        10,
        "not used by darts",
    );
    // A syntax error names the file and line, and nothing else can be checked.
    let (main, errors) = errors_of(&dir, "layout_title = \"unclosed\n");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].origin, Some(at(&main, 10)));
    assert!(
        errors[0].message.starts_with("TOML syntax"),
        "{}",
        errors[0]
    );
}

#[test]
fn tls_combinations() {
    let dir = Scratch::new("config-check-tls");
    let certs = support::make_certs(&dir.0, "web", &["localhost"]);
    let (crt, key) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    assert!(errors_of(
        &dir,
        &format!("certificate_crt = \"{crt}\"\ncertificate_key = \"{key}\"\n")
    )
    .1
    .is_empty());
    assert_one_error(
        &dir,
        &format!(
            "certificate_crt = \"{crt}\"\ncertificate_key = \"{}/absent.key\"\n",
            dir.0.display()
        ),
        "certificate_key",
        11,
        "cannot read",
    );
    // No key file named: the key must be in the certificate file.
    assert_one_error(
        &dir,
        &format!("certificate_crt = \"{crt}\"\n"),
        "certificate_crt",
        10,
        "same file",
    );
    assert_one_error(
        &dir,
        &format!("certificate_key = \"{key}\"\n"),
        "certificate_key",
        10,
        "without certificate_crt",
    );
    // Someone else's key.
    let other = support::make_certs(&dir.0, "other", &["localhost"]);
    assert_one_error(
        &dir,
        &format!(
            "certificate_crt = \"{crt}\"\ncertificate_key = \"{}\"\n",
            other.key.display()
        ),
        "certificate_crt",
        10,
        "",
    );
}

#[test]
fn mail_and_authentication_combinations() {
    let dir = Scratch::new("config-check-auth");
    assert_one_error(
        &dir,
        "check_user_mfa = true\nsmtp_server = \"127.0.0.1\"\n",
        "check_user_mfa",
        10,
        "set email_from",
    );
    assert_one_error(
        &dir,
        "check_user_mfa = 1\n",
        "check_user_mfa",
        10,
        "set smtp_server and email_from",
    );
    assert_one_error(
        &dir,
        "check_user_with_email = true\nemail_from = \"d@example.org\"\n",
        "check_user_with_email",
        10,
        "set smtp_server",
    );
    assert_one_error(
        &dir,
        "check_user_with_ldap = true\nldap_server = \"ldap.example.org\"\nldap_security = \"none\"\n",
        "ldap_security",
        12,
        "only a server on loopback",
    );
    assert!(errors_of(
        &dir,
        "check_user_with_ldap = true\nldap_server = \"127.0.0.1\"\nldap_security = \"none\"\n"
    )
    .1
    .is_empty());
    assert_one_error(
        &dir,
        "smtp_server = \"smtp.example.org\"\nsmtp_use_ssl = \"none\"\n",
        "smtp_use_ssl",
        11,
        "only a server on loopback",
    );
    assert_one_error(
        &dir,
        "check_user_with_imap = true\n",
        "check_user_with_imap",
        10,
        "needs imap_server",
    );
    assert_one_error(
        &dir,
        "imap_security = \"plain\"\n",
        "imap_security",
        10,
        "expected",
    );
    // The custom program must exist (a drop-in overrides the sound one).
    let (file, errors) = dropin_errors(
        &dir,
        "\ncheck_user_custom = \"/nonexistent/check-user --strict\"\n",
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].key.as_deref(), Some("check_user_custom"));
    assert_eq!(errors[0].origin, Some(at(&file, 2)));
    assert!(
        errors[0].message.contains("/nonexistent/check-user"),
        "{}",
        errors[0]
    );
    assert_one_error(
        &dir,
        "auth_ca_file = \"/nonexistent/ca.pem\"\n",
        "auth_ca_file",
        10,
        "cannot read",
    );
}

#[test]
fn limits_layout_and_values() {
    let dir = Scratch::new("config-check-limits");
    assert_one_error(
        &dir,
        "snapshot_lifetime = 86400\nsnapshot_lifetime_max = 3600\n",
        "snapshot_lifetime_max",
        11,
        "shorter than snapshot_lifetime",
    );
    assert!(errors_of(
        &dir,
        "snapshot_lifetime = 86400\nsnapshot_lifetime_max = 0\n"
    )
    .1
    .is_empty());
    // A per-user limit above the total is redundant: a warning, not an error.
    let extra = "service_max_session_nb = 4\nservice_max_session_nb_per_user = 5\n";
    assert!(errors_of(&dir, extra).1.is_empty());
    let main = dir.path("config.toml");
    let report = check(&ConfigSource::new(Some(&main), &[]));
    let w: Vec<_> = report.warnings().collect();
    assert!(
        w.iter().any(
            |p| p.key.as_deref() == Some("service_max_session_nb_per_user")
                && p.message.contains("more than service_max_session_nb")
        ),
        "{w:#?}"
    );
    assert!(errors_of(
        &dir,
        "service_max_session_nb = 0\nservice_max_session_nb_per_user = 5\n"
    )
    .1
    .is_empty());
    // The per-user default (3) under a smaller total is no contradiction.
    assert!(errors_of(&dir, "service_max_session_nb = 2\n").1.is_empty());
    for key in ["layout_cpu", "layout_memory", "layout_lifetime"] {
        assert_one_error(&dir, &format!("{key} = []\n"), key, 10, "offer no choice");
    }
    assert_one_error(
        &dir,
        "layout_level = 3\n",
        "layout_level",
        10,
        "expected 0, 1 or 2",
    );
    assert_one_error(
        &dir,
        "layout_resize = \"stretch\"\n",
        "layout_resize",
        10,
        "remote or scale",
    );
    assert_one_error(
        &dir,
        "qemu_accel = \"kmv\"\n",
        "qemu_accel",
        10,
        "expected auto, kvm, tcg or hvf",
    );
    assert_one_error(
        &dir,
        "service_url = \"server/darts\"\n",
        "service_url",
        10,
        "http:// or https://",
    );
    assert_one_error(
        &dir,
        "service_trusted_proxies = [\"proxy.example.org\"]\n",
        "service_trusted_proxies",
        10,
        "not IP addresses",
    );
    // Networks, as deploy/README.md documents them, are what the gateway trusts too.
    assert!(errors_of(
        &dir,
        "service_trusted_proxies = [\"127.0.0.0/8\", \"::1\", \"10.0.0.0/8\", \"fd00::/8\"]\n"
    )
    .1
    .is_empty());
    assert_one_error(
        &dir,
        "service_trusted_proxies = [\"10.0.0.0/33\"]\n",
        "service_trusted_proxies",
        10,
        "not IP addresses or networks",
    );
}

#[test]
fn vnc_x509_and_directories() {
    let dir = Scratch::new("config-check-dirs");
    let x509 = dir.path("vnc-tls");
    assert_one_error(
        &dir,
        &format!(
            "qemu_vnc_security = \"x509\"\nqemu_vnc_x509_dir = \"{}\"\n",
            x509.display()
        ),
        "qemu_vnc_x509_dir",
        11,
        "does not exist",
    );
    let out = darts(&["certs", "init", x509.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(errors_of(
        &dir,
        &format!(
            "qemu_vnc_security = \"x509\"\nqemu_vnc_x509_dir = \"{}\"\n",
            x509.display()
        )
    )
    .1
    .is_empty());
    std::fs::remove_file(x509.join("client/client-key.pem")).unwrap();
    assert_one_error(
        &dir,
        &format!(
            "qemu_vnc_security = \"x509\"\nqemu_vnc_x509_dir = \"{}\"\n",
            x509.display()
        ),
        "qemu_vnc_x509_dir",
        11,
        "client/client-key.pem",
    );
    assert_one_error(
        &dir,
        "qemu_vnc_security = \"tls\"\n",
        "qemu_vnc_security",
        10,
        "expected password or x509",
    );
    // A directory that is a file (the root user this may run as reads everything, so an
    // unreadable directory cannot be made here; that error comes from the same check).
    write(&dir.path("a-file"), "");
    let (file, errors) = dropin_errors(
        &dir,
        &format!("dir_machines = \"{}\"\n", dir.path("a-file").display()),
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        (errors[0].key.as_deref(), &errors[0].origin),
        (Some("dir_machines"), &Some(at(&file, 1)))
    );
    assert!(
        errors[0].message.ends_with("is not a directory"),
        "{}",
        errors[0]
    );
    // Missing directories darts does not create are warnings, as are secrets others can read.
    let (main, _) = errors_of(&dir, "email_passwd = \"x\"\n");
    write(
        &dir.path("config.d/50-site.toml"),
        &format!("dir_html = \"{}/absent\"\n", dir.0.display()),
    );
    std::fs::set_permissions(&main, std::fs::Permissions::from_mode(0o644)).unwrap();
    let report = check(&ConfigSource::new(Some(&main), &[]));
    assert!(!report.has_errors(), "{:#?}", report.problems);
    let warnings: Vec<String> = report.warnings().map(ToString::to_string).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("50-site.toml:1: dir_html:") && w.contains("does not exist")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("config.toml:10: email_passwd:")
                && w.contains("every user can read")),
        "{warnings:#?}"
    );
    std::fs::set_permissions(&main, std::fs::Permissions::from_mode(0o640)).unwrap();
    let report = check(&ConfigSource::new(Some(&main), &[]));
    assert!(!report
        .warnings()
        .any(|w| w.key.as_deref() == Some("email_passwd")));
}

#[test]
fn the_command_reports_each_error_with_file_line_and_key_and_fails() {
    let dir = Scratch::new("config-check-cli");
    let main = dir.path("config.toml");
    write(
        &main,
        &format!(
            "{}snapshot_lifetime_max = 60\nlayout_cpu = []\n",
            sound(&dir)
        ),
    );
    write(
        &dir.path("config.d/50-typo.toml"),
        "\nuser_admins = [\"root\"]\n",
    );
    let out = darts(&[
        "config",
        "check",
        "-c",
        main.to_str().unwrap(),
        "--service_max_session_nb=2",
        "--service_max_session_nb_per_user=3",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let m = main.display();
    let expected = format!(
        "error: {}:2: user_admins: unknown key (did you mean user_admin?)",
        dir.path("config.d/50-typo.toml").display()
    );
    assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    // The unknown key stops the combination checks; fixed, the next run shows those.
    write(
        &dir.path("config.d/50-typo.toml"),
        "\nuser_admin = [\"root\"]\n",
    );
    let out = darts(&[
        "config",
        "check",
        "-c",
        main.to_str().unwrap(),
        "--service_max_session_nb=2",
        "--service_max_session_nb_per_user=3",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    for expected in [
        format!("error: {m}:10: snapshot_lifetime_max: 60 is shorter than snapshot_lifetime (default) = 345600"),
        format!("error: {m}:11: layout_cpu: empty"),
        "warning: command line: service_max_session_nb_per_user: 3 is more than service_max_session_nb (command line) = 2".to_owned(),
        "darts: configuration has 2 error(s) and 1 warning(s)".to_owned(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn keys_list_every_option_with_its_default() {
    let out = darts(&["config", "keys"]);
    assert!(out.status.success());
    let keys = text(&out.stdout);
    assert!(
        keys.contains("--service_max_session_nb=VALUE [10]\n"),
        "{keys}"
    );
    assert!(
        keys.contains("--snapshot_lifetime=VALUE [345600]\n"),
        "{keys}"
    );
    assert!(
        keys.contains("--service_port=VALUE [6080]\n      Port of the service"),
        "{keys}"
    );
    let help = text(&darts(&["serve", "--help"]).stdout);
    assert!(
        help.contains("darts config keys") && help.contains("--layout_cpu=VALUE [[2, 4, 8]]"),
        "{help}"
    );
    let top = text(&darts(&["--help"]).stdout);
    let top = top.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(top.contains("(options: darts config keys)"), "{top}");
}
