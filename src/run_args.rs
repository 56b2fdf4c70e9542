//! Flags of `starling run`: each one stands for a calico-node environment variable and is
//! written over it before the environment is parsed, so a flag always wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Flags of `starling run`; each overrides the environment variable named in its help.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Node name (NODENAME).
    #[arg(long)]
    pub nodename: Option<String>,
    /// kubernetes or etcdv3 (DATASTORE_TYPE).
    #[arg(long, value_name = "TYPE")]
    pub datastore_type: Option<String>,
    /// Comma-separated etcd URLs (ETCD_ENDPOINTS).
    #[arg(long, value_name = "URLS")]
    pub etcd_endpoints: Option<String>,
    /// Path of a kubeconfig file (KUBECONFIG); in-cluster configuration when absent.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// autodetect, none, an IPv4 address or address/prefix (IP).
    #[arg(long)]
    pub ip: Option<String>,
    /// autodetect, none, an IPv6 address or address/prefix (IP6).
    #[arg(long)]
    pub ip6: Option<String>,
    /// IPv4 autodetection method, e.g. interface=eth.* (IP_AUTODETECTION_METHOD).
    #[arg(long, value_name = "METHOD")]
    pub ip_autodetection_method: Option<String>,
    /// This node's AS number, plain or dotted (AS).
    #[arg(long = "as", value_name = "AS")]
    pub as_number: Option<String>,
    /// bird, vxlan or none (CALICO_NETWORKING_BACKEND).
    #[arg(long, value_name = "BACKEND")]
    pub networking_backend: Option<String>,
    /// Route protocol number of Starling's routes (STARLING_ROUTE_PROTOCOL, default 81).
    #[arg(long, value_name = "NUMBER")]
    pub route_protocol: Option<String>,
    /// Path of the control socket (STARLING_CONTROL_SOCKET).
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
}

impl RunArgs {
    /// Writes the given flags into the environment map under their variable names.
    pub fn overlay(&self, variables: &mut BTreeMap<String, String>) {
        let path = |value: &Option<PathBuf>| {
            value
                .as_deref()
                .map(Path::to_string_lossy)
                .map(String::from)
        };
        let pairs = [
            ("NODENAME", self.nodename.clone()),
            ("DATASTORE_TYPE", self.datastore_type.clone()),
            ("ETCD_ENDPOINTS", self.etcd_endpoints.clone()),
            ("KUBECONFIG", path(&self.kubeconfig)),
            ("IP", self.ip.clone()),
            ("IP6", self.ip6.clone()),
            (
                "IP_AUTODETECTION_METHOD",
                self.ip_autodetection_method.clone(),
            ),
            ("AS", self.as_number.clone()),
            ("CALICO_NETWORKING_BACKEND", self.networking_backend.clone()),
            ("STARLING_ROUTE_PROTOCOL", self.route_protocol.clone()),
            ("STARLING_CONTROL_SOCKET", path(&self.control_socket)),
        ];
        for (name, value) in pairs {
            if let Some(value) = value {
                variables.insert(name.to_string(), value);
            }
        }
    }
}

/// The node name as calico-node resolves it, reading the nodename file and the kernel's UTS
/// host name (what Go's `os.Hostname` returns on Linux).
pub fn node_name_from_system(source: &starling_model::config::NodeNameSource) -> String {
    let contents = std::fs::read_to_string(&source.nodename_file).ok();
    let os_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    source.resolve(contents.as_deref(), &os_hostname)
}
