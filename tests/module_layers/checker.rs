//! The checker itself, on small crates held in memory.

use super::*;

/// The cycles report for a crate made of `(path under src/, source)` files.
fn check(files: &[(&str, &str)]) -> Option<String> {
    let files: HashMap<PathBuf, String> = files
        .iter()
        .map(|(path, text)| (Path::new("src").join(path), (*text).to_owned()))
        .collect();
    let read = |path: &Path| files.get(path).cloned();
    Graph::build(Path::new("src/lib.rs"), &read).report("demo")
}

/// Checks that the crate has cycles and that the report has each of `expected`.
fn assert_cycle(files: &[(&str, &str)], expected: &[&str]) -> String {
    let report = check(files).unwrap_or_else(|| panic!("no cycle found in {files:?}"));
    for line in expected {
        assert!(report.contains(line), "{line:?} not in:\n{report}");
    }
    report
}

#[test]
fn a_cycle_through_sibling_files_is_found() {
    assert_cycle(
        &[
            ("lib.rs", "mod gateway; mod http_service;"),
            (
                "gateway.rs",
                "use crate::http_service;\nfn f() { http_service::serve() }",
            ),
            (
                "http_service.rs",
                "pub fn serve() { let _ = crate::gateway::Shared::new(); }",
            ),
        ],
        &[
            "cycle 1: gateway, http_service\n",
            "gateway -> http_service (use crate::http_service, src/gateway.rs:1)",
            "http_service -> gateway (path crate::gateway::Shared::new, src/http_service.rs:1)",
        ],
    );
}

#[test]
fn a_longer_cycle_is_found_with_all_its_edges() {
    assert_cycle(
        &[
            ("lib.rs", "mod a; mod b; mod c; mod d;"),
            ("a.rs", "use crate::b::X;"),
            ("b.rs", "use crate::c::Y;\nuse crate::d::Z;"),
            ("c.rs", "use super::a;"),
            ("d.rs", ""),
        ],
        &[
            "cycle 1: a, b, c\n",
            "a -> b (use crate::b::X, src/a.rs:1)",
            "b -> c (use crate::c::Y, src/b.rs:1)",
            "c -> a (use super::a, src/c.rs:1)",
        ],
    );
    let report = check(&[
        ("lib.rs", "mod a; mod b;"),
        ("a.rs", "use crate::b::X;"),
        ("b.rs", "pub struct X;"),
    ]);
    assert_eq!(report, None);
}

#[test]
fn a_parent_and_a_child_using_each_other_are_a_cycle() {
    assert_cycle(
        &[
            ("lib.rs", "pub mod token;"),
            (
                "token.rs",
                "mod file;\npub use file::TokenFileSource;\npub struct Route;",
            ),
            (
                "token/file.rs",
                "use super::Route;\npub struct TokenFileSource;",
            ),
        ],
        &[
            "cycle 1: token, token::file\n",
            "token -> token::file (use file::TokenFileSource, src/token.rs:2)",
            "token::file -> token (use super::Route, src/token/file.rs:1)",
        ],
    );
    // A child path in code, and `foo/mod.rs` with `super::super`.
    assert_cycle(
        &[
            ("lib.rs", "mod net;\npub use net::Conn;\npub struct Root;"),
            ("net/mod.rs", "mod tcp;\nfn f(_: tcp::Stream) {}"),
            ("net/tcp.rs", "fn g(_: super::super::Root) {}"),
        ],
        &[
            "cycle 1: crate, net, net::tcp\n",
            "crate -> net (use net::Conn, src/lib.rs:2)",
            "net -> net::tcp (path tcp::Stream, src/net/mod.rs:2)",
            "net::tcp -> crate (path super::super::Root, src/net/tcp.rs:1)",
        ],
    );
}

#[test]
fn an_item_of_the_root_is_an_edge_to_the_root() {
    let report = assert_cycle(
        &[
            (
                "lib.rs",
                "mod error; mod session;\npub use error::SessionEnd;\npub use session::run;",
            ),
            ("error.rs", "pub struct SessionEnd;"),
            ("session.rs", "pub fn run(_: crate::SessionEnd) {}"),
        ],
        &[
            "cycle 1: crate, session\n",
            "crate -> session (use session::run, src/lib.rs:3)",
            "session -> crate (path crate::SessionEnd, src/session.rs:1)",
        ],
    );
    assert!(!report.contains("error"), "{report}");
}

#[test]
fn comments_and_strings_are_not_uses() {
    let report = check(&[
        ("lib.rs", "mod a; mod b;"),
        ("a.rs", "use crate::b;"),
        (
            "b.rs",
            "//! Module docs naming crate::a::X.\n\
             // use crate::a;\n\
             /* crate::a::Y */\n\
             /// See [`crate::a::X`].\n\
             pub fn f() -> &'static str { \"crate::a::X\" }\n\
             #[doc = \"crate::a\"] pub fn g() { println!(\"{}\", \"super::a\"); }",
        ),
    ]);
    assert_eq!(report, None);
}

#[test]
fn test_only_code_is_not_a_use() {
    let report = check(&[
        ("lib.rs", "mod a; mod b;"),
        ("a.rs", "use crate::b;"),
        (
            "b.rs",
            "#[cfg(test)]\nmod tests { use crate::a; }\n\
             #[cfg(test)]\nmod more;\n\
             #[cfg(all(test, unix))] use crate::a::X;\n\
             #[test] fn t() { crate::a::f(); }\n\
             pub struct S;\n\
             impl S { #[cfg(test)] fn h() { crate::a::f() } }",
        ),
        // Not read at all: a test-only file may even name modules that do not exist.
        ("b/more.rs", "use crate::a; use crate::nowhere;"),
    ]);
    assert_eq!(report, None);
    // Code compiled outside tests too still counts.
    assert_cycle(
        &[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", "use crate::b::extra;"),
            (
                "b.rs",
                "#[cfg(any(test, feature = \"extra\"))]\nmod extra { use crate::a; }",
            ),
        ],
        &["b::extra -> a (use crate::a, src/b.rs:2)"],
    );
}

#[test]
fn nested_use_groups_and_globs_are_resolved() {
    let report = assert_cycle(
        &[
            ("lib.rs", "mod ws; mod session;"),
            ("ws.rs", "pub mod close; pub mod frame;"),
            (
                "ws/close.rs",
                "use crate::{session::Id, ws::{self, frame::{Frame, Opcode as Op}}};",
            ),
            ("ws/frame.rs", "use super::close::*;"),
            ("session.rs", "pub struct Id;"),
        ],
        &[
            "cycle 1: ws::close, ws::frame\n",
            "ws::close -> ws::frame (use crate::ws::frame::Frame, src/ws/close.rs:1)",
            "ws::close -> ws::frame (use crate::ws::frame::Opcode, src/ws/close.rs:1)",
            "ws::frame -> ws::close (use super::close::*, src/ws/frame.rs:1)",
        ],
    );
    assert!(!report.contains("cycle 2"), "{report}");
    assert!(!report.contains("session"), "{report}");
}

#[test]
fn paths_in_macro_arguments_are_uses() {
    assert_cycle(
        &[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", "use crate::b;"),
            (
                "b.rs",
                "fn f() { tracing::info!(x = ?crate::a::X, \"crate::c\"); }",
            ),
        ],
        &["b -> a (path crate::a::X, src/b.rs:1)"],
    );
}

#[test]
fn visibility_and_external_paths_are_not_uses() {
    // Counted as uses, any of these would close b -> b::a -> crate -> b.
    let report = check(&[
        ("lib.rs", "mod b;\npub use b::f;"),
        (
            "b.rs",
            "mod a;\npub(crate) fn f() {}\npub(super) struct S;\npub(in crate) struct T;\n\
             fn g(a: u8) { let _ = a; ::a::x(); std::mem::drop(a); }",
        ),
        ("b/a.rs", "pub fn x() { let _ = crate::f; }"),
    ]);
    assert_eq!(report, None);
}
