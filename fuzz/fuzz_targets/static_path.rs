//! `StaticFiles::resolve` on arbitrary request paths: nothing outside the web root is
//! ever served.
//!
//! A small tree is laid out once in the temporary directory: a web root with noVNC-like
//! files, a symlink inside it that points outside, and a secret next to the root. Every
//! `File` answer must be an existing regular file whose canonical path lies under the
//! root, never the secret; `..` segments are always refused.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use darts_proxy::static_files::{Resolved, StaticFiles};
use darts_proxy::url;
use libfuzzer_sys::fuzz_target;

struct Tree {
    files: StaticFiles,
    secret: PathBuf,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        // Shared by parallel jobs: laying it out again is harmless.
        let base = std::env::temp_dir().join("darts-fuzz-static");
        let web = base.join("web");
        let outside = base.join("outside");
        for dir in [web.join("app/sub"), outside.clone()] {
            std::fs::create_dir_all(dir).expect("create test tree");
        }
        for (path, body) in [
            (web.join("vnc.html"), "vnc"),
            (web.join("app/ui.js"), "ui"),
            (web.join("app/sub/index.html"), "index"),
            (outside.join("secret.txt"), "secret"),
        ] {
            std::fs::write(path, body).expect("write test file");
        }
        // An escape hatch and an inner alias; both may exist from an earlier run.
        let _ = std::os::unix::fs::symlink(&outside, web.join("escape"));
        let _ = std::os::unix::fs::symlink("../vnc.html", web.join("app/alias.html"));
        let files = StaticFiles::new(&web).expect("web root");
        let secret = outside
            .join("secret.txt")
            .canonicalize()
            .expect("secret path");
        // The harness is only meaningful if the tree serves what it should.
        assert!(matches!(
            files.resolve("/app/alias.html"),
            Resolved::File(_)
        ));
        assert!(matches!(files.resolve("/app/sub/"), Resolved::File(_)));
        assert_eq!(files.resolve("/"), Resolved::RedirectTo("vnc.html"));
        assert_eq!(files.resolve("/escape/secret.txt"), Resolved::NotFound);
        Tree { files, secret }
    })
}

fn has_dotdot(rel: &str) -> bool {
    let decoded = url::percent_decode(rel, false);
    decoded.split(|&b| b == b'/').any(|s| s == b"..")
}

fn check(t: &Tree, rel: &str) {
    match t.files.resolve(rel) {
        Resolved::File(p) => {
            let real = p.canonicalize().expect("served file exists");
            assert!(
                real.starts_with(t.files.root()),
                "{rel:?} escapes to {real:?}"
            );
            assert!(real.is_file(), "{rel:?} is not a regular file");
            assert_ne!(real, t.secret, "{rel:?} serves the secret");
            assert!(!has_dotdot(rel), "{rel:?} with '..' was served");
        }
        Resolved::RedirectTo(to) => assert_eq!(to, "vnc.html"),
        Resolved::NotFound => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let t = tree();
    let text = String::from_utf8_lossy(data);
    check(t, &text);
    check(t, &format!("/{text}"));
});
