//! Files and directories: noVNC, the pages, the state directories, the catalogue, the logs.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::host::{describe, group_name, Identity};
use super::Check;
use crate::audit::LogOptions;
use crate::catalogue::Catalogue;
use crate::config::Config;

/// The noVNC client and darts' pages.
pub fn web(config: &Config, who: &Identity) -> Vec<Check> {
    let package = "install the darts package (it ships them under /usr/share/darts)";
    vec![
        files_present(
            "dir_novnc",
            &config.dir_novnc,
            &["vnc.html", "core/rfb.js"],
            who,
            &format!("{package}, or set dir_novnc to a noVNC 1.3 directory"),
        ),
        files_present(
            "dir_html",
            &config.dir_html,
            &["index.html", "connect.html", "manage.html"],
            who,
            &format!("{package}, or set dir_html to darts' web/app"),
        ),
    ]
}

fn files_present(key: &str, dir: &Path, names: &[&str], who: &Identity, hint: &str) -> Check {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !dir.join(n).is_file())
        .collect();
    if !missing.is_empty() {
        return Check::fail(
            key,
            format!("{} lacks {}", dir.display(), missing.join(", ")),
            hint,
        );
    }
    let unreadable = names
        .iter()
        .find(|n| std::fs::metadata(dir.join(n)).map_or(true, |m| !who.may(&m, 4)));
    match unreadable {
        Some(n) => Check::fail(
            key,
            format!("{} cannot read {}", who.name, dir.join(n).display()),
            format!("chmod -R a+rX {}", dir.display()),
        ),
        None => Check::ok(key, dir.display().to_string()),
    }
}

/// The state directories: present, and writable (readable for the images) by the service.
pub fn directories(config: &Config, who: &Identity, root: &Path) -> Vec<Check> {
    let mut out = vec![
        directory("dir_service", &config.dir_service, who, 7, root),
        directory("dir_cfg", &config.dir_cfg, who, 7, root),
        directory("dir_snapshots", &config.dir_snapshots, who, 7, root),
        directory("dir_machines", &config.dir_machines, who, 5, root),
    ];
    // Records hold the VNC passwords between darts and QEMU.
    if let Ok(meta) = std::fs::metadata(&config.dir_cfg) {
        if meta.is_dir() && meta.mode() & 0o077 != 0 {
            out.push(Check::warn(
                "dir_cfg",
                format!(
                    "{} is open to others ({}); session records hold VNC passwords",
                    config.dir_cfg.display(),
                    describe(&meta, root)
                ),
                format!("chmod 0700 {}", config.dir_cfg.display()),
            ));
        }
    }
    out
}

/// `want`: 7 read, write and enter; 5 read and enter.
fn directory(key: &str, dir: &Path, who: &Identity, want: u32, root: &Path) -> Check {
    // Session records hold VNC passwords: dir_cfg is the service's alone.
    let mode = if key == "dir_cfg" { "0700" } else { "0750" };
    let create = format!(
        "install -d -o {u} -g {g} -m {mode} {}",
        dir.display(),
        u = who.name,
        g = group_name(who.gid, root)
    );
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(_) => {
            return Check::fail(key, format!("{} does not exist", dir.display()), create);
        }
    };
    if !meta.is_dir() {
        return Check::fail(
            key,
            format!("{} is not a directory", dir.display()),
            format!("move it away, then {create}"),
        );
    }
    // Every parent must be enterable too.
    if let Some(blocked) = dir
        .ancestors()
        .skip(1)
        .find(|p| std::fs::metadata(p).is_ok_and(|m| !who.may(&m, 1)))
    {
        return Check::fail(
            key,
            format!("{} cannot enter {}", who.name, blocked.display()),
            format!("chmod o+x {} (or choose another {key})", blocked.display()),
        );
    }
    if who.may(&meta, want) {
        Check::ok(
            key,
            format!("{} ({})", dir.display(), describe(&meta, root)),
        )
    } else {
        let what = if want & 2 != 0 { "write" } else { "read" };
        Check::fail(
            key,
            format!(
                "{} cannot {what} {} ({})",
                who.name,
                dir.display(),
                describe(&meta, root)
            ),
            format!(
                "chown -R {}:{} {}",
                who.name,
                group_name(who.gid, root),
                dir.display()
            ),
        )
    }
}

/// The machine catalogue: files that parse, machines with an image.
pub fn catalogue(config: &Config) -> Vec<Check> {
    let cat = Catalogue::load(config);
    let mut out: Vec<Check> = cat
        .problems()
        .iter()
        .take(5)
        .map(|p| {
            Check::warn(
                "catalogue",
                p.to_string(),
                "edit the file, or use darts machines enable/disable",
            )
        })
        .collect();
    let (ready, missing): (Vec<_>, Vec<_>) = cat.machines().iter().partition(|m| m.available);
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|m| m.name.as_str()).collect();
        out.push(Check::warn(
            "catalogue",
            format!(
                "{} machine(s) without an image in {}: {}",
                names.len(),
                config.dir_machines.display(),
                names.join(", ")
            ),
            "darts machines download",
        ));
    }
    out.push(if ready.is_empty() {
        Check::warn(
            "catalogue",
            format!(
                "no machine is available (catalogue {}/machines.conf)",
                cat.dir_etc().display()
            ),
            "darts machines enable /path/to/image.qcow2 (or a URL), see darts machines --help",
        )
    } else {
        let names: Vec<&str> = ready.iter().map(|m| m.name.as_str()).collect();
        Check::ok(
            "catalogue",
            format!("{} machine(s): {}", names.len(), names.join(", ")),
        )
    });
    out
}

/// The audit log and the original's text log: their directories exist and take writes.
pub fn logs(config: &Config, who: &Identity, root: &Path) -> Vec<Check> {
    // Where the service would write, judged for its account; nothing is created here.
    let json = crate::audit::resolve_json_path_with(
        config,
        &root.join(crate::audit::DEFAULT_DIR.trim_start_matches('/')),
        |f| match std::fs::metadata(f) {
            Ok(m) => who.may(&m, 2),
            Err(_) => f
                .parent()
                .and_then(|d| std::fs::metadata(d).ok())
                .is_some_and(|m| who.may(&m, 3)),
        },
    );
    let opts = LogOptions::with_json(config, json);
    let mut out = Vec::new();
    match &opts.json {
        None => out.push(Check::warn(
            "service_logfile",
            "the audit log is off (service_logfile = \"none\")",
            "set service_logfile = \"\" for /var/log/darts/audit.log",
        )),
        Some(path) => out.push(log_file("service_logfile", path, who, root)),
    }
    if let Some(path) = &opts.text {
        out.push(log_file("service_logfile_text", path, who, root));
    }
    out
}

fn log_file(key: &str, path: &Path, who: &Identity, root: &Path) -> Check {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let fix = format!(
        "install -d -o {u} -g {g} -m 0750 {}",
        dir.display(),
        u = who.name,
        g = group_name(who.gid, root)
    );
    if let Ok(meta) = std::fs::metadata(path) {
        return if who.may(&meta, 2) {
            Check::ok(
                key,
                format!("{} ({})", path.display(), describe(&meta, root)),
            )
        } else {
            Check::fail(
                key,
                format!(
                    "{} cannot write {} ({})",
                    who.name,
                    path.display(),
                    describe(&meta, root)
                ),
                format!(
                    "chown {}:{} {}",
                    who.name,
                    group_name(who.gid, root),
                    path.display()
                ),
            )
        };
    }
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() && who.may(&meta, 3) => {
            Check::ok(key, format!("{} (created at start)", path.display()))
        }
        Ok(meta) => Check::fail(
            key,
            format!(
                "{} cannot create {} ({} is {})",
                who.name,
                path.display(),
                dir.display(),
                describe(&meta, root)
            ),
            fix,
        ),
        Err(_) => Check::fail(key, format!("{} does not exist", dir.display()), fix),
    }
}
