//! Changes to the catalogue files: enabling a machine (uncommenting its `;[name]` block,
//! or creating `config.d/<name>.ini`) and disabling it (commenting its block out in
//! every file). Every other line, comments and line endings included, is kept as it
//! was, and files are replaced atomically with their permissions.
//!
//! Disabling puts one `;` before the header and before each line of the block up to the
//! first blank line (only before keys after it), so enabling, which takes one `;` off
//! again, gives back the original text.

use std::fs;
use std::path::{Path, PathBuf};

use super::parse::{self, check_name, classify, interpret_section, is_url, url_basename, Line};
use super::{Catalogue, CatalogueError, ImageFormat, Location, DROP_IN_DIR};

/// What `enable` was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnableTarget {
    /// A machine name (`slax.iso`).
    Name(String),
    /// An http(s) URL: the entry downloads from it.
    Url(String),
    /// A local image file: copied (or linked) into `dir_machines`.
    File(PathBuf),
}

impl EnableTarget {
    /// A URL, a path (anything with a `/`, like `./a.iso`), or a name.
    pub fn from_arg(arg: &str) -> Self {
        if is_url(arg) {
            Self::Url(arg.to_owned())
        } else if arg.contains('/') {
            Self::File(PathBuf::from(arg))
        } else {
            Self::Name(arg.to_owned())
        }
    }
}

/// An `enable` request.
#[derive(Debug, Clone)]
pub struct EnableRequest {
    pub target: EnableTarget,
    pub description: Option<String>,
    /// For a local file: symlink it instead of copying it.
    pub link: bool,
}

/// What `enable` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnableOutcome {
    /// The machine was enabled already, here.
    AlreadyEnabled(Location),
    /// Its commented block in this file was uncommented.
    Uncommented(PathBuf),
    /// This new file declares it.
    Created(PathBuf),
}

/// What `disable` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisableOutcome {
    /// The blocks in these files were commented out.
    Disabled(Vec<PathBuf>),
    /// It was disabled already.
    AlreadyDisabled,
}

/// Enables a machine; returns its name and what was done.
pub fn enable(
    dir_etc: &Path,
    dir_machines: &Path,
    req: &EnableRequest,
) -> Result<(String, EnableOutcome), CatalogueError> {
    let (name, url, file) = match &req.target {
        EnableTarget::Name(n) => (n.clone(), None, None),
        EnableTarget::Url(u) => (url_basename(u).to_owned(), Some(u.as_str()), None),
        EnableTarget::File(p) => {
            let abs = std::path::absolute(p).map_err(CatalogueError::io(p))?;
            let name = abs
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            (name, None, Some(abs))
        }
    };
    check_name(&name).map_err(|reason| CatalogueError::InvalidName {
        name: name.clone(),
        reason,
    })?;
    if ImageFormat::from_name(&name).is_none() {
        return Err(CatalogueError::UnknownFormat { name });
    }
    let cat = Catalogue::load_from(dir_etc, dir_machines);
    if let Some(m) = cat.get(&name) {
        return Ok((name, EnableOutcome::AlreadyEnabled(m.defined_at.clone())));
    }
    if let Some(src) = &file {
        place_local_image(&name, src, dir_machines, req.link)?;
    }
    for path in cat.files() {
        let mut text = CatalogueText::read(path)?;
        let Some(block) = text.blocks_named(&name, false).into_iter().next() else {
            continue;
        };
        text.uncomment(block);
        if let Some(u) = url {
            text.set_key(block.header, "url", u);
        }
        if let Some(d) = &req.description {
            text.set_key(block.header, "description", d);
        }
        text.write()?;
        return Ok((name, EnableOutcome::Uncommented(path.clone())));
    }
    let section = match (&file, req.link) {
        (Some(src), true) => src.to_string_lossy().into_owned(),
        _ => name.clone(),
    };
    let mut body = format!("[{section}]\n");
    if let Some(u) = url {
        body.push_str(&format!("url={u}\n"));
    }
    if let Some(d) = &req.description {
        body.push_str(&format!("description={}\n", d.replace(['\n', '\r'], " ")));
    }
    let dir = dir_etc.join(DROP_IN_DIR);
    fs::create_dir_all(&dir).map_err(CatalogueError::io(&dir))?;
    let path = dir.join(format!("{name}.ini"));
    if path.exists() {
        return Err(CatalogueError::Exists(path));
    }
    write_atomic(&path, body.as_bytes())?;
    Ok((name, EnableOutcome::Created(path)))
}

/// Comments out every enabled block of `name`, in every catalogue file.
pub fn disable(
    dir_etc: &Path,
    dir_machines: &Path,
    name: &str,
) -> Result<DisableOutcome, CatalogueError> {
    let cat = Catalogue::load_from(dir_etc, dir_machines);
    let mut changed = Vec::new();
    for path in cat.files() {
        let mut text = CatalogueText::read(path)?;
        let blocks = text.blocks_named(name, true);
        if blocks.is_empty() {
            continue;
        }
        for block in blocks {
            text.comment_out(block);
        }
        text.write()?;
        changed.push(path.clone());
    }
    if !changed.is_empty() {
        Ok(DisableOutcome::Disabled(changed))
    } else if cat.disabled().iter().any(|d| d.name == name) {
        Ok(DisableOutcome::AlreadyDisabled)
    } else {
        Err(CatalogueError::Unknown(name.to_owned()))
    }
}

/// Copies (or links) a local image to `dir_machines/<name>`.
fn place_local_image(
    name: &str,
    src: &Path,
    dir_machines: &Path,
    link: bool,
) -> Result<(), CatalogueError> {
    if !src.is_file() {
        return Err(CatalogueError::SourceMissing {
            name: name.to_owned(),
            path: src.to_owned(),
        });
    }
    let dest = dir_machines.join(name);
    if link && fs::read_link(&dest).is_ok_and(|t| t == src) {
        return Ok(());
    }
    if dest.symlink_metadata().is_ok() {
        return Err(CatalogueError::Exists(dest));
    }
    fs::create_dir_all(dir_machines).map_err(CatalogueError::io(dir_machines))?;
    if link {
        std::os::unix::fs::symlink(src, &dest).map_err(CatalogueError::io(&dest))?;
        return Ok(());
    }
    let tmp = dir_machines.join(format!(".{name}.copy-{}", std::process::id()));
    if let Err(e) = fs::copy(src, &tmp) {
        let _ = fs::remove_file(&tmp);
        return Err(CatalogueError::io(&tmp)(e));
    }
    fs::rename(&tmp, &dest).map_err(CatalogueError::io(&dest))
}

/// Replaces `path` (the file a symlink points to, if it is one) by `contents`, keeping
/// its permissions.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), CatalogueError> {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.darts-{}", std::process::id()));
    let result = fs::write(&tmp, contents)
        .and_then(|()| match fs::metadata(&path) {
            Ok(meta) => fs::set_permissions(&tmp, meta.permissions()),
            Err(_) => Ok(()),
        })
        .and_then(|()| fs::rename(&tmp, &path));
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        CatalogueError::io(&path)(e)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    header: usize,
    /// Exclusive.
    end: usize,
}

/// A catalogue file as lines, each with its own line ending.
#[derive(Debug)]
struct CatalogueText {
    path: PathBuf,
    lines: Vec<(String, &'static str)>,
}

impl CatalogueText {
    fn read(path: &Path) -> Result<Self, CatalogueError> {
        let text = fs::read_to_string(path).map_err(CatalogueError::io(path))?;
        Ok(Self::from_text(path, &text))
    }

    fn from_text(path: &Path, text: &str) -> Self {
        let lines = text
            .split_inclusive('\n')
            .map(|l| {
                if let Some(s) = l.strip_suffix("\r\n") {
                    (s.to_owned(), "\r\n")
                } else if let Some(s) = l.strip_suffix('\n') {
                    (s.to_owned(), "\n")
                } else {
                    (l.to_owned(), "")
                }
            })
            .collect();
        Self {
            path: path.to_owned(),
            lines,
        }
    }

    fn text(&self) -> String {
        self.lines
            .iter()
            .map(|(l, end)| format!("{l}{end}"))
            .collect()
    }

    fn write(&self) -> Result<(), CatalogueError> {
        write_atomic(&self.path, self.text().as_bytes())
    }

    fn line(&self, i: usize) -> Line<'_> {
        classify(&self.lines[i].0)
    }

    /// Blocks of `name`: enabled ones (to the next header) or disabled ones (to the next
    /// header or blank line).
    fn blocks_named(&self, name: &str, enabled: bool) -> Vec<Block> {
        let is_header = |l: Line<'_>| matches!(l, Line::Section(_) | Line::DisabledSection(_));
        let mut blocks = Vec::new();
        for i in 0..self.lines.len() {
            let section = match (self.line(i), enabled) {
                (Line::Section(s), true) | (Line::DisabledSection(s), false) => s,
                _ => continue,
            };
            if !interpret_section(section).is_ok_and(|(n, _)| n == name) {
                continue;
            }
            let mut end = i + 1;
            while end < self.lines.len() {
                let l = self.line(end);
                if is_header(l) || (!enabled && l == Line::Blank) {
                    break;
                }
                end += 1;
            }
            blocks.push(Block { header: i, end });
        }
        blocks
    }

    fn comment_out(&mut self, block: Block) {
        let mut after_blank = false;
        for i in block.header..block.end {
            let comment = match self.line(i) {
                Line::Blank => {
                    after_blank = true;
                    false
                }
                Line::Comment | Line::DisabledSection(_) => !after_blank,
                Line::Section(_) | Line::KeyValue(..) | Line::Malformed => true,
            };
            if comment {
                self.lines[i].0.insert(0, ';');
            }
        }
    }

    fn uncomment(&mut self, block: Block) {
        let header = &mut self.lines[block.header].0;
        let indent = header.len() - header.trim_start().len();
        let content = parse::commented_content(header)
            .unwrap_or_default()
            .to_owned();
        *header = format!("{}{content}", &header[..indent]);
        for i in block.header + 1..block.end {
            let line = &self.lines[i].0;
            let indent = line.len() - line.trim_start().len();
            if !line[indent..].starts_with([';', '#']) {
                continue;
            }
            let candidate = format!("{}{}", &line[..indent], &line[indent + 1..]);
            let keep = match classify(&candidate) {
                Line::Comment => true,
                Line::KeyValue(k, _) => {
                    k.eq_ignore_ascii_case("url") || k.eq_ignore_ascii_case("description")
                }
                _ => false,
            };
            if keep {
                self.lines[i].0 = candidate;
            }
        }
    }

    /// Sets `key=value` in the enabled block starting at `header`.
    fn set_key(&mut self, header: usize, key: &str, value: &str) {
        let value = value.replace(['\n', '\r'], " ");
        let mut insert_at = header + 1;
        for i in header + 1..self.lines.len() {
            match self.line(i) {
                Line::Section(_) | Line::DisabledSection(_) => break,
                Line::KeyValue(k, _) if k.eq_ignore_ascii_case(key) => {
                    self.lines[i].0 = format!("{key}={value}");
                    return;
                }
                Line::KeyValue(..) => insert_at = i + 1,
                _ => {}
            }
        }
        let ending = self
            .lines
            .first()
            .map_or("\n", |(_, e)| if e.is_empty() { "\n" } else { e });
        if let Some(prev) = self.lines.get_mut(insert_at - 1) {
            if prev.1.is_empty() {
                prev.1 = ending;
            }
        }
        self.lines
            .insert(insert_at, (format!("{key}={value}"), ending));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "; Catalogue\r\n\
        [a.iso]\r\n\
        ; the A live CD\r\n\
        url=https://example.org/a.iso   ; mirror\r\n\
        ;url=https://old.example.org/a.iso\r\n\
        description=A\r\n\
        \r\n\
        ; notes about b\r\n\
        [b.qcow2]\r\n\
        description=B";

    fn block(t: &CatalogueText, name: &str, enabled: bool) -> Block {
        t.blocks_named(name, enabled)[0]
    }

    #[test]
    fn comment_out_then_uncomment_gives_the_text_back() {
        let mut t = CatalogueText::from_text(Path::new("x"), SAMPLE);
        let b = block(&t, "a.iso", true);
        assert_eq!(b, Block { header: 1, end: 8 });
        t.comment_out(b);
        let disabled = t.text();
        assert!(disabled.contains(";[a.iso]\r\n;; the A live CD\r\n;url=https://example.org/a.iso"));
        assert!(disabled.contains(";;url=https://old.example.org/a.iso"));
        assert!(
            disabled.contains("\r\n; notes about b\r\n[b.qcow2]"),
            "{disabled}"
        );
        let parsed = parse::parse(Path::new("x"), &disabled);
        assert_eq!(parsed.entries.len(), 1);
        assert_eq!(parsed.disabled[0].name, "a.iso");
        assert_eq!(parsed.problems, vec![]);
        let b = block(&t, "a.iso", false);
        t.uncomment(b);
        assert_eq!(t.text(), SAMPLE);
    }

    #[test]
    fn uncomment_leaves_prose_commented() {
        let mut t = CatalogueText::from_text(
            Path::new("x"),
            ";[c.iso]\n; Very small distribution\n; url=https://h/c.iso\n;mount=/x\n\n; after\n",
        );
        let b = block(&t, "c.iso", false);
        t.uncomment(b);
        assert_eq!(
            t.text(),
            "[c.iso]\n; Very small distribution\n url=https://h/c.iso\n;mount=/x\n\n; after\n"
        );
    }

    #[test]
    fn set_key_replaces_or_inserts() {
        let mut t = CatalogueText::from_text(Path::new("x"), "[a.iso]\nurl=old\n[b.iso]");
        t.set_key(0, "url", "new");
        t.set_key(0, "description", "D");
        t.set_key(3, "url", "u");
        assert_eq!(
            t.text(),
            "[a.iso]\nurl=new\ndescription=D\n[b.iso]\nurl=u\n"
        );
    }

    #[test]
    fn enable_targets() {
        assert_eq!(
            EnableTarget::from_arg("https://h/x.iso"),
            EnableTarget::Url("https://h/x.iso".into())
        );
        assert_eq!(
            EnableTarget::from_arg("./x.iso"),
            EnableTarget::File("./x.iso".into())
        );
        assert_eq!(
            EnableTarget::from_arg("x.iso"),
            EnableTarget::Name("x.iso".into())
        );
    }
}
