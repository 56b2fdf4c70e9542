//! Lab pods: a network namespace per pod, wired by running the `starling` binary as the CNI
//! plugin inside the node's namespace, exactly as a container runtime would.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::daemons::NodeFiles;
use super::topology::{ip, node_name, LabNames};

/// One pod of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPod {
    pub node: usize,
    pub index: usize,
    pub namespace: String,
    pub address: Option<IpAddr>,
}

impl LabPod {
    pub fn name(&self) -> String {
        format!("{}-p{}", node_name(self.node), self.index)
    }
    pub fn container_id(&self) -> String {
        format!("lab-{}", self.name())
    }
}

const NETWORK_CONFIG: &str = r#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"starling","ipam":{"type":"starling-ipam"}}"#;

fn cni(
    names: &LabNames,
    state_dir: &Path,
    binary: &Path,
    pod: &LabPod,
    command: &str,
) -> Result<String> {
    let files = NodeFiles::new(state_dir, pod.node);
    let netns_path = crate::netns::path(&pod.namespace);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &names.node_ns(pod.node)])
        .arg(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", pod.container_id())
        .env("CNI_NETNS", &netns_path)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
                pod.name(),
                pod.container_id()
            ),
        )
        .env("STARLING_CONTROL_SOCKET", files.control_socket())
        .env("STARLING_MTU_FILE", files.mtu_file())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running the CNI plugin")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(NETWORK_CONFIG.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "CNI {command} for pod {} failed: {}{}",
            pod.name(),
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(stdout)
}

/// Creates the pod's namespace and runs CNI ADD; returns the pod with its address.
pub fn add(
    names: &LabNames,
    state_dir: &Path,
    binary: &Path,
    node: usize,
    index: usize,
) -> Result<LabPod> {
    let mut pod = LabPod {
        node,
        index,
        namespace: names.pod_ns(node, index),
        address: None,
    };
    ip(&["netns", "add", &pod.namespace])?;
    ip(&["-n", &pod.namespace, "link", "set", "lo", "up"])?;
    let result = cni(names, state_dir, binary, &pod, "ADD")?;
    let json: serde_json::Value =
        serde_json::from_str(&result).context("reading the CNI result")?;
    let address = json["ips"][0]["address"]
        .as_str()
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|text| text.parse().ok())
        .with_context(|| format!("the CNI result for {} has no address: {result}", pod.name()))?;
    pod.address = Some(address);
    Ok(pod)
}

/// Runs CNI DEL (best effort) and deletes the pod's namespace.
pub fn delete(names: &LabNames, state_dir: &Path, binary: &Path, pod: &LabPod) {
    if let Err(err) = cni(names, state_dir, binary, pod, "DEL") {
        tracing::warn!(%err, "CNI DEL failed");
    }
    let _ = ip(&["netns", "delete", &pod.namespace]);
}
