//! Lab pods: a network namespace per pod, wired by running the `starling` binary as the CNI
//! plugin inside the node's namespace, exactly as a container runtime would.
//!
//! Two kinds of pods share this path: the numbered pods `lab up` makes (`default/node<i>-p<k>`,
//! namespace `stl-<lab>-node<i>-p<k>`) and the named ones of `lab pod add` (`<ns>/<name>`,
//! namespace `stl-<lab>-w-<ns>.<name>`: DNS labels have no dot, so no two pods collide).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::daemons::NodeFiles;
use super::serve::ServePort;
use super::topology::{ip, node_name, LabNames};

/// The Kubernetes namespace of the pods `lab up` makes.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One pod of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPod {
    pub node: usize,
    /// The pod's number on its node (`lab up` pods; 0 for named pods).
    pub index: usize,
    /// The pod's network namespace (`ip netns` name).
    pub namespace: String,
    pub address: Option<IpAddr>,
    /// The pod's Kubernetes namespace.
    #[serde(default = "default_namespace")]
    pub pod_namespace: String,
    /// The pod's name when it was given one (`lab pod add`); else `node<i>-p<k>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The container ports it serves (`--serve`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServePort>,
    /// The `starling lab serve` process inside the pod, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_pid: Option<u32>,
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_string()
}

impl LabPod {
    /// A pod of `lab up`, not yet wired.
    pub fn numbered(names: &LabNames, node: usize, index: usize) -> LabPod {
        LabPod {
            node,
            index,
            namespace: names.pod_ns(node, index),
            address: None,
            pod_namespace: default_namespace(),
            pod_name: None,
            labels: BTreeMap::new(),
            service_account: None,
            ports: Vec::new(),
            server_pid: None,
        }
    }

    /// A named pod (`lab pod add`), not yet wired.
    pub fn named(names: &LabNames, node: usize, pod_namespace: &str, name: &str) -> LabPod {
        LabPod {
            namespace: format!("{}w-{pod_namespace}.{name}", names.prefix()),
            pod_namespace: pod_namespace.to_string(),
            pod_name: Some(name.to_string()),
            ..LabPod::numbered(names, node, 0)
        }
    }

    /// The pod's name (without namespace).
    pub fn name(&self) -> String {
        match &self.pod_name {
            Some(name) => name.clone(),
            None => format!("{}-p{}", node_name(self.node), self.index),
        }
    }

    /// `<namespace>/<name>`.
    pub fn qualified(&self) -> String {
        format!("{}/{}", self.pod_namespace, self.name())
    }

    pub fn container_id(&self) -> String {
        match &self.pod_name {
            Some(name) => format!("lab-{}.{name}", self.pod_namespace),
            None => format!("lab-{}", self.name()),
        }
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
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
                pod.pod_namespace,
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
            pod.qualified(),
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(stdout)
}

/// Creates a `lab up` pod's namespace and runs CNI ADD; returns the pod with its address.
pub fn add(
    names: &LabNames,
    state_dir: &Path,
    binary: &Path,
    node: usize,
    index: usize,
) -> Result<LabPod> {
    wire(
        names,
        state_dir,
        binary,
        LabPod::numbered(names, node, index),
    )
}

/// Creates `pod`'s namespace and runs CNI ADD; returns the pod with its address. On failure
/// the namespace is removed again.
pub fn wire(names: &LabNames, state_dir: &Path, binary: &Path, mut pod: LabPod) -> Result<LabPod> {
    ip(&["netns", "add", &pod.namespace])?;
    let wired = (|| {
        ip(&["-n", &pod.namespace, "link", "set", "lo", "up"])?;
        let result = cni(names, state_dir, binary, &pod, "ADD")?;
        let json: serde_json::Value =
            serde_json::from_str(&result).context("reading the CNI result")?;
        json["ips"][0]["address"]
            .as_str()
            .and_then(|cidr| cidr.split('/').next())
            .and_then(|text| text.parse::<IpAddr>().ok())
            .with_context(|| {
                format!(
                    "the CNI result for {} has no address: {result}",
                    pod.qualified()
                )
            })
    })();
    match wired {
        Ok(address) => {
            pod.address = Some(address);
            Ok(pod)
        }
        Err(error) => {
            let _ = ip(&["netns", "delete", &pod.namespace]);
            Err(error)
        }
    }
}

/// Runs CNI DEL (best effort) and deletes the pod's namespace.
pub fn delete(names: &LabNames, state_dir: &Path, binary: &Path, pod: &LabPod) {
    if let Err(err) = cni(names, state_dir, binary, pod, "DEL") {
        tracing::warn!(%err, "CNI DEL failed");
    }
    let _ = ip(&["netns", "delete", &pod.namespace]);
}
