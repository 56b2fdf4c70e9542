//! The `Dockerfile` cannot be built here (its base images come from a registry), so these tests
//! read it: its build stage copies every path the release build reads, and its runtime stage
//! installs the packages `scripts/image.sh` puts in the image CI builds and runs.

use std::path::Path;

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The first path of every `COPY` instruction without `--from` (what comes from the checkout).
fn copied_sources(dockerfile: &str) -> Vec<String> {
    dockerfile
        .lines()
        .filter_map(|line| line.trim().strip_prefix("COPY "))
        .filter(|rest| !rest.starts_with("--from"))
        .flat_map(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            // All words but the destination.
            words[..words.len().saturating_sub(1)]
                .iter()
                .map(|w| w.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn build_stage_copies_every_path_the_build_reads() {
    let copied = copied_sources(&read("Dockerfile"));
    let manifest = read("Cargo.toml");
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    // `[lib] path`, `[[bin]] path`, `[[bench]]` targets (read by cargo even for `--bin`) and the
    // workspace members' directories.
    for line in manifest.lines() {
        if let Some(path) = line.trim().strip_prefix("path = \"") {
            let path = path.trim_end_matches('"');
            if !path.starts_with("crates/") {
                needed.push(path.split('/').next().unwrap_or(path).to_string());
            }
        }
        if line.trim().starts_with("[[bench]]") {
            needed.push("benches".to_string());
        }
        if line.trim().starts_with("members = [\"crates/") {
            needed.push("crates".to_string());
        }
    }
    needed.sort();
    needed.dedup();
    assert!(
        needed.contains(&"src".to_string()),
        "found no targets in Cargo.toml: {needed:?}"
    );
    assert!(
        needed.contains(&"crates".to_string()),
        "no workspace members found: {needed:?}"
    );
    let missing: Vec<&String> = needed.iter().filter(|n| !copied.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "the Dockerfile's build stage does not COPY {missing:?} (it copies {copied:?})"
    );
}

#[test]
fn runtime_stage_installs_what_the_ci_image_has() {
    let dockerfile = read("Dockerfile");
    let runtime = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .expect("the Dockerfile has a runtime stage");
    assert!(
        runtime.starts_with("debian:"),
        "runtime stage is not Debian: {runtime}"
    );
    let script = read("scripts/image.sh");
    let included = script
        .split("--include=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("scripts/image.sh passes --include= to mmdebstrap");
    for package in included.split(',') {
        assert!(
            runtime.contains(&format!(" {package}")),
            "scripts/image.sh installs {package} but the Dockerfile's runtime stage does not"
        );
    }
    assert!(runtime.contains("/usr/local/bin/starling"), "{runtime}");
    assert!(
        script.contains("/usr/local/bin/starling"),
        "image.sh puts the binary elsewhere"
    );
}
