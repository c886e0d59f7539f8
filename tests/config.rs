//! The operators' configuration: layering (`config.toml`, `config.d/*.toml`, command line)
//! with the origin of every value, `darts config check` on every kind of mistake,
//! `darts config show`, the import of the original's `config.pl` (a sample with each kind
//! of line in tests/fixtures/qemu-web-desktop), and live reload of a real `darts serve`
//! with a running session (QEMU under TCG) whose websocket stays open across reloads.
//!
//! The reload test needs qemu-system-x86_64 and the demo machine (`bash tests/setup.sh`).

#[path = "support/qemu.rs"]
mod qemu;
#[path = "support/service.rs"]
mod service;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use darts::config::check::{check, Problem};
use darts::config::import;
use darts::config::{Config, ConfigSource, Loaded, Origin};
use qemu::{repo_path, RfbOverWs};
use service::Service;
use support::{darts_bin, wss_connect, Scratch};

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Replaces a file the way editors and deployment tools do: write aside, then rename.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn darts(args: &[&str]) -> Output {
    Command::new(darts_bin()).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn at(path: &Path, line: usize) -> Origin {
    Origin::File {
        path: path.to_owned(),
        line,
    }
}

// ---------------------------------------------------------------------------------------
// Layering

#[test]
fn later_layers_win_key_by_key_and_every_value_knows_its_origin() {
    let dir = Scratch::new("config-layers");
    let main = dir.path("config.toml");
    write(
        &main,
        "machine = \"main.qcow2\"\nservice_max_session_nb = 4\nlayout_title = \"Main\"\n",
    );
    let d10 = dir.path("config.d/10-site.toml");
    let d20 = dir.path("config.d/20-local.toml");
    write(
        &d10,
        "# site\nservice_max_session_nb = 6\nlayout_cpu = [1, 2]\n",
    );
    write(&d20, "\nlayout_cpu = [4]\nsnapshot_alloc_mem = 2\n");
    // Not TOML drop-ins: ignored.
    write(&dir.path("config.d/machines.ini"), "[x.qcow2]\n");
    write(&dir.path("config.d/.30-editor.toml.swp"), "garbage = = =");
    let overrides = vec![
        ("snapshot_alloc_mem".to_owned(), "8".to_owned()),
        ("oneshot".to_owned(), "1".to_owned()),
    ];
    let loaded = Loaded::load(&ConfigSource::new(Some(&main), &overrides)).unwrap();
    let c = &loaded.config;
    assert_eq!(c.machine, "main.qcow2");
    assert_eq!(c.service_max_session_nb, 6, "config.d/10 over config.toml");
    assert_eq!(c.layout_cpu, vec![4], "config.d/20 over config.d/10");
    assert_eq!(c.snapshot_alloc_mem, 8.0, "the command line over both");
    assert!(c.oneshot);
    assert_eq!(c.layout_title, "Main");
    assert_eq!(loaded.files, vec![main.clone(), d10.clone(), d20.clone()]);
    assert_eq!(loaded.origin("machine"), at(&main, 1));
    assert_eq!(loaded.origin("service_max_session_nb"), at(&d10, 2));
    assert_eq!(loaded.origin("layout_cpu"), at(&d20, 2));
    assert_eq!(loaded.origin("snapshot_alloc_mem"), Origin::CommandLine);
    assert_eq!(loaded.origin("boot_delay"), Origin::Default);
    assert_eq!(
        loaded.origin("layout_cpu").to_string(),
        format!("{}:2", d20.display())
    );

    // The existing entry point reads config.d as well.
    let c = Config::from_layers(Some(&main), &[]).unwrap();
    assert_eq!((c.service_max_session_nb, c.layout_cpu), (6, vec![4]));

    // `darts config show`: values with origins, the mail password hidden.
    write(&d20, "layout_cpu = [4]\nemail_passwd = \"hunter2\"\n");
    let out = darts(&[
        "config",
        "show",
        "-c",
        main.to_str().unwrap(),
        "--snapshot_alloc_cpu=3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let line = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} missing from:\n{shown}"))
            .to_owned()
    };
    assert!(line("service_max_session_nb").ends_with(&format!("# {}:2", d10.display())));
    assert!(
        line("snapshot_alloc_cpu").contains("= 3")
            && line("snapshot_alloc_cpu").ends_with("# command line")
    );
    assert!(line("boot_delay").ends_with("# default"));
    assert!(
        line("email_passwd").contains("\"********\""),
        "{}",
        line("email_passwd")
    );
    assert!(!shown.contains("hunter2"));
    // And the output is TOML darts reads back.
    let again = dir.path("shown.toml");
    write(&again, &shown.replace("\"********\"", "\"\""));
    let c = Config::from_layers(Some(&again), &[]).unwrap();
    assert_eq!(c.snapshot_alloc_cpu, 3);
}

#[test]
fn load_errors_name_every_file_line_and_key() {
    let dir = Scratch::new("config-load-errors");
    let main = dir.path("config.toml");
    write(&main, "oneshot = true\nsnapshot_lifetim = 5\n");
    write(&dir.path("config.d/10.toml"), "layout_cpu = \"many\"\n");
    let e = Config::from_layers(Some(&main), &[("nope".into(), "1".into())])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "{}:2: snapshot_lifetim: unknown key (did you mean snapshot_lifetime?)",
            main.display()
        )),
        "{e}"
    );
    assert!(
        e.contains("config.d/10.toml:1: layout_cpu: wrong type: expected a list, got \"many\""),
        "{e}"
    );
    assert!(e.contains("command line: nope: unknown key"), "{e}");
}

// ---------------------------------------------------------------------------------------
// `darts config check`

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

// ---------------------------------------------------------------------------------------
// `darts config import`

fn fixture() -> PathBuf {
    repo_path("tests/fixtures/qemu-web-desktop/config.pl")
}

#[test]
fn import_converts_the_literal_subset_and_explains_the_rest() {
    let main = fixture();
    let dropins = main.parent().unwrap().join("config.d");
    let result = import::import(&main).unwrap();
    assert_eq!(
        result.files,
        vec![
            main.clone(),
            dropins.join("10-limits.pl"),
            dropins.join("20-scripts.pl")
        ]
    );
    let get = |key: &str| {
        result
            .converted
            .iter()
            .find(|c| c.key == key)
            .unwrap_or_else(|| panic!("{key} not converted"))
    };
    let v = |key: &str| get(key).value.clone();
    use toml::Value as T;
    let s = |x: &str| T::String(x.into());
    // Numbers, arithmetic, strings, lists (`[…]`, `qw`), booleans from 1/0 and "1".
    assert_eq!(v("service_port"), T::Integer(6080));
    assert_eq!(v("service_max_load"), T::Float(0.8));
    assert_eq!(v("dir_service"), s("/var/lib/qemu-web-desktop"));
    assert_eq!(v("dir_html"), s("/usr/share/qemu-web-desktop/html"));
    assert_eq!(v("dir_mounts"), T::Array(vec![s("/mnt"), s("/media")]));
    assert_eq!(
        v("layout_cpu"),
        T::Array(vec![
            T::Integer(2),
            T::Integer(4),
            T::Integer(8),
            T::Integer(16)
        ])
    );
    assert_eq!(
        v("layout_memory"),
        T::Array(vec![T::Float(4.0), T::Float(8.0), T::Float(16.0)])
    );
    assert_eq!(v("layout_title"), s("DARTS at Example"));
    assert_eq!(v("check_user_with_imap"), T::Boolean(true));
    assert_eq!(v("snapshot_use_master"), T::Boolean(false));
    assert_eq!(v("layout_gpu"), T::Boolean(true));
    assert_eq!(v("user_admin"), T::Array(vec![s("root"), s("admin")]));
    assert_eq!(v("gpu_blacklist"), T::Array(vec![]));
    assert_eq!(v("service_max_session_nb_per_user"), T::Integer(2));
    // config.d/*.pl in name order, later files winning; old names renamed.
    assert_eq!(v("snapshot_lifetime"), T::Integer(2 * 86400));
    assert_eq!(
        get("snapshot_lifetime").origin,
        at(&dropins.join("20-scripts.pl"), 3)
    );
    assert_eq!(v("service_max_session_nb"), T::Integer(12));
    assert_eq!(
        get("service_max_session_nb").was.as_deref(),
        Some("service_max_instance_nb")
    );
    assert_eq!(
        v("service_logfile_text"),
        s("/var/log/qemu-web-desktop.log")
    );
    // push @{$config{config_script}}, … appends.
    assert_eq!(
        v("config_script"),
        T::Array(vec![
            s("if(\"@VM@\" =~ /debian/i): exec: touch /root/debian; echo done"),
            s("exec: echo \"@USER@\" > /etc/motd"),
        ])
    );

    // What could not be converted, each with its line and what to do instead.
    let skipped = |line: usize| {
        result
            .skipped
            .iter()
            .find(|s| s.origin == at(&main, line))
            .unwrap_or_else(|| panic!("nothing skipped at line {line}: {:#?}", result.skipped))
    };
    assert!(
        skipped(12)
            .advice
            .contains("Perl replaces $config{dir_service}"),
        "{:?}",
        skipped(12)
    );
    assert!(
        skipped(14).advice.contains("File::Spec->tmpdir()"),
        "{:?}",
        skipped(14)
    );
    assert!(skipped(16)
        .advice
        .contains("dir_websockify is not used by darts"));
    assert!(skipped(23)
        .advice
        .contains("service_port_multiple is not used by darts"));
    assert!(
        skipped(43).advice.contains("a Perl hash"),
        "{:?}",
        skipped(43)
    );
    assert!(
        skipped(65).what.starts_with("sub check_user_func"),
        "{:?}",
        skipped(65)
    );
    let custom = skipped(87);
    assert!(custom.what.contains("\\&check_user_func"));
    assert!(
        custom
            .advice
            .contains("set check_user_custom = \"/path/to/program\"")
            && custom.advice.contains("JSON on stdin"),
        "{custom:?}"
    );
    assert!(skipped(101).advice.contains("Perl replaces $host"));
    assert_eq!(result.skipped.len(), 11, "{:#?}", result.skipped);
    assert!(!result
        .converted
        .iter()
        .any(|c| c.key == "check_user_custom" || c.key == "gpu_model"));
}

#[test]
fn the_imported_file_is_a_configuration_darts_reads() {
    let dir = Scratch::new("config-import");
    let out_file = dir.path("config.toml");
    let out = darts(&[
        "config",
        "import",
        fixture().to_str().unwrap(),
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("not converted (11):"), "{err}");
    assert!(
        err.contains("config.pl:87: $config{check_user_custom} = \\&check_user_func"),
        "{err}"
    );
    // It may hold email_passwd.
    let mode = std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = std::fs::read_to_string(&out_file).unwrap();
    assert!(written.contains("# Not converted (11):"), "{written}");
    let c = Config::from_layers(Some(&out_file), &[]).unwrap();
    assert_eq!(c.service_max_session_nb, 12);
    assert_eq!(c.service_port_vnc, 5901);
    assert_eq!(c.snapshot_lifetime, 172800);
    assert_eq!(c.layout_memory, vec![4.0, 8.0, 16.0]);
    assert_eq!(c.imap_server, "imap.example.org");
    assert_eq!(c.email_passwd, "mail-secret");
    assert_eq!(c.config_script.len(), 2);
    // An existing file is kept unless --force.
    let again = darts(&[
        "config",
        "import",
        fixture().to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    let forced = darts(&[
        "config",
        "import",
        fixture().to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        "--force",
    ]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
}

// ---------------------------------------------------------------------------------------
// Live reload of a running `darts serve`

/// A CA and server certificates for 127.0.0.1 signed by it, with chosen serial numbers.
struct WebCa {
    ca_pem: String,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl WebCa {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "darts reload test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        Self {
            ca_pem: ca.pem(),
            ca,
            ca_key,
        }
    }

    /// (certificate PEM, key PEM) with this serial number.
    fn leaf(&self, serial: u64) -> (String, String) {
        use rcgen::{CertificateParams, KeyPair, SerialNumber};
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The serial number of the certificate a new TLS connection to `addr` is shown.
async fn served_serial(addr: std::net::SocketAddr, ca_pem: &str) -> u64 {
    let connector = tokio_rustls::TlsConnector::from(support::client_tls(ca_pem));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    cert.raw_serial()
        .iter()
        .fold(0u64, |n, b| n << 8 | u64::from(*b))
}

/// Waits until darts' log holds more than `before` occurrences of `needle`; returns the
/// log from the first new occurrence on.
fn wait_log(svc: &Service, needle: &str, before: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = svc.log();
        if log.matches(needle).count() > before {
            let at = log.match_indices(needle).nth(before).map_or(0, |(i, _)| i);
            let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
            return log[start..].to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no new {needle:?} in darts' log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(svc: &Service, needle: &str) -> usize {
    svc.log().matches(needle).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_applies_limits_and_certificate_keeps_the_session_and_refuses_a_broken_file() {
    let ca = WebCa::new();
    let certs = Scratch::new("config-reload-certs");
    let (crt, key) = (certs.path("web.crt"), certs.path("web.key"));
    let (crt1, key1) = ca.leaf(1001);
    write(&crt, &crt1);
    write(&key, &key1);
    let settings = |max: &str| {
        format!(
            "certificate_crt = \"{}\"\ncertificate_key = \"{}\"\nservice_max_session_nb = {max}\n",
            crt.display(),
            key.display()
        )
    };
    let mut svc = Service::configure("config-reload", &settings("2"));
    let base = std::fs::read_to_string(&svc.config).unwrap();
    let base = base.replace(&settings("2"), "");
    let config = svc.config.clone();
    let rewrite = |extra: &str| replace(&config, &format!("{base}{extra}"));
    // The same service for `darts start` while the watched file is broken (the command
    // reads its configuration to find the control socket).
    let good = certs.path("good.toml");
    write(&good, &format!("{base}{}", settings("1")));
    let start_with_good = || {
        Command::new(darts_bin())
            .args(["start", "demo.img", "-c"])
            .arg(&good)
            .output()
            .unwrap()
    };
    // Line of `service_max_session_nb` in the file: the harness's lines, then ours.
    let limit_line = base.lines().count() + 3;
    svc.launch();
    assert_eq!(served_serial(svc.addr, &ca.ca_pem).await, 1001);

    // A session, its screen through a TLS websocket.
    let s = svc.start_session(&[]);
    let ws = wss_connect(
        &format!("wss://{}/darts/vnc.html?token={}", svc.addr, s.token),
        &ca.ca_pem,
    )
    .await
    .unwrap_or_else(|e| panic!("wss refused: {e}; log:\n{}", svc.log()));
    let mut rfb = RfbOverWs::new(ws, Duration::from_secs(30));
    rfb.handshake().await;
    rfb.set_raw_rgb32().await;
    rfb.full_frame(20).await;

    // 1. Limits and certificate change together: the certificate files are replaced in
    //    place, then the configuration lowers the session limit from 2 to 1.
    let reloaded = count(&svc, "configuration reloaded");
    let (crt2, key2) = ca.leaf(2002);
    replace(&key, &key2);
    replace(&crt, &crt2);
    rewrite(&settings("1"));
    let line = wait_log(&svc, "configuration reloaded", reloaded);
    assert!(line.contains("service_max_session_nb"), "{line}");
    assert_eq!(
        served_serial(svc.addr, &ca.ca_pem).await,
        2002,
        "a new TLS connection sees the new certificate"
    );
    // With the old limit of 2 a second session would start; with 1 it is refused.
    let refused = svc.cli(&["start", "demo.img"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("Too many active sessions 1. Max 1."),
        "{}\nlog:\n{}",
        text(&refused.stderr),
        svc.log()
    );
    // The session and its websocket (opened under the old certificate) carry on.
    assert_eq!(
        rfb.full_frame(20).await.area,
        u64::from(rfb.width) * u64::from(rfb.height)
    );
    assert_eq!(svc.sessions().len(), 1);

    // 2. A broken edit is refused with file, line and key; the running configuration stays.
    let refused_before = count(&svc, "configuration refused");
    rewrite(&settings("\"three\""));
    let line = wait_log(&svc, "configuration refused", refused_before);
    let expected = format!(
        "{}:{limit_line}: service_max_session_nb: wrong type",
        config.display()
    );
    assert!(line.contains(&expected), "expected {expected:?} in {line}");
    let still = start_with_good();
    assert!(
        text(&still.stderr).contains("Max 1."),
        "{}",
        text(&still.stderr)
    );
    assert_eq!(served_serial(svc.addr, &ca.ca_pem).await, 2002);
    rfb.full_frame(20).await;
    let (status, _, _) = support::http_get(svc.addr, "/darts/api/config", "").await;
    assert_eq!(status, 200, "the service keeps serving");

    // 3. SIGHUP reloads too; a key read only at start is reported, and the old value kept.
    let restart_before = count(&svc, "needs a restart");
    rewrite(&format!(
        "{}service_reverse_proxy = \"/elsewhere\"\n",
        settings("1")
    ));
    svc.darts.as_ref().unwrap().signal("HUP");
    let line = wait_log(&svc, "needs a restart", restart_before);
    assert!(line.contains("keys=service_reverse_proxy"), "{line}");
    let (status, _, _) = support::http_get(svc.addr, "/darts/api/config", "").await;
    assert_eq!(status, 200, "still served under the prefix it started with");
    assert_eq!(served_serial(svc.addr, &ca.ca_pem).await, 2002);
    rfb.full_frame(20).await;
    assert_eq!(svc.sessions().len(), 1);
}
