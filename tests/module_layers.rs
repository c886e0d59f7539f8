//! The library crates' modules form layers: no module uses, directly or through others,
//! a module that uses it back. The same check as `cargo modules dependencies --acyclic`,
//! without building cargo-modules.
//!
//! A node is a module: the crate root (`lib.rs`), each module file (`foo.rs` or
//! `foo/mod.rs` is `foo`, `foo/bar.rs` is `foo::bar`) and each inline `mod x { }`. An edge
//! is a use: every path in code (`use` trees, expression, type and pattern paths, paths in
//! macro arguments) that starts with `crate`, `self`, `super` or the name of a child
//! module, resolved to the longest prefix that names a module. A path to an item of the
//! crate root, such as a re-export, is an edge to the root. `mod x;` itself is ownership,
//! not a use. As cargo-modules does by default, code only compiled for tests
//! (`#[cfg(test)]`, `#[test]`) is left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{Attribute, Item, Meta, Token, UseTree};

/// Where a path was found: the kind of code and the source line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Site {
    file: String,
    line: usize,
    what: String,
}

#[derive(Debug)]
struct Module {
    /// `crate` for the root, `foo::bar` for the others.
    name: String,
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
}

/// One crate's module tree and its uses.
#[derive(Debug, Default)]
struct Graph {
    modules: Vec<Module>,
    /// (from, to) -> where the uses are.
    edges: BTreeMap<(usize, usize), Vec<Site>>,
}

/// Reads a source file; `None` if it does not exist.
type Read<'a> = dyn Fn(&Path) -> Option<String> + 'a;

/// A parsed file and the module it is.
struct Source {
    module: usize,
    file: String,
    ast: syn::File,
}

impl Graph {
    fn build(root: &Path, read: &Read<'_>) -> Graph {
        let mut graph = Graph::default();
        graph.modules.push(Module {
            name: "crate".to_owned(),
            parent: None,
            children: BTreeMap::new(),
        });
        let src = root.parent().unwrap_or(Path::new(""));
        // File names are shown from the package: `src/...`.
        let base = src.parent().unwrap_or(Path::new(""));
        let mut sources = Vec::new();
        graph.load(0, root, src, base, read, &mut sources);
        for source in &sources {
            let mut collector = Collector {
                graph: &mut graph,
                current: source.module,
                file: &source.file,
            };
            for item in &source.ast.items {
                collector.visit_item(item);
            }
        }
        graph
    }

    /// Parses the file of `module` and, recursively, the files of the modules it declares.
    /// `children_dir` is where its `mod x;` files are; `base` what file names are shown
    /// relative to.
    fn load(
        &mut self,
        module: usize,
        file: &Path,
        children_dir: &Path,
        base: &Path,
        read: &Read<'_>,
        sources: &mut Vec<Source>,
    ) {
        let shown = file
            .strip_prefix(base)
            .unwrap_or(file)
            .display()
            .to_string();
        let text = read(file).unwrap_or_else(|| panic!("cannot read {}", file.display()));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| {
            let at = e.span().start();
            panic!("{shown}:{}:{}: {e}", at.line, at.column + 1)
        });
        self.declare(module, &ast.items, children_dir, base, read, sources);
        sources.push(Source {
            module,
            file: shown,
            ast,
        });
    }

    /// Adds the modules `items` declare (inline or in files) as children of `module`.
    fn declare(
        &mut self,
        module: usize,
        items: &[Item],
        children_dir: &Path,
        base: &Path,
        read: &Read<'_>,
        sources: &mut Vec<Source>,
    ) {
        for item in items {
            let Item::Mod(decl) = item else { continue };
            if test_only(&decl.attrs) {
                continue;
            }
            let name = decl.ident.to_string();
            let child = self.modules.len();
            let full = if module == 0 {
                name.clone()
            } else {
                format!("{}::{name}", self.modules[module].name)
            };
            self.modules.push(Module {
                name: full,
                parent: Some(module),
                children: BTreeMap::new(),
            });
            self.modules[module].children.insert(name.clone(), child);
            let dir = children_dir.join(&name);
            if let Some((_, inner)) = &decl.content {
                self.declare(child, inner, &dir, base, read, sources);
                continue;
            }
            assert!(
                path_attr(&decl.attrs).is_none(),
                "mod {name} in {}: #[path] is not supported by this check",
                self.modules[module].name
            );
            let flat = children_dir.join(format!("{name}.rs"));
            let (file, grandchildren) = if read(&flat).is_some() {
                (flat, dir)
            } else {
                (dir.join("mod.rs"), dir)
            };
            self.load(child, &file, &grandchildren, base, read, sources);
        }
    }

    /// The module a path names, or the module of the item it names: `None` for paths that
    /// do not start inside the crate (external crates, local names).
    fn resolve(&self, from: usize, segments: &[String], in_use: bool) -> Option<usize> {
        let (first, rest) = segments.split_first()?;
        let mut at = match first.as_str() {
            "crate" => 0,
            "self" | "super" => from,
            child => {
                // A lone name in code is a value or a type, never a module; in a `use` it
                // is the module itself (`use self::{file}` flattened to `file`).
                if rest.is_empty() && !in_use {
                    return None;
                }
                *self.modules[from].children.get(child)?
            }
        };
        if first == "super" {
            at = self.modules[at].parent?;
        }
        for segment in rest {
            match segment.as_str() {
                "super" => at = self.modules[at].parent?,
                "self" => {}
                name => match self.modules[at].children.get(name) {
                    Some(&child) => at = child,
                    None => break,
                },
            }
        }
        Some(at)
    }

    fn add_use(&mut self, from: usize, segments: &[String], in_use: bool, site: Site) {
        if segments.len() == 1 && segments[0] == "self" {
            return; // the receiver `self`, or `use self;` which is not valid anyway
        }
        if let Some(to) = self.resolve(from, segments, in_use) {
            if to != from {
                self.edges.entry((from, to)).or_default().push(site);
            }
        }
    }

    /// Every strongly connected component of more than one module, each as its modules'
    /// indices, sorted.
    fn cycles(&self) -> Vec<Vec<usize>> {
        let n = self.modules.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(from, to) in self.edges.keys() {
            next[from].push(to);
        }
        let mut tarjan = Tarjan {
            next: &next,
            index: vec![None; n],
            low: vec![0; n],
            on_stack: vec![false; n],
            stack: Vec::new(),
            counter: 0,
            components: Vec::new(),
        };
        for v in 0..n {
            if tarjan.index[v].is_none() {
                tarjan.visit(v);
            }
        }
        let mut cycles: Vec<Vec<usize>> = tarjan
            .components
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|mut c| {
                c.sort_by(|&a, &b| self.modules[a].name.cmp(&self.modules[b].name));
                c
            })
            .collect();
        cycles.sort_by(|a, b| self.modules[a[0]].name.cmp(&self.modules[b[0]].name));
        cycles
    }

    /// The cycles, each with the uses that form it, for a test failure; `None` if none.
    fn report(&self, krate: &str) -> Option<String> {
        let cycles = self.cycles();
        if cycles.is_empty() {
            return None;
        }
        let mut out = format!(
            "{krate}: {} import cycle(s), modules that use each other directly or through \
             others. Break each by moving what both sides need into a module below them.\n",
            cycles.len()
        );
        for (number, cycle) in cycles.iter().enumerate() {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&m| self.modules[m].name.as_str())
                .collect();
            let _ = writeln!(out, "\ncycle {}: {}", number + 1, names.join(", "));
            let members: BTreeSet<usize> = cycle.iter().copied().collect();
            let mut edges: Vec<(&(usize, usize), &Vec<Site>)> = self
                .edges
                .iter()
                .filter(|((from, to), _)| members.contains(from) && members.contains(to))
                .collect();
            edges.sort_by(|((a, b), _), ((c, d), _)| {
                let name = |m: &usize| self.modules[*m].name.as_str();
                (name(a), name(b)).cmp(&(name(c), name(d)))
            });
            for ((from, to), sites) in edges {
                let mut sites = sites.clone();
                sites.sort();
                sites.dedup();
                for site in sites {
                    let _ = writeln!(
                        out,
                        "  {} -> {} ({}, {}:{})",
                        self.modules[*from].name,
                        self.modules[*to].name,
                        site.what,
                        site.file,
                        site.line
                    );
                }
            }
        }
        Some(out)
    }
}

struct Tarjan<'a> {
    next: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    counter: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.counter);
        self.low[v] = self.counter;
        self.counter += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &self.next[v] {
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(index) if self.on_stack[w] => self.low[v] = self.low[v].min(index),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

/// What a `cfg` predicate is in a build that is not a test build, whatever the other
/// options: only `test` is known (false).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cfg {
    True,
    False,
    Unknown,
}

fn eval_cfg(meta: &Meta) -> Cfg {
    match meta {
        Meta::Path(path) if path.is_ident("test") => Cfg::False,
        Meta::Path(_) | Meta::NameValue(_) => Cfg::Unknown,
        Meta::List(list) => {
            let Ok(args) = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            else {
                return Cfg::Unknown;
            };
            let values: Vec<Cfg> = args.iter().map(eval_cfg).collect();
            if list.path.is_ident("not") {
                match values.as_slice() {
                    [Cfg::True] => Cfg::False,
                    [Cfg::False] => Cfg::True,
                    _ => Cfg::Unknown,
                }
            } else if list.path.is_ident("all") {
                if values.contains(&Cfg::False) {
                    Cfg::False
                } else if values.iter().all(|v| *v == Cfg::True) {
                    Cfg::True
                } else {
                    Cfg::Unknown
                }
            } else if list.path.is_ident("any") {
                if values.contains(&Cfg::True) {
                    Cfg::True
                } else if values.iter().all(|v| *v == Cfg::False) {
                    Cfg::False
                } else {
                    Cfg::Unknown
                }
            } else {
                Cfg::Unknown
            }
        }
    }
}

/// Whether attributes keep an item out of every non-test build: `#[test]`, or a `cfg`
/// that is false when `test` is.
fn test_only(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        if attr.path().is_ident("test") {
            return true;
        }
        if !attr.path().is_ident("cfg") {
            return false;
        }
        match attr.parse_args::<Meta>() {
            Ok(meta) => eval_cfg(&meta) == Cfg::False,
            Err(_) => false,
        }
    })
}

/// Whether a module declaration has a `#[path = "..."]` attribute.
fn path_attr(attrs: &[Attribute]) -> Option<&Attribute> {
    attrs.iter().find(|attr| attr.path().is_ident("path"))
}

/// Walks one module's code (and its inline modules), recording the paths it uses.
struct Collector<'g> {
    graph: &'g mut Graph,
    current: usize,
    file: &'g str,
}

impl Collector<'_> {
    fn site(&self, line: usize, what: String) -> Site {
        Site {
            file: self.file.to_owned(),
            line,
            what,
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &UseTree) {
        let record = |this: &mut Self, segments: &[String], line: usize| {
            let site = this.site(line, format!("use {}", segments.join("::")));
            this.graph.add_use(this.current, segments, true, site);
        };
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            UseTree::Name(n) => {
                let line = n.ident.span().start().line;
                if n.ident == "self" {
                    let segments = prefix.clone();
                    record(self, &segments, line);
                } else {
                    prefix.push(n.ident.to_string());
                    let segments = prefix.clone();
                    record(self, &segments, line);
                    prefix.pop();
                }
            }
            UseTree::Rename(r) => {
                let line = r.ident.span().start().line;
                let mut segments = prefix.clone();
                if r.ident != "self" {
                    segments.push(r.ident.to_string());
                }
                record(self, &segments, line);
            }
            UseTree::Glob(g) => {
                let mut segments = prefix.clone();
                segments.push("*".to_owned());
                let line = g.star_token.span.start().line;
                // The glob's module is its prefix: `*` names no module.
                let site = self.site(line, format!("use {}", segments.join("::")));
                let from = self.current;
                self.graph.add_use(from, prefix, true, site);
            }
            UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// Paths in a macro's arguments, which the parser leaves as tokens.
    fn macro_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let is_colons = |i: usize| {
            matches!((tokens.get(i), tokens.get(i + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
        };
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => {
                    self.macro_tokens(group.stream());
                    i += 1;
                }
                TokenTree::Ident(first) => {
                    let after_colons = i >= 2 && is_colons(i - 2);
                    let after_dot = i >= 1
                        && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == '.');
                    let mut segments = vec![first.to_string()];
                    let line = first.span().start().line;
                    let mut j = i + 1;
                    while is_colons(j) {
                        match tokens.get(j + 2) {
                            Some(TokenTree::Ident(next)) => {
                                segments.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    if !after_colons && !after_dot {
                        let site = self.site(line, format!("path {}", segments.join("::")));
                        self.graph.add_use(self.current, &segments, false, site);
                    }
                    i = j;
                }
                TokenTree::Punct(_) | TokenTree::Literal(_) => i += 1,
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast Item) {
        let attrs = match item {
            Item::Const(i) => &i.attrs,
            Item::Enum(i) => &i.attrs,
            Item::ExternCrate(i) => &i.attrs,
            Item::Fn(i) => &i.attrs,
            Item::ForeignMod(i) => &i.attrs,
            Item::Impl(i) => &i.attrs,
            Item::Macro(i) => &i.attrs,
            Item::Mod(i) => &i.attrs,
            Item::Static(i) => &i.attrs,
            Item::Struct(i) => &i.attrs,
            Item::Trait(i) => &i.attrs,
            Item::TraitAlias(i) => &i.attrs,
            Item::Type(i) => &i.attrs,
            Item::Union(i) => &i.attrs,
            Item::Use(i) => &i.attrs,
            _ => return visit::visit_item(self, item),
        };
        if !test_only(attrs) {
            visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        // `mod x;` is ownership, not a use; the file is walked as its own module.
        let Some((_, items)) = &item.content else {
            return;
        };
        let child = self.graph.modules[self.current]
            .children
            .get(&item.ident.to_string())
            .copied();
        // A module inside a function body is not in the tree: its code counts as the
        // enclosing module's.
        let outer = self.current;
        self.current = child.unwrap_or(outer);
        for item in items {
            self.visit_item(item);
        }
        self.current = outer;
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if item.leading_colon.is_none() {
            self.use_tree(&mut Vec::new(), &item.tree);
        }
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => return visit::visit_impl_item(self, item),
        };
        if !test_only(attrs) {
            visit::visit_impl_item(self, item);
        }
    }

    fn visit_trait_item(&mut self, item: &'ast syn::TraitItem) {
        let attrs = match item {
            syn::TraitItem::Const(i) => &i.attrs,
            syn::TraitItem::Fn(i) => &i.attrs,
            syn::TraitItem::Type(i) => &i.attrs,
            syn::TraitItem::Macro(i) => &i.attrs,
            _ => return visit::visit_trait_item(self, item),
        };
        if !test_only(attrs) {
            visit::visit_trait_item(self, item);
        }
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if !test_only(&local.attrs) {
            visit::visit_local(self, local);
        }
    }

    fn visit_field(&mut self, field: &'ast syn::Field) {
        if !test_only(&field.attrs) {
            visit::visit_field(self, field);
        }
    }

    fn visit_variant(&mut self, variant: &'ast syn::Variant) {
        if !test_only(&variant.attrs) {
            visit::visit_variant(self, variant);
        }
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        if !test_only(&arm.attrs) {
            visit::visit_arm(self, arm);
        }
    }

    // `pub(crate)`, `pub(super)`, `pub(in crate::x)` say who may see an item, not what
    // it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
            if let Some(first) = path.segments.first() {
                let line = first.ident.span().start().line;
                let site = self.site(line, format!("path {}", segments.join("::")));
                self.graph.add_use(self.current, &segments, false, site);
            }
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.macro_tokens(mac.tokens.clone());
    }
}

fn assert_acyclic(krate: &str, dir: &str) {
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join("src/lib.rs");
    let read = |path: &Path| std::fs::read_to_string(path).ok();
    let graph = Graph::build(&lib, &read);
    // A loader that found no modules or no uses would pass vacuously.
    assert!(
        graph.modules.len() > 2 && graph.edges.len() > 2,
        "{krate}: only {} modules and {} uses found from {}",
        graph.modules.len(),
        graph.edges.len(),
        lib.display()
    );
    if let Some(report) = graph.report(krate) {
        panic!("{report}");
    }
}

#[test]
fn vnc_modules_form_layers() {
    assert_acyclic("darts-vnc", "vnc");
}

#[test]
fn proxy_modules_form_layers() {
    assert_acyclic("darts-proxy", "proxy");
}

// The checker itself, on small crates held in memory.
#[path = "module_layers/checker.rs"]
mod checker;
