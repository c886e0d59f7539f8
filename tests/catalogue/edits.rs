//! Enabling, disabling and purging machines on the catalogue files.

use std::fs;

use darts::catalogue::store::{self, DisableOutcome, EnableOutcome, EnableRequest, EnableTarget};
use darts::catalogue::{purge, Catalogue, Source};

use crate::support::Scratch;
use crate::MAIN_CONF;

#[test]
fn enable_and_disable_round_trip_on_the_files() {
    let dir = Scratch::new("cat-edit");
    let etc = dir.path("etc");
    let machines = dir.path("machines");
    fs::create_dir_all(etc.join("config.d")).unwrap();
    fs::create_dir_all(&machines).unwrap();
    let main = etc.join("machines.conf");
    fs::write(&main, MAIN_CONF).unwrap();
    let extra = etc.join("config.d/10-extra.ini");
    let extra_text = "# more\n[slax.iso]\ndescription=Slax again\n";
    fs::write(&extra, extra_text).unwrap();

    // Disable comments the block out in every file holding it; comments stay.
    let out = store::disable(&etc, &machines, "slax.iso").unwrap();
    assert_eq!(
        out,
        DisableOutcome::Disabled(vec![main.clone(), extra.clone()])
    );
    let disabled = fs::read_to_string(&main).unwrap();
    assert!(disabled.contains(
        ";[slax.iso]\n;; Slax, a small live system\n;url=https://example.org/slax.iso   ; official mirror\n"
    ), "{disabled}");
    assert!(disabled.starts_with(
        "; Machines offered on the landing page.\n; One section per machine.\n\n;[slax.iso]"
    ));
    assert_eq!(
        fs::read_to_string(&extra).unwrap(),
        "# more\n;[slax.iso]\n;description=Slax again\n"
    );
    let cat = Catalogue::load_from(&etc, &machines);
    assert!(cat.get("slax.iso").is_none());
    assert!(cat.disabled().iter().any(|d| d.name == "slax.iso"));
    assert_eq!(
        store::disable(&etc, &machines, "slax.iso").unwrap(),
        DisableOutcome::AlreadyDisabled
    );
    assert!(store::disable(&etc, &machines, "nothing.iso").is_err());

    // Enabling by name uncomments the first block: machines.conf is back as it was.
    let (name, out) = store::enable(
        &etc,
        &machines,
        &EnableRequest {
            target: EnableTarget::Name("slax.iso".into()),
            description: None,
            link: false,
        },
    )
    .unwrap();
    assert_eq!(name, "slax.iso");
    assert_eq!(out, EnableOutcome::Uncommented(main.clone()));
    assert_eq!(fs::read_to_string(&main).unwrap(), MAIN_CONF);

    // A shipped example block, enabled with a new description.
    let (_, out) = store::enable(
        &etc,
        &machines,
        &EnableRequest {
            target: EnableTarget::Name("tinycore.iso".into()),
            description: Some("Tiny Core 15".into()),
            link: false,
        },
    )
    .unwrap();
    assert_eq!(out, EnableOutcome::Uncommented(main.clone()));
    let cat = Catalogue::load_from(&etc, &machines);
    let tiny = cat.get("tinycore.iso").unwrap();
    assert_eq!(tiny.description, "Tiny Core 15");
    assert_eq!(
        tiny.source,
        Source::Url("http://tinycorelinux.net/Core.iso".into())
    );
    assert!(cat.problems().is_empty(), "{:?}", cat.problems());

    // A URL creates config.d/<name>.ini.
    let (name, out) = store::enable(
        &etc,
        &machines,
        &EnableRequest {
            target: EnableTarget::Url("https://example.org/dl/alpine.iso?mirror=1".into()),
            description: Some("Alpine".into()),
            link: false,
        },
    )
    .unwrap();
    assert_eq!(name, "alpine.iso");
    let created = etc.join("config.d/alpine.iso.ini");
    assert_eq!(out, EnableOutcome::Created(created.clone()));
    assert_eq!(
        fs::read_to_string(&created).unwrap(),
        "[alpine.iso]\nurl=https://example.org/dl/alpine.iso?mirror=1\ndescription=Alpine\n"
    );

    // A local file is copied in; with --link it is symlinked.
    let src = dir.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("local.qcow2"), "disk").unwrap();
    fs::write(src.join("linked.raw"), "raw").unwrap();
    store::enable(
        &etc,
        &machines,
        &EnableRequest {
            target: EnableTarget::File(src.join("local.qcow2")),
            description: None,
            link: false,
        },
    )
    .unwrap();
    let copied = machines.join("local.qcow2");
    assert!(!copied.is_symlink());
    assert_eq!(fs::read_to_string(&copied).unwrap(), "disk");
    store::enable(
        &etc,
        &machines,
        &EnableRequest {
            target: EnableTarget::File(src.join("linked.raw")),
            description: None,
            link: true,
        },
    )
    .unwrap();
    assert_eq!(
        fs::read_link(machines.join("linked.raw")).unwrap(),
        src.join("linked.raw")
    );
    let cat = Catalogue::load_from(&etc, &machines);
    assert!(cat.get("local.qcow2").unwrap().available);
    let linked = cat.get("linked.raw").unwrap();
    assert!(linked.available);
    assert_eq!(linked.source, Source::Path(src.join("linked.raw")));

    // Refusals: unsafe or unknown names, and no change to the files.
    let before = fs::read_to_string(&main).unwrap();
    for bad in ["../x.iso", "x.exe", ".hidden.iso"] {
        assert!(
            store::enable(
                &etc,
                &machines,
                &EnableRequest {
                    target: EnableTarget::Name(bad.into()),
                    description: None,
                    link: false,
                },
            )
            .is_err(),
            "{bad}"
        );
    }
    assert_eq!(fs::read_to_string(&main).unwrap(), before);
}

#[test]
fn purge_deletes_orphans_but_keeps_enabled_and_in_use_images() {
    let dir = Scratch::new("cat-purge");
    let etc = dir.path("etc");
    let machines = dir.path("machines");
    fs::create_dir_all(&etc).unwrap();
    fs::create_dir_all(machines.join("downloads/old.iso")).unwrap();
    fs::create_dir_all(machines.join("downloads/kept.iso")).unwrap();
    fs::write(etc.join("machines.conf"), "[kept.iso]\n;[gone.qcow2]\n").unwrap();
    fs::write(machines.join("downloads/old.iso/old.iso"), "old").unwrap();
    fs::write(machines.join("downloads/kept.iso/kept.iso"), "kept").unwrap();
    std::os::unix::fs::symlink("downloads/kept.iso/kept.iso", machines.join("kept.iso")).unwrap();
    std::os::unix::fs::symlink("downloads/old.iso/old.iso", machines.join("old.iso")).unwrap();
    fs::write(machines.join("gone.qcow2"), "gone").unwrap();
    fs::write(machines.join("running.qcow2"), "running").unwrap();
    let outside = dir.path("outside.img");
    fs::write(&outside, "not ours").unwrap();
    std::os::unix::fs::symlink(&outside, machines.join("outside.img")).unwrap();

    let cat = Catalogue::load_from(&etc, &machines);
    let mut asked = Vec::new();
    let report = purge::purge(&cat, &[machines.join("running.qcow2")], None, &mut |p| {
        asked.push(p.to_owned());
        !p.ends_with("gone.qcow2")
    })
    .unwrap();
    assert_eq!(report.in_use, vec![machines.join("running.qcow2")]);
    assert_eq!(report.declined, vec![machines.join("gone.qcow2")]);
    assert_eq!(
        report.deleted,
        vec![
            machines.join("downloads/old.iso"),
            machines.join("old.iso"),
            machines.join("outside.img"),
        ]
    );
    assert_eq!(asked.len(), 4);
    assert!(machines.join("kept.iso").is_file());
    assert!(machines.join("running.qcow2").exists());
    assert!(outside.exists(), "a link is removed, never followed");
    assert!(!machines.join("downloads/old.iso").exists());
}
