//! The network configuration the runtime writes on the plugin's stdin.
//!
//! Accepts the shape Calico users already have in their conflists (`name`, `cniVersion`, `mtu`,
//! `ipam` with `ipv4_pools`/`ipv6_pools`/`assign_ipv4`/`assign_ipv6`, `kubernetes.kubeconfig`,
//! `datastore_type`, `etcd_endpoints`, `feature_control`, `log_level`, `log_file_path`) plus
//! Starling's `control_socket` and `gc_grace_seconds`, and the runtime's
//! `cni.dev/valid-attachments` for GC. Unknown fields are ignored, as every CNI plugin does, so the
//! same conflist keeps working after a switch from Calico. Parsing never panics: every problem is
//! a [`ConfigError`] naming the field.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use super::result::{self, CniError};

/// The IPAM types served by the Starling daemon. `calico-ipam` is accepted so that an existing
/// Calico conflist works unchanged.
pub const SUPPORTED_IPAM_TYPES: [&str; 2] = ["starling-ipam", "calico-ipam"];

#[derive(Debug, Clone, Deserialize)]
pub struct NetworkConfig {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The network name; it prefixes every IPAM handle (`<name>.<containerID>`).
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// Pod MTU; absent or 0 means "read the file the daemon writes".
    #[serde(default, deserialize_with = "number_or_string")]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub ipam: Option<IpamSection>,
    #[serde(default)]
    pub kubernetes: KubernetesSection,
    #[serde(default)]
    pub datastore_type: Option<String>,
    #[serde(default)]
    pub etcd_endpoints: Option<String>,
    #[serde(default)]
    pub feature_control: FeatureControl,
    #[serde(default)]
    pub log_level: Option<String>,
    #[serde(default)]
    pub log_file_path: Option<PathBuf>,
    /// Where the Starling daemon listens; overrides `STARLING_CONTROL_SOCKET`.
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// DNS settings copied into the result unchanged.
    #[serde(default)]
    pub dns: Option<serde_json::Value>,
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: RuntimeConfig,
    /// The conventions' `args` (keyed by who defines them): only
    /// `cni.projectcalico.org/annotations` is read, see [`NetworkConfig::pod_annotations`].
    #[serde(default)]
    pub args: Option<serde_json::Value>,
    /// The previous plugin's result (CHECK and DEL, and ADD when chained after another plugin).
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<serde_json::Value>,
    /// GC: the attachments the runtime still has; read by [`NetworkConfig::valid_attachments`]
    /// only, so a malformed list fails GC and nothing else.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    valid_attachments: Option<serde_json::Value>,
    /// The key of an earlier draft of the specification, which libcni still sends alongside.
    #[serde(rename = "cni.dev/attachments", default)]
    draft_attachments: Option<serde_json::Value>,
    /// GC leaves allocations younger than this alone (default `gc::DEFAULT_GRACE_SECONDS`).
    #[serde(default)]
    pub gc_grace_seconds: Option<u64>,
}

/// One entry of `cni.dev/valid-attachments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: Option<String>,
}

/// The `ipam` section, forwarded to the daemon as it is (it does pool selection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamSection {
    #[serde(rename = "type", default = "default_ipam_type")]
    pub ipam_type: String,
    /// Pool names or CIDRs; the pod's and namespace's annotations override these (daemon side).
    #[serde(default)]
    pub ipv4_pools: Vec<String>,
    #[serde(default)]
    pub ipv6_pools: Vec<String>,
    /// Calico writes these as strings (`"true"`); booleans are accepted too.
    #[serde(default = "default_true", deserialize_with = "bool_or_string")]
    pub assign_ipv4: bool,
    #[serde(default, deserialize_with = "bool_or_string")]
    pub assign_ipv6: bool,
}

impl Default for IpamSection {
    fn default() -> Self {
        IpamSection {
            ipam_type: default_ipam_type(),
            ipv4_pools: Vec::new(),
            ipv6_pools: Vec::new(),
            assign_ipv4: true,
            assign_ipv6: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct KubernetesSection {
    /// Kept for compatibility; the daemon, not the plugin, talks to the API server.
    #[serde(default)]
    pub kubeconfig: Option<String>,
}

/// Opt-in features that let a pod annotation bypass or extend IPAM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureControl {
    #[serde(default)]
    pub ip_addrs_no_ipam: bool,
    #[serde(default)]
    pub floating_ips: bool,
}

/// Capabilities the runtime fills in (`ips`; `portMappings` is for `portmap`, ignored here).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    /// Requested addresses, as `ip` or `ip/prefix` strings (the `ips` capability).
    #[serde(default)]
    pub ips: Vec<String>,
}

fn default_ipam_type() -> String {
    SUPPORTED_IPAM_TYPES[0].to_string()
}

fn default_true() -> bool {
    true
}

fn bool_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flexible {
        Bool(bool),
        Text(String),
    }
    match Flexible::deserialize(deserializer)? {
        Flexible::Bool(value) => Ok(value),
        Flexible::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "expected true or false, got {other:?}"
            ))),
        },
    }
}

fn number_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flexible {
        Number(u32),
        Text(String),
    }
    match Option::<Flexible>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Flexible::Number(value)) => Ok(Some(value)),
        Some(Flexible::Text(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected an MTU, got {text:?}"))),
    }
}

impl NetworkConfig {
    /// Parses stdin. Undecodable JSON is code 6, a well-formed but unusable config code 7, an
    /// unsupported `cniVersion` code 1.
    pub fn parse(stdin: &[u8]) -> Result<NetworkConfig, CniError> {
        let value: serde_json::Value = serde_json::from_slice(stdin).map_err(|err| {
            CniError::new(
                result::code::DECODING_FAILURE,
                "the network configuration on stdin is not JSON",
                err.to_string(),
            )
        })?;
        let version = value
            .get("cniVersion")
            .and_then(|version| version.as_str())
            .ok_or_else(|| {
                CniError::new(
                    result::code::INVALID_NETWORK_CONFIG,
                    "the network configuration has no cniVersion",
                    "",
                )
            })?;
        result::check_supported(version)?;
        let config: NetworkConfig = serde_json::from_value(value).map_err(|err| {
            CniError::new(
                result::code::INVALID_NETWORK_CONFIG,
                "the network configuration is invalid",
                err.to_string(),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), CniError> {
        let invalid = |message: String| {
            CniError::new(result::code::INVALID_NETWORK_CONFIG, message, String::new())
        };
        if self.name.trim().is_empty() {
            return Err(invalid(
                "the network configuration has an empty name".into(),
            ));
        }
        if self.name.contains(['\r', '\n']) {
            return Err(invalid(format!(
                "the network name {:?} contains a line break",
                self.name
            )));
        }
        let ipam = self.ipam();
        if !SUPPORTED_IPAM_TYPES.contains(&ipam.ipam_type.as_str()) {
            return Err(invalid(format!(
                "ipam.type {:?} is not supported: Starling assigns addresses itself, use one of {:?}",
                ipam.ipam_type, SUPPORTED_IPAM_TYPES
            )));
        }
        if !ipam.assign_ipv4 && !ipam.assign_ipv6 {
            return Err(invalid(
                "ipam.assign_ipv4 and ipam.assign_ipv6 are both false: the pod would get no address"
                    .into(),
            ));
        }
        for pool in ipam.ipv4_pools.iter().chain(&ipam.ipv6_pools) {
            if pool.trim().is_empty() {
                return Err(invalid(
                    "ipam pool lists may not contain empty entries".into(),
                ));
            }
        }
        self.requested_addresses()?;
        if let Some(mtu) = self.mtu {
            if mtu != 0 && !(68..=65535).contains(&mtu) {
                return Err(invalid(format!("mtu {mtu} is outside 68..65535")));
            }
        }
        Ok(())
    }

    /// The `ipam` section, or Starling's defaults when the config has none.
    pub fn ipam(&self) -> IpamSection {
        self.ipam.clone().unwrap_or_default()
    }

    /// Addresses requested through the runtime's `ips` capability.
    pub fn requested_addresses(&self) -> Result<Vec<IpAddr>, CniError> {
        self.runtime_config
            .ips
            .iter()
            .map(|text| {
                let address = text.split('/').next().unwrap_or(text);
                address.parse::<IpAddr>().map_err(|_| {
                    CniError::new(
                        result::code::INVALID_NETWORK_CONFIG,
                        format!("runtimeConfig.ips entry {text:?} is not an IP address"),
                        String::new(),
                    )
                })
            })
            .collect()
    }

    /// Pod annotations an orchestrator without a Kubernetes API for the daemon passes with the
    /// attachment (`args` → `cni.projectcalico.org/annotations`, an object of strings; the
    /// Starling lab does this). Anything else there is a config error naming the field.
    pub fn pod_annotations(&self) -> Result<BTreeMap<String, String>, CniError> {
        const FIELD: &str = "args.cni.projectcalico.org/annotations";
        let Some(value) = self
            .args
            .as_ref()
            .and_then(|args| args.get("cni.projectcalico.org/annotations"))
        else {
            return Ok(BTreeMap::new());
        };
        serde_json::from_value(value.clone()).map_err(|error| {
            CniError::new(
                result::code::INVALID_NETWORK_CONFIG,
                format!("{FIELD} is not an object of strings: {error}"),
                String::new(),
            )
        })
    }

    /// GC's list of attachments still in use. Missing or malformed is code 7 naming the field and
    /// entry: guessing an empty list would release every address of the network.
    pub fn valid_attachments(&self) -> Result<Vec<Attachment>, CniError> {
        const FIELD: &str = "cni.dev/valid-attachments";
        let invalid = |message: String| {
            CniError::new(result::code::INVALID_NETWORK_CONFIG, message, String::new())
        };
        let value = self
            .valid_attachments
            .as_ref()
            .or(self.draft_attachments.as_ref())
            .ok_or_else(|| {
                invalid(format!(
                    "GC needs {FIELD} in the network configuration (the attachments the runtime still has)"
                ))
            })?;
        let entries = value
            .as_array()
            .ok_or_else(|| invalid(format!("{FIELD} is not a list but {value}")))?;
        entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let container_id = entry
                    .get("containerID")
                    .and_then(serde_json::Value::as_str)
                    .filter(|id| !id.trim().is_empty())
                    .ok_or_else(|| {
                        invalid(format!(
                            "{FIELD}[{index}] has no containerID string: {entry}"
                        ))
                    })?;
                Ok(Attachment {
                    container_id: container_id.to_string(),
                    ifname: entry
                        .get("ifname")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_string),
                })
            })
            .collect()
    }

    /// The configured MTU, if one is set (0 means unset).
    pub fn explicit_mtu(&self) -> Option<u32> {
        self.mtu.filter(|mtu| *mtu != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALICO_STYLE: &str = r#"{
        "name": "k8s-pod-network",
        "cniVersion": "1.0.0",
        "type": "starling",
        "log_level": "info",
        "log_file_path": "/var/log/calico/cni/cni.log",
        "datastore_type": "kubernetes",
        "nodename": "node-1",
        "mtu": 0,
        "ipam": {"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "false",
                 "ipv4_pools": ["10.244.0.0/16", "default-ipv4-ippool"]},
        "policy": {"type": "k8s"},
        "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"},
        "feature_control": {"ip_addrs_no_ipam": true}
    }"#;

    #[test]
    fn calico_style_config_parses() {
        let config = NetworkConfig::parse(CALICO_STYLE.as_bytes()).unwrap();
        assert_eq!(config.name, "k8s-pod-network");
        assert_eq!(config.cni_version, "1.0.0");
        assert_eq!(config.explicit_mtu(), None);
        let ipam = config.ipam();
        assert_eq!(ipam.ipam_type, "calico-ipam");
        assert!(ipam.assign_ipv4);
        assert!(!ipam.assign_ipv6);
        assert_eq!(ipam.ipv4_pools, ["10.244.0.0/16", "default-ipv4-ippool"]);
        assert!(config.feature_control.ip_addrs_no_ipam);
        assert!(!config.feature_control.floating_ips);
        assert_eq!(
            config.kubernetes.kubeconfig.as_deref(),
            Some("/etc/cni/net.d/calico-kubeconfig")
        );
        assert_eq!(config.datastore_type.as_deref(), Some("kubernetes"));
    }

    #[test]
    fn defaults_and_booleans() {
        let config = NetworkConfig::parse(
            br#"{"name":"net","cniVersion":"0.3.1","mtu":"1440","ipam":{"type":"starling-ipam","assign_ipv6":true}}"#,
        )
        .unwrap();
        assert_eq!(config.explicit_mtu(), Some(1440));
        let ipam = config.ipam();
        assert!(ipam.assign_ipv4 && ipam.assign_ipv6);

        let no_ipam = NetworkConfig::parse(br#"{"name":"net","cniVersion":"1.0.0"}"#).unwrap();
        assert_eq!(no_ipam.ipam(), IpamSection::default());
    }

    #[test]
    fn runtime_config_ips() {
        let config = NetworkConfig::parse(
            br#"{"name":"n","cniVersion":"1.0.0","runtimeConfig":{"ips":["10.0.0.9/32","fd00::9"],"portMappings":[]}}"#,
        )
        .unwrap();
        let requested = config.requested_addresses().unwrap();
        assert_eq!(requested.len(), 2);
        assert_eq!(requested[0].to_string(), "10.0.0.9");
    }

    #[test]
    fn errors_carry_codes_and_fields() {
        let garbage = NetworkConfig::parse(b"{ not json").unwrap_err();
        assert_eq!(garbage.code, result::code::DECODING_FAILURE);

        let version = NetworkConfig::parse(br#"{"name":"n","cniVersion":"9.9.9"}"#).unwrap_err();
        assert_eq!(version.code, result::code::INCOMPATIBLE_VERSION);
        assert!(version.msg.contains("9.9.9"), "{}", version.msg);

        let no_version = NetworkConfig::parse(br#"{"name":"n"}"#).unwrap_err();
        assert_eq!(no_version.code, result::code::INVALID_NETWORK_CONFIG);

        let no_name = NetworkConfig::parse(br#"{"cniVersion":"1.0.0"}"#).unwrap_err();
        assert_eq!(no_name.code, result::code::INVALID_NETWORK_CONFIG);
        assert!(no_name.details.contains("name"), "{}", no_name.details);

        let host_local = NetworkConfig::parse(
            br#"{"name":"n","cniVersion":"1.0.0","ipam":{"type":"host-local"}}"#,
        )
        .unwrap_err();
        assert!(host_local.msg.contains("host-local"), "{}", host_local.msg);

        let nothing = NetworkConfig::parse(
            br#"{"name":"n","cniVersion":"1.0.0","ipam":{"type":"calico-ipam","assign_ipv4":"false"}}"#,
        )
        .unwrap_err();
        assert!(nothing.msg.contains("no address"), "{}", nothing.msg);

        let bad_flag = NetworkConfig::parse(
            br#"{"name":"n","cniVersion":"1.0.0","ipam":{"assign_ipv4":"yes"}}"#,
        )
        .unwrap_err();
        assert!(bad_flag.details.contains("yes"), "{}", bad_flag.details);

        let bad_ip = NetworkConfig::parse(
            br#"{"name":"n","cniVersion":"1.0.0","runtimeConfig":{"ips":["ten"]}}"#,
        )
        .unwrap_err();
        assert!(bad_ip.msg.contains("ten"), "{}", bad_ip.msg);

        let bad_mtu =
            NetworkConfig::parse(br#"{"name":"n","cniVersion":"1.0.0","mtu":20}"#).unwrap_err();
        assert!(bad_mtu.msg.contains("mtu"), "{}", bad_mtu.msg);
    }

    #[test]
    fn valid_attachments_for_gc() {
        let config = NetworkConfig::parse(
            br#"{"name":"n","cniVersion":"1.1.0","gc_grace_seconds":0,
                 "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"},{"containerID":"c2"}]}"#,
        )
        .unwrap();
        let attachments = config.valid_attachments().unwrap();
        assert_eq!(attachments.len(), 2);
        assert_eq!(attachments[0].container_id, "c1");
        assert_eq!(attachments[0].ifname.as_deref(), Some("eth0"));
        assert_eq!(attachments[1].ifname, None);
        assert_eq!(config.gc_grace_seconds, Some(0));

        // The draft key is honoured when the final one is absent; an empty list is a list.
        let draft =
            NetworkConfig::parse(br#"{"name":"n","cniVersion":"1.1.0","cni.dev/attachments":[]}"#)
                .unwrap();
        assert!(draft.valid_attachments().unwrap().is_empty());

        let missing = NetworkConfig::parse(br#"{"name":"n","cniVersion":"1.1.0"}"#)
            .unwrap()
            .valid_attachments()
            .unwrap_err();
        assert_eq!(missing.code, result::code::INVALID_NETWORK_CONFIG);
        assert!(
            missing.msg.contains("cni.dev/valid-attachments"),
            "{}",
            missing.msg
        );

        // A malformed list fails GC only, naming the entry.
        let malformed = NetworkConfig::parse(
            br#"{"name":"n","cniVersion":"1.1.0","cni.dev/valid-attachments":[{"containerID":"c1"},{"ifname":"eth0"}]}"#,
        )
        .unwrap();
        let error = malformed.valid_attachments().unwrap_err();
        assert!(
            error.msg.contains("cni.dev/valid-attachments[1]"),
            "{}",
            error.msg
        );
        let not_list = NetworkConfig::parse(
            br#"{"name":"n","cniVersion":"1.1.0","cni.dev/valid-attachments":{"containerID":"c1"}}"#,
        )
        .unwrap();
        assert!(not_list
            .valid_attachments()
            .unwrap_err()
            .msg
            .contains("not a list"));
    }
}
