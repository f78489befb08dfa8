//! The data plane's modules import each other one way. Every file under `data-plane/src` is read
//! as text, its `crate::…` paths (in `use` items and inline) are taken as edges between top-level
//! modules, and the test fails on
//! - an edge against the layer order protocol → client → engine → hub → cluster → node →
//!   session → transport (`api/` sits beside the session, `grpc_api/` beside the transport and
//!   above `api/`, whose executor it calls): a module may use the layers below it only;
//! - a cycle among any of the crate's top-level modules;
//! - an allow-listed edge that no longer exists.
//!
//! Each offending edge is printed with the file and line of every use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: a module may use modules of a lower rank only.
const LAYERS: &[(&str, u32)] = &[
    ("protocol", 0),
    ("client", 1),
    ("engine", 2),
    ("hub", 3),
    ("cluster", 4),
    ("node", 5),
    ("session", 6),
    ("api", 6),
    ("transport", 7),
    ("grpc_api", 7),
];

/// Edges that close a cycle and are known, each with why it stays. Only edges outside the
/// layered modules may be listed. Empty: `webhooks/` and `user_status/` read the node that owns
/// them through `node_view::NodeView`, not by importing it.
const ALLOWED: &[(&str, &str, &str)] = &[];

/// Where one module uses another: `file:line` of each use.
type Edges = BTreeMap<(String, String), Vec<String>>;

#[test]
fn data_plane_modules_import_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = module_edges(&src);
    assert!(
        edges.len() > 20,
        "the scan found only {} edges: it no longer reads the sources",
        edges.len()
    );
    let mut problems = Vec::new();

    let rank: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    for ((from, to), uses) in &edges {
        if let (Some(a), Some(b)) = (rank.get(from.as_str()), rank.get(to.as_str())) {
            if b >= a {
                problems.push(format!("upward edge {from} -> {to}: {}", uses.join(", ")));
            }
        }
    }

    for (from, to, why) in ALLOWED {
        assert!(
            !rank.contains_key(from) || !rank.contains_key(to),
            "{from} -> {to} is between layered modules and may not be allowed ({why})"
        );
        if !edges.contains_key(&(from.to_string(), to.to_string())) {
            problems.push(format!(
                "allowed edge {from} -> {to} no longer exists: remove it"
            ));
        }
    }

    let kept: Edges = edges
        .iter()
        .filter(|((from, to), _)| !ALLOWED.iter().any(|(f, t, _)| f == from && t == to))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for cycle in cycles(&kept) {
        let mut lines = vec![format!("cycle among {}:", cycle.join(", "))];
        for ((from, to), uses) in &kept {
            if cycle.contains(from) && cycle.contains(to) {
                lines.push(format!("  {from} -> {to}: {}", uses.join(", ")));
            }
        }
        problems.push(lines.join("\n"));
    }

    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_reads_paths_and_skips_comments_and_strings() {
    let text = r##"
use crate::client::{Control, ServerRefresh};
use crate::{
    hub::Hub,
    engine::{self, Broker},
};
// use crate::session::Session;
/* crate::node::Node */
let s = "crate::cluster::X";
let r = r#"crate::transport"#;
let c = '"'; let n = crate::metrics::namespace_of(x);
let l: &'static str = crate::VERSION;
"##;
    let modules: BTreeSet<String> = ["client", "hub", "engine", "session", "node", "cluster"]
        .into_iter()
        .chain(["transport", "metrics"])
        .map(String::from)
        .collect();
    let found: Vec<(String, usize)> = crate_paths(&strip(text), &modules);
    let names: Vec<&str> = found.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["client", "hub", "engine", "metrics"]);
    assert_eq!(found[3].1, 11, "line of the inline path");
}

/// Edges between the top-level modules of the crate rooted at `src`.
fn module_edges(src: &Path) -> Edges {
    let files = rust_files(src);
    // Files included with `#[path = "…"]` belong to the module that includes them.
    let mut owner: BTreeMap<PathBuf, String> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        for target in path_attributes(&text) {
            let included = file.parent().expect("parent").join(target);
            owner.insert(included, top_module(src, file));
        }
    }
    let module_of = |file: &Path| {
        owner
            .get(file)
            .cloned()
            .unwrap_or_else(|| top_module(src, file))
    };
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(f))
        .filter(|m| m != "lib" && m != "main")
        .collect();

    let mut edges = Edges::new();
    for file in &files {
        let from = module_of(file);
        let text = std::fs::read_to_string(file).expect("read source");
        let shown = file
            .strip_prefix(src)
            .expect("under src")
            .display()
            .to_string();
        for (to, line) in crate_paths(&strip(&text), &modules) {
            if to != from {
                edges
                    .entry((from.clone(), to))
                    .or_default()
                    .push(format!("src/{shown}:{line}"));
            }
        }
    }
    edges
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// `client` for `src/client.rs` and `src/client/x.rs`.
fn top_module(src: &Path, file: &Path) -> String {
    let first = file
        .strip_prefix(src)
        .expect("under src")
        .components()
        .next()
        .expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

/// The targets of `#[path = "…"]` attributes.
fn path_attributes(text: &str) -> Vec<String> {
    text.match_indices("#[path")
        .filter_map(|(at, _)| {
            let rest = &text[at..];
            let open = rest.find('"')?;
            let close = rest[open + 1..].find('"')?;
            Some(rest[open + 1..open + 1 + close].to_string())
        })
        .collect()
}

/// The text with comments, string literals and character literals blanked out (newlines kept,
/// so line numbers hold).
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"') | Some('#'))
            && (i == 0
                || !is_ident(chars[i - 1])
                || (chars[i - 1] == 'b' && (i < 2 || !is_ident(chars[i - 2]))))
        {
            // A raw string: r"…", r#"…"#, br"…", …
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            let mut end = j + 1;
            while end < chars.len() {
                if chars[end] == '"' && (1..=hashes).all(|k| chars.get(end + k) == Some(&'#')) {
                    end += 1 + hashes;
                    break;
                }
                end += 1;
            }
            for &ch in &chars[i..end.min(chars.len())] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            if i < chars.len() {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime (left as it is).
            let end = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&ch| ch == '\'')
                    .map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for &ch in &chars[i..=end] {
                        blank(&mut out, ch);
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The top-level modules named by `crate::…` paths in stripped text, with the line of each.
fn crate_paths(text: &str, modules: &BTreeSet<String>) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        // `$crate::` and `other_crate::` are not this crate's root.
        if at > 0
            && text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| is_ident(c) || c == '$')
        {
            continue;
        }
        let line = text[..at].matches('\n').count() + 1;
        let rest = &text[at + "crate::".len()..];
        let names = if rest.trim_start().starts_with('{') {
            group_heads(rest.trim_start())
        } else {
            vec![ident(rest)]
        };
        for name in names {
            if modules.contains(&name) {
                found.push((name, line));
            }
        }
    }
    found
}

/// The leading identifier of `text`.
fn ident(text: &str) -> String {
    text.chars().take_while(|&c| is_ident(c)).collect()
}

/// The first identifier of each item of a `{a::b, c, d::{e, f}}` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => {
                depth += 1;
                item_start = depth == 1;
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => item_start = true,
            c if item_start && depth == 1 && is_ident(c) => {
                heads.push(ident(&group[i..]));
                item_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(edges: &Edges) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().push(to);
        graph.entry(to).or_default();
    }
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(v: &'a str, graph: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut State<'a>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in &graph[v] {
            if !s.index.contains_key(w) {
                visit(w, graph, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().expect("on the stack");
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(v, &graph, &mut state);
        }
    }
    state.out
}
