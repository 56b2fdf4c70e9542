//! `starling cni install` as the DaemonSet's init container runs it, against temporary
//! directories; and the installed copy answering as a CNI plugin.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_starling");

/// The `cni_network_config` of deploy/daemonset.yaml, as the ConfigMap delivers it.
fn configmap_network_config() -> String {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/daemonset.yaml"
    ))
    .unwrap();
    let start = manifest.find("cni_network_config: |-").unwrap();
    manifest[start..]
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("    ") || line.trim().is_empty())
        .map(|line| line.trim_start_matches("    "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn installs_binary_and_config() {
    let root = tempfile::tempdir().unwrap();
    let bin_dir = root.path().join("opt/cni/bin");
    let net_dir = root.path().join("etc/cni/net.d");
    let output = Command::new(BINARY)
        .args(["cni", "install"])
        .env("CNI_BIN_DIR", &bin_dir)
        .env("CNI_NET_DIR", &net_dir)
        .env("CNI_CONF_NAME", "10-starling.conflist")
        .env("CNI_NETWORK_CONFIG", configmap_network_config())
        .env("CNI_MTU", "0")
        .env_remove("CNI_COMMAND")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let installed = bin_dir.join("starling");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(BINARY).unwrap()
    );
    let mode = std::fs::metadata(&installed).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    // No temporary files are left next to the targets.
    for directory in [&bin_dir, &net_dir] {
        let names: Vec<_> = std::fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    let conflist: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(net_dir.join("10-starling.conflist")).unwrap(),
    )
    .unwrap();
    assert_eq!(conflist["plugins"][0]["type"], "starling");
    assert_eq!(conflist["plugins"][0]["mtu"], 0);
    assert_eq!(
        conflist["plugins"][0]["kubernetes"]["kubeconfig"],
        "/etc/cni/net.d/starling-kubeconfig"
    );
    assert_eq!(conflist["plugins"][1]["type"], "portmap");

    // The installed copy is the plugin: VERSION through the environment, like a runtime.
    let mut child = Command::new(&installed)
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(br#"{"cniVersion":"1.0.0"}"#)
            .unwrap();
    }
    let answer = child.wait_with_output().unwrap();
    assert!(answer.status.success());
    let answer: serde_json::Value = serde_json::from_slice(&answer.stdout).unwrap();
    assert_eq!(answer["cniVersion"], "1.0.0");

    // The plugin accepts the installed config (a STATUS without a daemon is code 50, not a
    // config error).
    let mut single: serde_json::Value = conflist["plugins"][0].clone();
    single["name"] = conflist["name"].clone();
    single["cniVersion"] = "1.1.0".into();
    let mut child = Command::new(&installed)
        .env("CNI_COMMAND", "STATUS")
        .env("STARLING_CONTROL_SOCKET", root.path().join("absent.sock"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(single.to_string().as_bytes())
            .unwrap();
    }
    let status = child.wait_with_output().unwrap();
    assert!(!status.status.success());
    let error: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(error["code"], 50, "{error}");
}

#[test]
fn broken_config_installs_nothing() {
    let root = tempfile::tempdir().unwrap();
    let bin_dir = root.path().join("bin");
    let net_dir = root.path().join("net.d");
    let output = Command::new(BINARY)
        .args(["cni", "install"])
        .env("CNI_BIN_DIR", &bin_dir)
        .env("CNI_NET_DIR", &net_dir)
        .env("CNI_NETWORK_CONFIG", r#"{"name": "x", "mtu": __CNI_MTU__"#)
        .env_remove("CNI_COMMAND")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    assert!(!bin_dir.join("starling").exists());
    assert!(!net_dir.exists());
}
