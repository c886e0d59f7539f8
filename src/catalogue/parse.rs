//! The catalogue's INI dialect, as the original's `machines.conf` and `config.d/*.ini`:
//!
//! ```ini
//! ; comment            # comment too
//! [slax.iso]                                   ; a file in dir_machines...
//! url=https://example.org/path/slax.iso        ; ...downloaded from here
//! description=Slax (Debian, [www.slax.org])
//! [https://example.org/tinycore.iso]           ; a URL: the name is its last segment
//! [/srv/images/debian.qcow2]                   ; a local file: linked into dir_machines
//! ;[alpine.iso]                                ; a disabled entry (up to the next blank line)
//! ;url=https://example.org/alpine.iso
//! ```
//!
//! A `;` or `#` after whitespace starts a trailing comment. Errors name the file and line
//! and never stop the rest of the file from being read.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a catalogue line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Something wrong in a catalogue file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line, when the problem is on one line.
    pub line: Option<usize>,
    pub message: String,
    /// Something the file says was left out (a line, an entry, the whole file); false
    /// for a notice that loses nothing (a later definition replacing an earlier one).
    pub skipped: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Where a machine's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Downloaded from this http(s) URL (`url=` or a URL section).
    Url(String),
    /// Linked from this local file (a path section).
    Path(PathBuf),
    /// Placed in `dir_machines` by hand.
    Plain,
}

/// Disk image formats, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Iso,
    Qcow2,
    /// `.raw` and `.img`.
    Raw,
    Vdi,
    Vmdk,
    Vhd,
    Vhdx,
    Qed,
}

impl ImageFormat {
    /// Every extension darts accepts, for messages.
    pub const EXTENSIONS: &'static str = "iso, qcow2, raw, img, vdi, vmdk, vhd, vhdx, qed";

    /// The format of `name`, from its extension (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        let (_, ext) = name.rsplit_once('.')?;
        Some(match ext.to_ascii_lowercase().as_str() {
            "iso" => Self::Iso,
            "qcow2" => Self::Qcow2,
            "raw" | "img" => Self::Raw,
            "vdi" => Self::Vdi,
            "vmdk" => Self::Vmdk,
            "vhd" => Self::Vhd,
            "vhdx" => Self::Vhdx,
            "qed" => Self::Qed,
            _ => return None,
        })
    }

    /// QEMU's `format=` name.
    pub fn qemu_format(self) -> &'static str {
        match self {
            Self::Iso | Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
            Self::Vdi => "vdi",
            Self::Vmdk => "vmdk",
            Self::Vhd => "vpc",
            Self::Vhdx => "vhdx",
            Self::Qed => "qed",
        }
    }

    /// A CD-ROM image (booted from, with a blank disk beside it).
    pub fn is_cdrom(self) -> bool {
        self == Self::Iso
    }
}

/// Checks that `name` is safe as a file name in `dir_machines`: letters, digits and
/// `._+-`, no leading dot, no `..`, at most 255 bytes.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > 255 {
        return Err("longer than 255 bytes".into());
    }
    if name.starts_with('.') {
        return Err("starts with a dot".into());
    }
    if name.contains("..") {
        return Err("contains \"..\"".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
    {
        return Err(format!(
            "character {c:?} not allowed (letters, digits and ._+- only)"
        ));
    }
    Ok(())
}

/// Whether `s` is an http(s) URL.
pub fn is_url(s: &str) -> bool {
    let head = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    head.starts_with("https://") || head.starts_with("http://")
}

/// The last path segment of a URL, without query or fragment.
pub fn url_basename(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = path.split_once("://").map_or(path, |(_, rest)| rest);
    match after_scheme.split_once('/') {
        Some((_, p)) => p.rsplit('/').next().unwrap_or(""),
        None => "",
    }
}

/// A section header's machine name and source.
pub fn interpret_section(raw: &str) -> Result<(String, Source), String> {
    let raw = raw.trim();
    let (name, source) = if is_url(raw) {
        (url_basename(raw).to_owned(), Source::Url(raw.to_owned()))
    } else if raw.contains("://") {
        return Err(format!(
            "{raw}: only http:// and https:// URLs are supported"
        ));
    } else if raw.contains('/') {
        let path = Path::new(raw);
        if !path.is_absolute() {
            return Err(format!(
                "{raw}: a local file must be given by its absolute path"
            ));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        (name, Source::Path(path.to_owned()))
    } else {
        (raw.to_owned(), Source::Plain)
    };
    check_name(&name).map_err(|why| format!("machine name {name:?}: {why}"))?;
    Ok((name, source))
}

/// What one line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    Blank,
    /// `[x]`, with the text between the brackets.
    Section(&'a str),
    /// `;[x]` or `# [x]`: a commented-out section header.
    DisabledSection(&'a str),
    Comment,
    /// `key=value`; the value without trailing comment, quotes or surrounding spaces.
    KeyValue(&'a str, &'a str),
    Malformed,
}

/// Cuts a trailing comment: `;` or `#` preceded by whitespace.
fn strip_trailing_comment(s: &str) -> &str {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if (b == b';' || b == b'#') && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return &s[..i];
        }
    }
    s
}

fn section_text(s: &str) -> Option<&str> {
    let rest = strip_trailing_comment(s).trim_end().strip_prefix('[')?;
    let close = rest.rfind(']')?;
    let after = rest[close + 1..].trim();
    (after.is_empty() || after.starts_with([';', '#'])).then(|| rest[..close].trim())
}

pub(crate) fn classify(line: &str) -> Line<'_> {
    let t = line.trim();
    if t.is_empty() {
        return Line::Blank;
    }
    if t.starts_with([';', '#']) {
        let inner = t.trim_start_matches([';', '#']).trim_start();
        return match section_text(inner) {
            Some(s) if !s.is_empty() => Line::DisabledSection(s),
            _ => Line::Comment,
        };
    }
    if t.starts_with('[') {
        return match section_text(t) {
            Some(s) if !s.is_empty() => Line::Section(s),
            _ => Line::Malformed,
        };
    }
    let Some((key, value)) = t.split_once('=') else {
        return Line::Malformed;
    };
    let key = key.trim();
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Line::Malformed;
    }
    let value = strip_trailing_comment(value).trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Line::KeyValue(key, value)
}

/// The line inside a comment: `;url=x` → `url=x`, `; note` → `note`.
pub(crate) fn commented_content(line: &str) -> Option<&str> {
    let t = line.trim_start();
    t.starts_with([';', '#'])
        .then(|| t.trim_start_matches([';', '#']).trim_start())
}

/// An enabled entry as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub source: Source,
    pub description: Option<String>,
    pub format: ImageFormat,
    pub at: Location,
}

/// A commented-out entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledEntry {
    pub name: String,
    pub url: Option<String>,
    pub description: Option<String>,
    pub at: Location,
}

/// Everything one file declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedFile {
    pub entries: Vec<Entry>,
    pub disabled: Vec<DisabledEntry>,
    pub problems: Vec<Problem>,
}

enum Current {
    None,
    Enabled(usize),
    Disabled(usize),
    /// A section we reported and skip.
    Skipped,
}

/// Parses one catalogue file's text; `file` is only used in locations and messages.
pub fn parse(file: &Path, text: &str) -> ParsedFile {
    let mut out = ParsedFile::default();
    let mut current = Current::None;
    let problem = |line: usize, message: String| Problem {
        file: file.to_owned(),
        line: Some(line),
        message,
        skipped: true,
    };
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let at = Location {
            file: file.to_owned(),
            line: n,
        };
        match classify(raw) {
            Line::Blank => {
                if matches!(current, Current::Disabled(_)) {
                    current = Current::None;
                }
            }
            Line::Section(s) => match section_entry(s, at) {
                Ok(entry) => {
                    out.entries.push(entry);
                    current = Current::Enabled(out.entries.len() - 1);
                }
                Err(message) => {
                    out.problems.push(problem(n, message));
                    current = Current::Skipped;
                }
            },
            Line::DisabledSection(s) => {
                // A bracketed comment that is no machine name stays a comment.
                if let Ok(entry) = section_entry(s, at) {
                    out.disabled.push(DisabledEntry {
                        name: entry.name,
                        url: match entry.source {
                            Source::Url(u) => Some(u),
                            _ => None,
                        },
                        description: None,
                        at: entry.at,
                    });
                    current = Current::Disabled(out.disabled.len() - 1);
                }
            }
            Line::Comment => {
                if let Current::Disabled(d) = current {
                    if let Some(Line::KeyValue(k, v)) = commented_content(raw).map(classify) {
                        let entry = &mut out.disabled[d];
                        match k.to_ascii_lowercase().as_str() {
                            "url" => entry.url = Some(v.to_owned()),
                            "description" => entry.description = Some(v.to_owned()),
                            _ => {}
                        }
                    }
                }
            }
            Line::KeyValue(key, value) => match current {
                Current::Enabled(e) => {
                    if let Err(message) = apply_key(&mut out.entries[e], key, value) {
                        out.problems.push(problem(n, message));
                    }
                }
                Current::Skipped => {}
                Current::None => out.problems.push(problem(
                    n,
                    format!("{key}= outside a [machine] section"),
                )),
                Current::Disabled(d) => out.problems.push(problem(
                    n,
                    format!(
                        "{key}= follows the disabled entry ;[{}]: comment it out too, or add a blank line",
                        out.disabled[d].name
                    ),
                )),
            },
            Line::Malformed => out.problems.push(problem(
                n,
                format!(
                    "cannot read {:?}: expected [machine], key=value or a ; comment",
                    raw.trim()
                ),
            )),
        }
    }
    out
}

fn section_entry(raw: &str, at: Location) -> Result<Entry, String> {
    let (name, source) = interpret_section(raw)?;
    let format = ImageFormat::from_name(&name).ok_or_else(|| {
        format!(
            "{name}: unknown image format (the name must end in one of {})",
            ImageFormat::EXTENSIONS
        )
    })?;
    Ok(Entry {
        name,
        source,
        description: None,
        format,
        at,
    })
}

fn apply_key(entry: &mut Entry, key: &str, value: &str) -> Result<(), String> {
    match key.to_ascii_lowercase().as_str() {
        "url" => {
            if !is_url(value) {
                return Err(format!(
                    "url={value}: only http:// and https:// URLs are supported"
                ));
            }
            if let Source::Path(p) = &entry.source {
                return Err(format!(
                    "url= given for the local file {}; use one or the other",
                    p.display()
                ));
            }
            entry.source = Source::Url(value.to_owned());
        }
        "description" => entry.description = Some(value.to_owned()),
        _ => {
            return Err(format!(
                "unknown key {key:?} in [{}] (known: url, description)",
                entry.name
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ParsedFile {
        parse(Path::new("m.conf"), text)
    }

    #[test]
    fn the_inventory_example() {
        let f = p("; /etc/qemu-web-desktop/config.d/slax.iso.ini\n\
                   [slax.iso]\n\
                   url=https://example.org/path/slax.iso\n\
                   description=Slax (Debian, [www.slax.org])\n\
                   \n\
                   [debian-bookworm.qcow2]\n\
                   description=Debian 12 Bookworm      ; file placed by hand in /var/lib/qemu-web-desktop/machines\n");
        assert_eq!(f.problems, vec![]);
        assert_eq!(f.entries.len(), 2);
        let slax = &f.entries[0];
        assert_eq!(slax.name, "slax.iso");
        assert_eq!(
            slax.source,
            Source::Url("https://example.org/path/slax.iso".into())
        );
        assert_eq!(
            slax.description.as_deref(),
            Some("Slax (Debian, [www.slax.org])")
        );
        assert_eq!(slax.format, ImageFormat::Iso);
        assert_eq!(slax.at.line, 2);
        let deb = &f.entries[1];
        assert_eq!(deb.source, Source::Plain);
        assert_eq!(deb.description.as_deref(), Some("Debian 12 Bookworm"));
        assert_eq!(deb.format.qemu_format(), "qcow2");
    }

    #[test]
    fn url_and_path_sections_take_their_basename() {
        let f = p("[https://example.org/a/tiny.ISO?x=1]\n\
                   # hash comment\n\
                   [/srv/images/deb.qcow2] ; trailing\n\
                   [https://[::1]:8443/v6.vhdx]\n");
        assert_eq!(f.problems, vec![]);
        let names: Vec<_> = f.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["tiny.ISO", "deb.qcow2", "v6.vhdx"]);
        assert_eq!(f.entries[0].format, ImageFormat::Iso);
        assert_eq!(
            f.entries[1].source,
            Source::Path("/srv/images/deb.qcow2".into())
        );
        assert_eq!(f.entries[2].format.qemu_format(), "vhdx");
    }

    #[test]
    fn disabled_blocks_end_at_a_blank_line() {
        let f = p(";[tinycore.iso]\n\
                   ;url=http://tinycorelinux.net/Core.iso\n\
                   ; description=TinyCore\n\
                   \n\
                   ; url=http://not-part-of-it/\n\
                   ; [see the documentation]\n\
                   #[alpine.img]\n");
        assert_eq!(f.problems, vec![]);
        assert_eq!(f.entries, vec![]);
        assert_eq!(f.disabled.len(), 2);
        assert_eq!(f.disabled[0].name, "tinycore.iso");
        assert_eq!(
            f.disabled[0].url.as_deref(),
            Some("http://tinycorelinux.net/Core.iso")
        );
        assert_eq!(f.disabled[0].description.as_deref(), Some("TinyCore"));
        assert_eq!(f.disabled[1].name, "alpine.img");
        assert_eq!(f.disabled[1].url, None);
    }

    #[test]
    fn broken_lines_are_reported_and_the_rest_is_kept() {
        let f = p("url=https://x/a.iso\n\
                   [good.iso]\n\
                   urll=https://x/good.iso\n\
                   this is not ini\n\
                   [x..iso]\n\
                   description=skipped silently\n\
                   [notes.txt]\n\
                   [ftp://x/y.iso]\n\
                   [relative/dir/z.iso]\n\
                   [fine.vmdk]\n\
                   url=file:///etc/shadow\n\
                   [\n");
        let lines: Vec<_> = f.problems.iter().map(|p| p.line.unwrap()).collect();
        assert_eq!(lines, [1, 3, 4, 5, 7, 8, 9, 11, 12], "{:#?}", f.problems);
        let text: Vec<String> = f.problems.iter().map(|p| p.to_string()).collect();
        assert!(text[0].starts_with("m.conf:1: url= outside"), "{}", text[0]);
        assert!(text[1].contains("unknown key \"urll\""), "{}", text[1]);
        assert!(text[3].contains(".."), "{}", text[3]);
        assert!(text[4].contains("unknown image format"), "{}", text[4]);
        let names: Vec<_> = f.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["good.iso", "fine.vmdk"]);
        assert_eq!(f.entries[1].source, Source::Plain);
    }

    #[test]
    fn uncommented_key_after_a_disabled_header_is_reported() {
        let f = p(";[a.iso]\nurl=https://x/a.iso\n");
        assert_eq!(f.problems.len(), 1);
        assert!(f.problems[0].message.contains(";[a.iso]"));
    }

    #[test]
    fn names() {
        for ok in ["a.iso", "Debian-12_x86+ds.qcow2", "x"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".hidden.iso",
            "a/b.iso",
            "a..iso",
            "a b.iso",
            "a:b.iso",
            "é.iso",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(ImageFormat::from_name("X.IMG"), Some(ImageFormat::Raw));
        assert_eq!(
            ImageFormat::from_name("a.vhd").unwrap().qemu_format(),
            "vpc"
        );
        assert_eq!(ImageFormat::from_name("a.qcow2.gz"), None);
        assert_eq!(ImageFormat::from_name("iso"), None);
        assert!(ImageFormat::Iso.is_cdrom());
    }

    #[test]
    fn url_basenames() {
        assert_eq!(url_basename("https://h/a/b.iso?x#y"), "b.iso");
        assert_eq!(url_basename("https://h"), "");
        assert_eq!(url_basename("https://h/"), "");
    }

    #[test]
    fn quoted_values_and_hashes_inside_values() {
        let f = p("[a.iso]\ndescription=\"Quoted; kept\"\nurl=https://h/a.iso#frag\n");
        assert_eq!(f.problems, vec![]);
        assert_eq!(f.entries[0].description.as_deref(), Some("Quoted; kept"));
        assert_eq!(
            f.entries[0].source,
            Source::Url("https://h/a.iso#frag".into())
        );
    }
}
