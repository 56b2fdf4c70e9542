//! The CNI environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//! `CNI_ARGS` (`K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_INFRA_CONTAINER_ID`, `IP`) and
//! `CNI_PATH`.
//!
//! Parsing takes the variables as a lookup function so tests need no process environment. Which
//! variables are required depends on the command (the CNI specification): ADD and CHECK need the
//! container, namespace, interface and pod identity; DEL needs only the container and interface
//! because a runtime may call it after the namespace is gone. A missing or malformed variable is
//! error code 4 naming the variable.

use std::net::IpAddr;
use std::path::PathBuf;

use super::result::{code, CniError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
    Check,
    Version,
    Status,
    GarbageCollect,
}

impl CniCommand {
    pub fn parse(text: &str) -> Result<CniCommand, CniError> {
        match text {
            "ADD" => Ok(CniCommand::Add),
            "DEL" => Ok(CniCommand::Del),
            "CHECK" => Ok(CniCommand::Check),
            "VERSION" => Ok(CniCommand::Version),
            "STATUS" => Ok(CniCommand::Status),
            "GC" => Ok(CniCommand::GarbageCollect),
            other => Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"),
                "",
            )),
        }
    }
}

/// Pod identity and options from `CNI_ARGS` (`KEY=VALUE;KEY=VALUE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub infra_container_id: Option<String>,
    /// `IP=10.0.0.5,fd00::5`: addresses requested by the runtime (Calico honours this too).
    pub requested_addresses: Vec<IpAddr>,
}

impl CniArgs {
    /// Unknown keys are ignored whether or not `IgnoreUnknown` is given: runtimes always set it,
    /// and refusing a pod over an extra key helps nobody.
    pub fn parse(text: &str) -> Result<CniArgs, CniError> {
        let mut args = CniArgs::default();
        for pair in text.split(';').filter(|pair| !pair.trim().is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!("CNI_ARGS entry {pair:?} is not KEY=VALUE"),
                    "",
                ));
            };
            let value = value.trim();
            let non_empty = || Some(value.to_string()).filter(|value| !value.is_empty());
            match key.trim() {
                "K8S_POD_NAMESPACE" => args.pod_namespace = non_empty(),
                "K8S_POD_NAME" => args.pod_name = non_empty(),
                "K8S_POD_INFRA_CONTAINER_ID" => args.infra_container_id = non_empty(),
                "IP" => {
                    for address in value.split(',').filter(|address| !address.is_empty()) {
                        let address = address.split('/').next().unwrap_or(address);
                        let parsed = address.trim().parse().map_err(|_| {
                            CniError::new(
                                code::INVALID_ENVIRONMENT,
                                format!("CNI_ARGS IP entry {address:?} is not an IP address"),
                                "",
                            )
                        })?;
                        args.requested_addresses.push(parsed);
                    }
                }
                _ => {}
            }
        }
        Ok(args)
    }
}

/// Everything the runtime passed through the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEnvironment {
    pub command: CniCommand,
    pub container_id: String,
    /// The pod's network namespace as a path; absent for DEL after the sandbox is gone.
    pub netns: Option<PathBuf>,
    pub interface_name: String,
    pub args: CniArgs,
    pub cni_path: Vec<PathBuf>,
}

/// The pod both ADD and CHECK need to name the host-side interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub namespace: String,
    pub name: String,
}

impl PluginEnvironment {
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<PluginEnvironment, CniError> {
        let get = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let missing = |name: &str, command: CniCommand| {
            CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("{name} is not set (required for {command:?})"),
                "",
            )
        };
        let command = CniCommand::parse(&get("CNI_COMMAND").ok_or_else(|| {
            CniError::new(code::INVALID_ENVIRONMENT, "CNI_COMMAND is not set", "")
        })?)?;
        let needs_container = matches!(
            command,
            CniCommand::Add | CniCommand::Del | CniCommand::Check
        );
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        if needs_container && container_id.is_empty() {
            return Err(missing("CNI_CONTAINERID", command));
        }
        if container_id.contains(['\r', '\n', '/']) {
            return Err(CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("CNI_CONTAINERID {container_id:?} contains a line break or a slash"),
                "",
            ));
        }
        let netns = get("CNI_NETNS").map(PathBuf::from);
        if matches!(command, CniCommand::Add | CniCommand::Check) && netns.is_none() {
            return Err(missing("CNI_NETNS", command));
        }
        let interface_name = get("CNI_IFNAME").unwrap_or_default();
        if needs_container {
            if interface_name.is_empty() {
                return Err(missing("CNI_IFNAME", command));
            }
            // IFNAMSIZ is 16 including the terminating NUL.
            if interface_name.len() > 15 || interface_name.contains(['/', ' ', '\0']) {
                return Err(CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!("CNI_IFNAME {interface_name:?} is not a valid interface name"),
                    "",
                ));
            }
        }
        let args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        let cni_path = get("CNI_PATH")
            .map(|paths| std::env::split_paths(&paths).collect())
            .unwrap_or_default();
        Ok(PluginEnvironment {
            command,
            container_id,
            netns,
            interface_name,
            args,
            cni_path,
        })
    }

    /// The pod's namespace and name, which ADD and CHECK cannot do without.
    pub fn pod(&self) -> Result<PodIdentity, CniError> {
        let missing = |key: &str| {
            CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("CNI_ARGS has no {key} (the runtime must name the pod)"),
                "",
            )
        };
        Ok(PodIdentity {
            namespace: self
                .args
                .pod_namespace
                .clone()
                .ok_or_else(|| missing("K8S_POD_NAMESPACE"))?,
            name: self
                .args
                .pod_name
                .clone()
                .ok_or_else(|| missing("K8S_POD_NAME"))?,
        })
    }

    /// The pod when CNI_ARGS names it, for DEL (which must work without it).
    pub fn pod_if_known(&self) -> Option<PodIdentity> {
        self.pod().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn environment(pairs: &[(&str, &str)]) -> Result<PluginEnvironment, CniError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PluginEnvironment::from_lookup(|name| map.get(name).cloned())
    }

    const KUBELET_ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=1234";

    #[test]
    fn kubelet_style_args() {
        let args = CniArgs::parse(KUBELET_ARGS).unwrap();
        assert_eq!(args.pod_namespace.as_deref(), Some("default"));
        assert_eq!(args.pod_name.as_deref(), Some("web-0"));
        assert_eq!(args.infra_container_id.as_deref(), Some("abc123"));
        assert!(args.requested_addresses.is_empty());

        let with_ip = CniArgs::parse("IP=10.0.0.7,fd00::7/128;").unwrap();
        assert_eq!(with_ip.requested_addresses.len(), 2);
        assert!(CniArgs::parse("IP=nonsense").is_err());
        let broken = CniArgs::parse("K8S_POD_NAME").unwrap_err();
        assert_eq!(broken.code, code::INVALID_ENVIRONMENT);
        assert!(CniArgs::parse("").unwrap() == CniArgs::default());
    }

    #[test]
    fn add_environment() {
        let env = environment(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/p"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", KUBELET_ARGS),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ])
        .unwrap();
        assert_eq!(env.command, CniCommand::Add);
        assert_eq!(
            env.netns.as_deref(),
            Some(std::path::Path::new("/var/run/netns/p"))
        );
        assert_eq!(env.cni_path.len(), 2);
        let pod = env.pod().unwrap();
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("default", "web-0")
        );
    }

    #[test]
    fn missing_variables_are_named() {
        let no_netns = environment(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap_err();
        assert_eq!(no_netns.code, code::INVALID_ENVIRONMENT);
        assert!(no_netns.msg.contains("CNI_NETNS"), "{}", no_netns.msg);

        let no_command = environment(&[]).unwrap_err();
        assert!(no_command.msg.contains("CNI_COMMAND"));

        let unknown = environment(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert!(unknown.msg.contains("FROB"));

        let long_name = environment(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "averyveryverylongname"),
        ])
        .unwrap_err();
        assert!(long_name.msg.contains("CNI_IFNAME"));

        // DEL without a namespace or pod is legal; ADD then misses the pod name.
        let delete = environment(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert!(delete.pod_if_known().is_none());
        let no_pod = environment(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default"),
        ])
        .unwrap()
        .pod()
        .unwrap_err();
        assert!(no_pod.msg.contains("K8S_POD_NAME"), "{}", no_pod.msg);

        let version = environment(&[("CNI_COMMAND", "VERSION")]).unwrap();
        assert_eq!(version.command, CniCommand::Version);
    }
}
