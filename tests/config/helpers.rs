//! Files, the `darts` binary and origins, shared by the configuration tests.

use std::path::Path;
use std::process::{Command, Output};

use darts::config::Origin;

use crate::support::darts_bin;

pub(crate) fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Replaces a file the way editors and deployment tools do: write aside, then rename.
pub(crate) fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub(crate) fn darts(args: &[&str]) -> Output {
    Command::new(darts_bin()).args(args).output().unwrap()
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn at(path: &Path, line: usize) -> Origin {
    Origin::File {
        path: path.to_owned(),
        line,
    }
}
