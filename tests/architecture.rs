//! The architecture, enforced: the pure crates under `crates/` stay pure, and no crate has an
//! import cycle between its modules.
//!
//! * Every package under `crates/` is a pure part. Its normal dependency tree (for this host)
//!   holds none of the runtime, kernel, socket or API crates in [`FORBIDDEN`] and not the edge
//!   crate, and its non-test code uses no process-level I/O of std ([`FORBIDDEN_STD`]): no files,
//!   sockets, processes, environment or clocks (time is passed in).
//! * Every crate (pure or edge): for each module, the graph between its child modules (an edge
//!   when anything under one child names anything under another) has no cycle. References
//!   between a module and its own ancestors (`super::`, re-exports of children) are structure,
//!   not dependencies, and are not counted.
//! * Every pure crate's root states its contract in a `//!` header.
//!
//! The checks read the sources and `cargo tree`; they fail naming the crate, the module and the
//! file that broke the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates a pure part must not depend on, directly or through another crate.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "kube",
    "kube-client",
    "kube-runtime",
    "kube-core",
    "k8s-openapi",
    "rtnetlink",
    "netlink-packet-route",
    "netlink-packet-core",
    "netlink-proto",
    "netlink-sys",
    "axum",
    "hyper",
    "mio",
    "socket2",
    "nix",
    "etcd-client",
    "tonic",
    "libc",
    "prometheus",
    "starling",
];

/// Paths of std that do I/O or read a clock; a pure part takes their results as values.
const FORBIDDEN_STD: &[&str] = &[
    "std::fs",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::net::UdpSocket",
    "std::os::unix::net",
    "std::process",
    "std::env",
    "std::thread::sleep",
    "Instant::now",
    "SystemTime::now",
    "Utc::now",
    "Local::now",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (package name, directory) of every pure crate.
fn pure_crates() -> Vec<(String, PathBuf)> {
    let mut crates = Vec::new();
    let entries = std::fs::read_dir(root().join("crates")).expect("crates/ is readable");
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once('=')?;
                (key.trim() == "name").then(|| value.trim().trim_matches('"').to_string())
            })
            .unwrap_or_else(|| panic!("{}: no package name", manifest.display()));
        crates.push((name, entry.path()));
    }
    crates.sort();
    assert!(
        crates.len() >= 5,
        "expected the pure crates under crates/, found {crates:?}"
    );
    crates
}

/// Names of the crates in the normal (non-dev, non-build) dependency tree of `package`, with
/// the features a build of that package alone would enable.
fn dependency_names(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The rule itself, separate from the tree so that its failure can be tested.
fn forbidden_in(package: &str, dependencies: &BTreeSet<String>) -> Vec<String> {
    dependencies
        .iter()
        .filter(|name| {
            name.as_str() != package
                && (FORBIDDEN.contains(&name.as_str()) || name.starts_with("netlink-"))
        })
        .cloned()
        .collect()
}

#[test]
fn pure_crates_depend_on_no_runtime_kernel_or_api_crate() {
    let mut problems = Vec::new();
    for (package, _) in pure_crates() {
        let dependencies = dependency_names(&package);
        assert!(
            dependencies.contains(&package),
            "cargo tree did not list {package} itself: {dependencies:?}"
        );
        for name in forbidden_in(&package, &dependencies) {
            problems.push(format!(
                "{package} depends on {name} (see `cargo tree -p {package} -i {name}`)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "pure crates with forbidden dependencies:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_dependency_rule_catches_a_violation() {
    let tree: BTreeSet<String> = ["starling-model", "serde", "tokio", "netlink-sys"]
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        forbidden_in("starling-model", &tree),
        ["netlink-sys", "tokio"]
    );
}

fn rust_files(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The source without comments and without `#[cfg(test)]` modules (tests may use the file
/// system or a clock; shipped code may not).
fn shipped_code(source: &str) -> String {
    let without_comments: Vec<&str> = source
        .lines()
        .map(|line| match line.find("//") {
            Some(position) => &line[..position],
            None => line,
        })
        .collect();
    let text = without_comments.join("\n");
    match text.find("#[cfg(test)]") {
        Some(position) => text[..position].to_string(),
        None => text,
    }
}

fn std_io_uses(source: &str) -> Vec<&'static str> {
    let code = shipped_code(source);
    FORBIDDEN_STD
        .iter()
        .copied()
        .filter(|path| code.contains(path))
        .collect()
}

#[test]
fn pure_crates_do_no_io_and_read_no_clock() {
    let mut problems = Vec::new();
    for (package, directory) in pure_crates() {
        for file in rust_files(&directory.join("src")) {
            let source = std::fs::read_to_string(&file).expect("source is readable");
            for path in std_io_uses(&source) {
                problems.push(format!("{package}: {} uses {path}", file.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "I/O in pure crates:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_io_rule_catches_a_violation_but_not_in_tests_or_comments() {
    assert_eq!(
        std_io_uses("// std::fs is fine in a comment\nfn f() { std::fs::read(\"x\"); }"),
        ["std::fs"]
    );
    assert!(
        std_io_uses("fn f() {}\n#[cfg(test)]\nmod tests { fn g() { Instant::now(); } }").is_empty()
    );
}

#[test]
fn pure_crates_state_their_contract() {
    for (package, directory) in pure_crates() {
        let lib = std::fs::read_to_string(directory.join("src/lib.rs")).expect("lib.rs");
        let header: Vec<&str> = lib
            .lines()
            .take_while(|line| line.starts_with("//!"))
            .collect();
        assert!(
            header.len() >= 3,
            "{package}: src/lib.rs must open with a //! header stating the crate's contract"
        );
    }
}

/// A crate's module tree: module path (`a::b`) → the file defining it.
fn module_files(source_root: &Path, root_file: &str) -> BTreeMap<Vec<String>, PathBuf> {
    let mut modules = BTreeMap::new();
    for file in rust_files(source_root) {
        let relative = file.strip_prefix(source_root).expect("under the root");
        let mut segments: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().to_string())
            .collect();
        let last = segments.pop().expect("a file name");
        if last == root_file && segments.is_empty() {
            modules.insert(Vec::new(), file.clone());
            continue;
        }
        if segments.is_empty() && (last == "main.rs" || last == "lib.rs") {
            continue;
        }
        if last != "mod.rs" {
            segments.push(last.trim_end_matches(".rs").to_string());
        }
        modules.insert(segments, file.clone());
    }
    modules
}

/// Expands `a::{b, c::{d}}` into `a::b`, `a::c::d`.
fn expand_group(text: &str) -> Vec<String> {
    let text = text.trim();
    let Some(open) = text.find('{') else {
        return vec![text.to_string()];
    };
    let close = text
        .rfind('}')
        .filter(|close| *close > open)
        .unwrap_or(text.len());
    let prefix = &text[..open];
    let inner = &text[open + 1..close];
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (index, character) in inner.char_indices() {
        match character {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .flat_map(|item| {
            expand_group(item)
                .into_iter()
                .map(|rest| format!("{prefix}{rest}"))
        })
        .collect()
}

/// Every path this source names that starts with `crate::`, `super::` or `self::`, resolved to
/// segments from the crate root.
fn referenced_paths(source: &str, module: &[String]) -> Vec<Vec<String>> {
    let code = shipped_code(source);
    let mut paths = Vec::new();
    let mut texts = Vec::new();
    // `use` statements first (they may group), then every other qualified path.
    let mut rest = code.as_str();
    while let Some(position) = rest.find("use ") {
        let statement = &rest[position + 4..];
        let end = statement.find(';').unwrap_or(statement.len());
        let preceded_by_word = position > 0
            && rest[..position]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let local = ["crate::", "super::", "self::", "$crate::"]
            .iter()
            .any(|start| statement.starts_with(start));
        if !preceded_by_word && local {
            texts.extend(expand_group(&statement[..end]));
        }
        rest = &statement[end..];
    }
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    for (index, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        let before = code[..index].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let end = code[index..]
            .find(|c: char| !word(c))
            .map_or(code.len(), |offset| index + offset);
        texts.push(code[index..end].to_string());
    }
    for text in texts {
        let text = text.split(" as ").next().unwrap_or("").trim().to_string();
        let segments: Vec<&str> = text.split("::").filter(|s| !s.is_empty()).collect();
        let Some(first) = segments.first() else {
            continue;
        };
        let mut resolved: Vec<String> = match *first {
            "crate" | "$crate" => Vec::new(),
            "self" => module.to_vec(),
            "super" => module.to_vec(),
            _ => continue,
        };
        let mut index = 1;
        if *first == "super" {
            resolved.pop();
            while segments.get(index) == Some(&"super") {
                resolved.pop();
                index += 1;
            }
        }
        resolved.extend(segments[index..].iter().map(|s| s.to_string()));
        paths.push(resolved);
    }
    paths
}

/// Cycles among sibling modules, described for a failure message.
fn module_cycles(crate_name: &str, source_root: &Path, root_file: &str) -> Vec<String> {
    let modules = module_files(source_root, root_file);
    // parent module -> (child -> child) edges, with an example file per edge
    let mut graphs: BTreeMap<Vec<String>, BTreeMap<(String, String), PathBuf>> = BTreeMap::new();
    for (module, file) in &modules {
        let source = std::fs::read_to_string(file).expect("source is readable");
        for path in referenced_paths(&source, module) {
            // The longest prefix of the path that is a module of this crate.
            let target = (0..=path.len())
                .rev()
                .map(|length| path[..length].to_vec())
                .find(|prefix| modules.contains_key(prefix))
                .unwrap_or_default();
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // self, an ancestor or a descendant
            }
            graphs
                .entry(module[..common].to_vec())
                .or_default()
                .entry((module[common].clone(), target[common].clone()))
                .or_insert_with(|| file.clone());
        }
    }
    let mut problems = Vec::new();
    for (parent, edges) in graphs {
        let mut adjacency: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (from, to) in edges.keys() {
            adjacency.entry(from).or_default().insert(to);
        }
        for cycle in cycles(&adjacency) {
            let scope = if parent.is_empty() {
                crate_name.to_string()
            } else {
                format!("{crate_name}::{}", parent.join("::"))
            };
            let mut described = Vec::new();
            for pair in cycle.windows(2) {
                let file = &edges[&(pair[0].to_string(), pair[1].to_string())];
                described.push(format!("{} -> {} ({})", pair[0], pair[1], file.display()));
            }
            problems.push(format!("cycle in {scope}: {}", described.join(", ")));
        }
    }
    problems
}

/// One cycle per strongly connected component of more than one node, as a closed walk.
fn cycles<'a>(adjacency: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    let nodes: BTreeSet<&str> = adjacency
        .iter()
        .flat_map(|(from, tos)| std::iter::once(*from).chain(tos.iter().copied()))
        .collect();
    let reaches = |from: &'a str| -> BTreeSet<&'a str> {
        let mut seen = BTreeSet::new();
        let mut pending = vec![from];
        while let Some(node) = pending.pop() {
            for next in adjacency.get(node).into_iter().flatten() {
                if seen.insert(*next) {
                    pending.push(next);
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&str, BTreeSet<&str>> = nodes.iter().map(|n| (*n, reaches(n))).collect();
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    let mut found = Vec::new();
    for node in &nodes {
        if reported.contains(node) || !reach[node].contains(node) {
            continue;
        }
        let component: BTreeSet<&str> = reach[node]
            .iter()
            .copied()
            .filter(|other| reach[other].contains(node))
            .collect();
        reported.extend(component.iter().copied());
        // A shortest walk node -> ... -> node inside the component (breadth first).
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([*node]);
        'search: while let Some(current) = queue.pop_front() {
            for next in adjacency.get(current).into_iter().flatten() {
                if !component.contains(next) {
                    continue;
                }
                if *next == *node {
                    previous.insert("", current);
                    break 'search;
                }
                if !previous.contains_key(next) {
                    previous.insert(next, current);
                    queue.push_back(next);
                }
            }
        }
        let mut walk = vec![*node];
        let mut current = previous[""];
        while current != *node {
            walk.push(current);
            current = previous[current];
        }
        walk.push(*node);
        walk.reverse();
        found.push(walk);
    }
    found
}

#[test]
fn no_crate_has_an_import_cycle_between_modules() {
    let mut problems = module_cycles("starling", &root().join("src"), "lib.rs");
    for (package, directory) in pure_crates() {
        problems.extend(module_cycles(&package, &directory.join("src"), "lib.rs"));
    }
    assert!(
        problems.is_empty(),
        "import cycles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_cycle_rule_catches_a_cycle() {
    let directory =
        std::env::temp_dir().join(format!("starling-architecture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(directory.join("a")).unwrap();
    std::fs::write(directory.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(
        directory.join("a/mod.rs"),
        "pub mod inner;\npub struct A;\n",
    )
    .unwrap();
    std::fs::write(
        directory.join("a/inner.rs"),
        "use crate::b::{B, other::C};\n",
    )
    .unwrap();
    std::fs::write(directory.join("b.rs"), "use super::a::A;\npub struct B;\n").unwrap();
    let problems = module_cycles("example", &directory, "lib.rs");
    std::fs::remove_dir_all(&directory).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("cycle in example: a -> b"),
        "{problems:?}"
    );
}
