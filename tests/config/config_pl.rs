//! `darts config import` of the original's `config.pl` (a sample with each kind of line in
//! tests/fixtures/qemu-web-desktop).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use darts::config::import;
use darts::config::Config;

use crate::helpers::{at, darts, text};
use crate::qemu::repo_path;
use crate::support::Scratch;

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
