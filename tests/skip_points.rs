//! CI must not pass by skipping. Every test under tests/ that cannot run here skips only through
//! tests/support/requirements.rs (`if !require_root("name") { return; }` and friends), which
//! fails in CI. This scans tests/ and rejects the other ways a test could skip: its own root or
//! program checks, its own skip messages, early returns on anything else (an environment
//! variable, a missing file, a helper returning None) and `#[ignore]`. The scanner tests itself
//! on small examples of each.

#[path = "support/requirements.rs"]
mod requirements;

use std::path::{Path, PathBuf};

/// Kernel features a test may skip for in CI too: a module the host kernel cannot have.
const KERNEL_SKIPS_ALLOWED_IN_CI: &[&str] = &["ipip"];

/// Files that may do what the scanner forbids: the helpers themselves and this scanner.
const EXEMPT: &[&str] = &["support/requirements.rs", "skip_points.rs"];

#[derive(Debug, PartialEq)]
struct Violation {
    line: usize,
    what: &'static str,
}

/// The `require…` functions tests/support/requirements.rs defines: the only calls a skip may
/// follow (a helper of one's own named `require_…` does not count).
fn requirement_names() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/requirements.rs");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    text.lines()
        .filter_map(|line| line.strip_prefix("pub fn "))
        .filter_map(|rest| rest.split('(').next())
        .filter(|name| name.starts_with("require"))
        .map(str::to_string)
        .collect()
}

/// Every violation in one source file (`text`), with 1-based line numbers; `allowed` names the
/// requirement functions.
fn violations(text: &str, allowed: &[String]) -> Vec<Violation> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let code = strip_line_comment(line);
        let mut flag = |what| {
            found.push(Violation {
                line: index + 1,
                what,
            })
        };
        if code.contains("geteuid") || code.contains(".is_root()") {
            flag("checks for root itself: use requirements::require_root");
        }
        if code.contains("command -v")
            || code.contains("\"which\"")
            || code.contains("fn have(")
            || code.contains("find_program(")
        {
            flag("looks for a program itself: use requirements::require_program");
        }
        if code.trim_start().starts_with("#[ignore") {
            flag("#[ignore] never runs in CI: make the test run or skip through requirements");
        }
        if code.contains("require_kernel_feature(") {
            let allowed = KERNEL_SKIPS_ALLOWED_IN_CI
                .iter()
                .any(|feature| window(&lines, index, 3).contains(&format!("\"{feature}\"")));
            if !allowed {
                flag("kernel feature not in KERNEL_SKIPS_ALLOWED_IN_CI (tests/skip_points.rs)");
            }
        }
        if prints_a_skip(&lines, index) {
            flag("prints its own skip message: skip through requirements instead");
        }
    }
    for body in test_bodies(&lines) {
        for index in body.clone() {
            let code = strip_line_comment(lines[index]).trim();
            if (code == "return;" || code.starts_with("return Ok("))
                && !guarded(&lines, index, allowed)
            {
                found.push(Violation {
                    line: index + 1,
                    what: "test returns early other than after `if !require_…(…)`",
                });
            }
        }
    }
    found.sort_by_key(|violation| violation.line);
    found
}

/// How many early returns in test bodies are skips through requirements (to prove the scan
/// sees the tests at all).
fn guarded_returns(text: &str, allowed: &[String]) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    test_bodies(&lines)
        .into_iter()
        .flatten()
        .filter(|&index| lines[index].trim() == "return;" && guarded(&lines, index, allowed))
        .count()
}

fn strip_line_comment(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        ""
    } else {
        line
    }
}

/// Lines `index..index + count` joined (for statements rustfmt splits).
fn window(lines: &[&str], index: usize, count: usize) -> String {
    lines[index..(index + count).min(lines.len())].join(" ")
}

/// A print macro starting on this line whose text mentions skipping.
fn prints_a_skip(lines: &[&str], index: usize) -> bool {
    let code = strip_line_comment(lines[index]);
    let Some(start) = ["println!(", "eprintln!(", "print!(", "eprint!("]
        .iter()
        .filter_map(|name| code.find(name))
        .min()
    else {
        return false;
    };
    let text = format!("{} {}", &code[start..], window(lines, index + 1, 3));
    let call = text.split(");").next().unwrap_or_default();
    call.to_lowercase().contains("skip")
}

/// Line ranges of the bodies of `#[test]` and `#[tokio::test…]` functions.
fn test_bodies(lines: &[&str]) -> Vec<std::ops::Range<usize>> {
    let mut bodies = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let trimmed = lines[index].trim_start();
        if !(trimmed.starts_with("#[test]") || trimmed.starts_with("#[tokio::test")) {
            index += 1;
            continue;
        }
        let Some(offset) = lines[index..]
            .iter()
            .position(|line| line.trim_start().contains("fn "))
        else {
            break;
        };
        let start = index + offset;
        let indent = indentation(lines[start]);
        let closing = format!("{}}}", " ".repeat(indent));
        let end = lines[start..]
            .iter()
            .position(|line| *line == closing)
            .map_or(lines.len(), |offset| start + offset);
        bodies.push(start + 1..end);
        index = end;
    }
    bodies
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Whether the `return` on `index` is the body of `if <only require_… calls> {`.
fn guarded(lines: &[&str], index: usize, allowed: &[String]) -> bool {
    let Some(block_indent) = indentation(lines[index]).checked_sub(4) else {
        return false;
    };
    // The block's opening line: the nearest earlier line at the block's indentation that starts
    // a statement (not a continuation such as `|| !require_…`, `{` or `}) {`).
    let Some(header) = (0..index).rev().find(|&line| {
        let text = lines[line];
        let trimmed = text.trim_start();
        indentation(text) == block_indent
            && !["{", "}", ")", "||", "&&"]
                .iter()
                .any(|start| trimmed.starts_with(start))
    }) else {
        return false;
    };
    let statement = lines[header..index].join(" ");
    let Some(condition) = statement.trim().strip_prefix("if ") else {
        return false;
    };
    let Some(condition) = condition.trim_end().strip_suffix('{') else {
        return false;
    };
    only_requirement_calls(condition, allowed)
}

/// `!require_x(…) || !require_y(…)`, nothing else (arguments may hold closures and strings).
fn only_requirement_calls(condition: &str, allowed: &[String]) -> bool {
    let mut rest = condition.trim();
    loop {
        let Some(call) = rest.strip_prefix('!') else {
            return false;
        };
        let Some(open) = call.find('(') else {
            return false;
        };
        if !allowed.iter().any(|name| name == call[..open].trim()) {
            return false;
        }
        let Some(close) = matching_paren(&call[open..]) else {
            return false;
        };
        rest = call[open + close + 1..].trim();
        if rest.is_empty() {
            return true;
        }
        let Some(next) = rest.strip_prefix("||") else {
            return false;
        };
        rest = next.trim();
    }
}

/// Offset of the `)` closing the `(` that `text` starts with, skipping string literals.
fn matching_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' => depth += 1,
            ')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(offset);
                }
            }
            _ => {}
        }
    }
    None
}

fn rust_files(directory: &Path, into: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(directory)
        .unwrap_or_else(|error| panic!("reading {}: {error}", directory.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|error| panic!("listing {}: {error}", directory.display()))
            .path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "fixtures") {
                rust_files(&path, into);
            }
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            into.push(path);
        }
    }
}

#[test]
fn tests_skip_only_through_requirements() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    assert!(
        files.len() > 40,
        "found only {} files under tests/",
        files.len()
    );
    let mut report = Vec::new();
    let mut skips = 0;
    let allowed = requirement_names();
    assert!(
        allowed.len() >= 4,
        "requirements.rs defines only {allowed:?}"
    );
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap_or(file).to_string_lossy();
        if EXEMPT.contains(&relative.as_ref()) {
            continue;
        }
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|error| panic!("reading {}: {error}", file.display()));
        skips += guarded_returns(&text, &allowed);
        for violation in violations(&text, &allowed) {
            report.push(format!(
                "tests/{relative}:{}: {}",
                violation.line, violation.what
            ));
        }
    }
    // About fifty tests skip through requirements today; far fewer means the scan is blind.
    assert!(skips > 40, "found only {skips} skips through requirements");
    assert!(
        report.is_empty(),
        "tests that can skip without failing in CI:\n{}",
        report.join("\n")
    );
}

/// The names the examples below may use, as requirements.rs defines them.
fn example_names() -> Vec<String> {
    [
        "require",
        "require_root",
        "require_program",
        "require_programs",
        "require_kernel_feature",
    ]
    .map(String::from)
    .to_vec()
}

fn lines_flagged(text: &str) -> Vec<usize> {
    violations(text, &example_names())
        .iter()
        .map(|v| v.line)
        .collect()
}

#[test]
fn scanner_accepts_skips_through_requirements() {
    let text = r#"
#[test]
fn one() {
    if !require_root("one") || !require_program("one", "bird") {
        return;
    }
    if !require_programs(
        "one",
        &["/usr/bin/etcd", "etcdctl"],
    ) {
        return;
    }
    if !require_root("one")
        || !require_program("one", "(odd) name")
    {
        return;
    }
    if !require_kernel_feature("one", "ipip", || {
        probe().map_err(|e| format!("{e}"))
    }) {
        return;
    }
    let value = helper(|| {
        return 5;
    });
}

fn helper_outside_tests() {
    if other() {
        return;
    }
}
"#;
    assert_eq!(violations(text, &example_names()), vec![]);
    assert_eq!(guarded_returns(text, &example_names()), 4);
}

#[test]
fn scanner_rejects_every_other_way_of_skipping() {
    let cases: &[(&str, usize)] = &[
        // An early return on an environment variable.
        (
            "#[test]\nfn a() {\n    if std::env::var(\"X\").is_err() {\n        return;\n    }\n}\n",
            4,
        ),
        // A helper that returns None, silently.
        (
            "#[tokio::test]\nasync fn a() {\n    let Some(x) = start().await else {\n        return;\n    };\n}\n",
            4,
        ),
        // A requirement mixed with another condition.
        (
            "#[test]\nfn a() {\n    if !require_root(\"a\") || !path.exists() {\n        return;\n    }\n}\n",
            4,
        ),
        // A skip through a requirement helper of one's own.
        (
            "#[test]\nfn a() {\n    if !require_vm(\"a\") {\n        return;\n    }\n}\n",
            4,
        ),
        // A root check of its own.
        ("fn root() -> bool {\n    nix::unistd::geteuid().is_root()\n}\n", 2),
        // Looking for a program itself.
        ("pub fn have(p: &str) -> bool {\n    true\n}\n", 1),
        (
            "fn a() {\n    Command::new(\"sh\").args([\"-c\", \"command -v bird\"]);\n}\n",
            2,
        ),
        // Its own skip message (split over lines by rustfmt).
        ("fn a() {\n    eprintln!(\n        \"SKIP: no etcd\"\n    );\n}\n", 2),
        // Ignored tests never run in CI.
        ("#[test]\n#[ignore]\nfn a() {}\n", 2),
        // A kernel feature that is not on the list.
        (
            "#[test]\nfn a() {\n    if !require_kernel_feature(\"a\", \"wireguard\", probe) {\n        return;\n    }\n}\n",
            3,
        ),
    ];
    for (text, line) in cases {
        assert!(
            lines_flagged(text).contains(line),
            "not flagged at line {line}: {:?}\n{text}",
            violations(text, &example_names())
        );
    }
}

#[test]
fn requirements_fail_in_ci_and_skip_elsewhere() {
    use requirements::{ci_value_means_ci, unmet_in};
    assert!(!ci_value_means_ci(None));
    for off in ["", " ", "0", "false", "FALSE"] {
        assert!(!ci_value_means_ci(Some(off)), "{off:?}");
    }
    for on in ["true", "1", "yes"] {
        assert!(ci_value_means_ci(Some(on)), "{on:?}");
    }
    assert!(!unmet_in(
        false,
        "skip_points_self_test",
        "needs nothing-at-all"
    ));
    let failure = std::panic::catch_unwind(|| {
        unmet_in(true, "skip_points_self_test", "needs nothing-at-all")
    })
    .expect_err("in CI an unmet requirement fails the test");
    let message = failure
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("skip_points_self_test") && message.contains("nothing-at-all"),
        "{message}"
    );
    assert!(requirements::find_program("sh").is_some());
    assert!(requirements::find_program("starling-no-such-program").is_none());
    assert!(requirements::find_program("/nonexistent/bin/etcd").is_none());
}
