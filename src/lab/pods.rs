//! Lab pods: a network namespace per pod, wired by running the `starling` binary as the CNI
//! plugin inside the node's namespace, exactly as a container runtime would.
//!
//! Two kinds of pods share this path: the numbered pods `lab up` makes (`default/node<i>-p<k>`,
//! namespace `stl-<lab>-node<i>-p<k>`) and the named ones of `lab pod add` (`<ns>/<name>`,
//! namespace `stl-<lab>-w-<ns>.<name>`: DNS labels have no dot, so no two pods collide).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
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
    /// The pod's IPv6 address, in a dual-stack lab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_v6: Option<Ipv6Addr>,
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
    /// The pod's annotations (`lab pod add --annotation`), passed to the CNI plugin with the
    /// attachment, as an orchestrator does when the daemon has no Kubernetes API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
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
            address_v6: None,
            pod_namespace: default_namespace(),
            pod_name: None,
            labels: BTreeMap::new(),
            service_account: None,
            annotations: BTreeMap::new(),
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

    /// The pod's addresses, IPv4 first, comma-separated (empty before it is wired).
    pub fn addresses_text(&self) -> String {
        let mut addresses: Vec<String> = self.address.iter().map(ToString::to_string).collect();
        addresses.extend(self.address_v6.iter().map(ToString::to_string));
        addresses.join(",")
    }

    pub fn container_id(&self) -> String {
        match &self.pod_name {
            Some(name) => format!("lab-{}.{name}", self.pod_namespace),
            None => format!("lab-{}", self.name()),
        }
    }
}

/// Floating IPs are on (`feature_control.floating_ips`), so `--annotation
/// cni.projectcalico.org/floatingIPs=...` works as in a Calico cluster that enabled them.
const NETWORK_CONFIG: &str = r#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"starling","feature_control":{"floating_ips":true},"ipam":{"type":"starling-ipam"}}"#;
/// A dual-stack lab's: both families from IPAM, as Calico's manifests write it.
const NETWORK_CONFIG_DUAL_STACK: &str = r#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"starling","feature_control":{"floating_ips":true},"ipam":{"type":"starling-ipam","assign_ipv4":"true","assign_ipv6":"true"}}"#;

/// The network configuration `pod` is attached with: the lab's, plus the pod's annotations
/// under `args` → `cni.projectcalico.org/annotations` (the CNI conventions' per-attachment
/// arguments), the way the plugin learns them without a Kubernetes API.
fn attachment_config(config: &str, pod: &LabPod) -> Result<String> {
    if pod.annotations.is_empty() {
        return Ok(config.to_string());
    }
    let mut json: serde_json::Value =
        serde_json::from_str(config).context("reading the lab's CNI network configuration")?;
    json["args"] = serde_json::json!({"cni.projectcalico.org/annotations": pod.annotations});
    Ok(json.to_string())
}

/// Where `lab up` keeps the CNI network configuration every pod is wired with (the lab's
/// `/etc/cni/net.d`).
fn network_config_path(state_dir: &Path) -> PathBuf {
    state_dir.join("cni-network.json")
}

/// Writes the lab's CNI network configuration (`lab up`).
pub fn write_network_config(state_dir: &Path, ipv6: bool) -> Result<()> {
    let path = network_config_path(state_dir);
    let config = if ipv6 {
        NETWORK_CONFIG_DUAL_STACK
    } else {
        NETWORK_CONFIG
    };
    std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))
}

/// The lab's CNI network configuration; the IPv4-only one for a lab from before it was written.
fn network_config(state_dir: &Path) -> Result<String> {
    let path = network_config_path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok(NETWORK_CONFIG.to_string())
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// The pod's addresses in a CNI result: the first IPv4 and the first IPv6 one.
fn result_addresses(result: &serde_json::Value) -> (Option<IpAddr>, Option<Ipv6Addr>) {
    let addresses: Vec<IpAddr> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|cidr| cidr.split('/').next())
        .filter_map(|text| text.parse::<IpAddr>().ok())
        .collect();
    let v4 = addresses.iter().copied().find(IpAddr::is_ipv4);
    let v6 = addresses.iter().find_map(|address| match address {
        IpAddr::V6(v6) => Some(*v6),
        IpAddr::V4(_) => None,
    });
    (v4, v6)
}

fn cni(
    names: &LabNames,
    state_dir: &Path,
    binary: &Path,
    pod: &LabPod,
    command: &str,
) -> Result<String> {
    let files = NodeFiles::new(state_dir, pod.node);
    let config = attachment_config(&network_config(state_dir)?, pod)?;
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
        stdin.write_all(config.as_bytes())?;
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
        match result_addresses(&json) {
            (None, None) => bail!(
                "the CNI result for {} has no address: {result}",
                pod.qualified()
            ),
            addresses => Ok(addresses),
        }
    })();
    match wired {
        Ok((address, address_v6)) => {
            // An IPv6-only result keeps `address` filled: it is the pod's primary address.
            pod.address = address.or(address_v6.map(IpAddr::V6));
            pod.address_v6 = address_v6;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_addresses_take_one_of_each_family() {
        let result = serde_json::json!({"ips": [
            {"address": "fd00:10:244::5/128"},
            {"address": "10.244.1.5/32"},
            {"address": "10.244.1.6/32"},
        ]});
        assert_eq!(
            result_addresses(&result),
            (
                Some("10.244.1.5".parse().unwrap()),
                Some("fd00:10:244::5".parse().unwrap())
            )
        );
        let v4_only = serde_json::json!({"ips": [{"address": "10.244.1.5/32"}]});
        assert_eq!(
            result_addresses(&v4_only),
            (Some("10.244.1.5".parse().unwrap()), None)
        );
        assert_eq!(result_addresses(&serde_json::json!({})), (None, None));
    }

    #[test]
    fn the_dual_stack_network_config_asks_for_both_families() {
        let config = crate::cni::config::NetworkConfig::parse(NETWORK_CONFIG_DUAL_STACK.as_bytes());
        let ipam = config.expect("valid").ipam.expect("an ipam section");
        assert!(ipam.assign_ipv4 && ipam.assign_ipv6);
    }

    #[test]
    fn annotations_travel_in_the_attachment_args_with_floating_ips_enabled() {
        let names = LabNames::new("t");
        let mut pod = LabPod::named(&names, 1, "default", "a");
        assert_eq!(
            attachment_config(NETWORK_CONFIG, &pod).unwrap(),
            NETWORK_CONFIG
        );
        pod.annotations.insert(
            "cni.projectcalico.org/floatingIPs".to_string(),
            r#"["10.244.250.1"]"#.to_string(),
        );
        for base in [NETWORK_CONFIG, NETWORK_CONFIG_DUAL_STACK] {
            let text = attachment_config(base, &pod).unwrap();
            let config = crate::cni::config::NetworkConfig::parse(text.as_bytes()).expect("valid");
            assert!(config.feature_control.floating_ips);
            assert_eq!(config.pod_annotations().unwrap(), pod.annotations);
        }
    }
}
