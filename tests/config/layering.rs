//! Layering: `config.toml`, `config.d/*.toml` and the command line, key by key, with the
//! origin of every value.

use darts::config::{Config, ConfigSource, Loaded, Origin};

use crate::helpers::{at, darts, text, write};
use crate::support::Scratch;

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
