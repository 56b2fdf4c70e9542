//! Start-up configuration: calico-node's environment variables (reference §8.3, §8.5), the
//! `FELIX_*` ones Starling honours, Starling's own `STARLING_*`, and `starling run` flags.
//!
//! [`Config::from_env`] is a pure function over a map of the environment: every value is parsed
//! and checked once, and a bad one is reported with the variable's name, e.g.
//! `CALICO_IPV4POOL_BLOCK_SIZE="33": block size must be between 20 and 32`. The edge crate lays
//! the flags given to `starling run` over the environment first, so they win, and reads the
//! process environment and the node-name file; nothing here touches the system.

mod address;
mod pools;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

pub use address::{
    parse_address_setting, parse_autodetection_method, AddressSetting, AutodetectionMethod,
};
pub use pools::{
    parse_encap_mode, parse_lenient_bool, DefaultPoolConfig, DefaultPools, PoolCidrSource,
};

use crate::duration::parse_go_duration;
use crate::pool::EncapMode;
use crate::validate::ippool::validate_ip_pool;
use crate::wire::IPPoolSpec;
use crate::{AsNumber, FelixOverrides};
use starling_selector::Selector;

/// Route protocol number Starling marks its kernel routes with. 81 collides with none of
/// the kernel's own (0-4), BIRD's (12) or Felix's (80), so routes left by those are
/// recognisably someone else's and Starling's are recognisable after a restart.
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 81;
/// Unix socket of Starling's control interface (CNI requests, status).
pub const DEFAULT_CONTROL_SOCKET: &str = "/var/run/calico/starling.sock";
/// Where calico-node keeps the node name between restarts.
pub const DEFAULT_NODENAME_FILE: &str = "/var/lib/calico/nodename";

/// A variable whose value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub reason: String,
}

/// Which datastore holds Calico's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// `DATASTORE_TYPE=kubernetes` (default); `KUBECONFIG` unset means in-cluster config.
    Kubernetes { kubeconfig: Option<PathBuf> },
    /// `DATASTORE_TYPE=etcdv3`.
    Etcd {
        endpoints: Vec<String>,
        ca_cert_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        /// `KUBECONFIG`: the Kubernetes API that Services and EndpointSlices come from (service
        /// advertisement reads them from Kubernetes in both modes); in-cluster when unset.
        kubeconfig: Option<PathBuf>,
    },
}

/// `CALICO_NETWORKING_BACKEND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkingBackend {
    /// BGP plus IPIP/VXLAN/no-encap routing (Calico runs BIRD; Starling its own speaker).
    #[default]
    Bird,
    /// VXLAN only, no BGP.
    Vxlan,
    /// No networking: policy only (IP configuration is skipped).
    None,
}

/// `CALICO_ROUTER_ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterIdSetting {
    Address(std::net::Ipv4Addr),
    /// `hash`: derived from the node name (for IPv6-only nodes).
    Hash,
}

/// How the node name is found: `NODENAME`, then the file, then `HOSTNAME` (lowercased), then
/// the OS host name (lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNameSource {
    pub nodename: Option<String>,
    pub nodename_file: PathBuf,
    pub hostname: Option<String>,
}

impl NodeNameSource {
    /// Pure resolution given the file's contents (if readable) and the OS host name.
    pub fn resolve(&self, file_contents: Option<&str>, os_hostname: &str) -> String {
        if let Some(name) = &self.nodename {
            return name.clone();
        }
        if let Some(name) = file_contents.map(str::trim).filter(|name| !name.is_empty()) {
            return name.to_string();
        }
        if let Some(name) = &self.hostname {
            return name.to_lowercase();
        }
        os_hostname.trim().to_lowercase()
    }
}

/// Everything `starling run` needs from its environment, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub node_name: NodeNameSource,
    pub datastore: Datastore,
    pub wait_for_datastore: bool,
    pub ipv4: AddressSetting,
    pub ipv6: AddressSetting,
    pub ipv4_autodetection: AutodetectionMethod,
    pub ipv6_autodetection: AutodetectionMethod,
    pub autodetect_poll_interval: Duration,
    pub disable_node_ip_check: bool,
    pub as_number: Option<AsNumber>,
    pub router_id: Option<RouterIdSetting>,
    pub networking_backend: NetworkingBackend,
    pub cluster_type: Vec<String>,
    pub default_pools: DefaultPools,
    /// Namespace of calico-node's secrets (BGP passwords).
    pub namespace: String,
    /// `FELIX_*` values; they beat FelixConfiguration resources. Combine both with
    /// `FelixConfig::resolve` (defaults: health on localhost:9099, metrics on port 9091).
    pub felix: FelixOverrides,
    /// `STARLING_ROUTE_PROTOCOL` (default [`DEFAULT_ROUTE_PROTOCOL`]).
    pub route_protocol: u8,
    /// `STARLING_CONTROL_SOCKET` (default [`DEFAULT_CONTROL_SOCKET`]).
    pub control_socket: PathBuf,
}

/// Read access to the environment map with error construction.
struct Environment<'a> {
    variables: &'a BTreeMap<String, String>,
}

impl Environment<'_> {
    /// The trimmed value, `None` when unset or empty (calico-node treats both alike).
    fn get(&self, name: &str) -> Option<&str> {
        self.variables
            .get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    fn error(&self, name: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            variable: name.to_string(),
            value: self.variables.get(name).cloned().unwrap_or_default(),
            reason: reason.into(),
        }
    }

    fn parse<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(name)
            .map(|value| parse(value).map_err(|reason| self.error(name, reason)))
            .transpose()
    }

    /// calico-node's strict flag: only `true` (any case) is true.
    fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.get(name).map(PathBuf::from)
    }
}

/// Felix's boolean grammar (rejects anything else).
fn felix_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "t" => Ok(true),
        "false" | "0" | "no" | "n" | "f" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

fn integer_in<T: TryFrom<u64>>(text: &str, min: u64, max: u64, what: &str) -> Result<T, String> {
    let reason = || format!("{what} must be between {min} and {max}");
    let value: u64 = text.parse().map_err(|_| reason())?;
    if value < min || value > max {
        return Err(reason());
    }
    T::try_from(value).map_err(|_| reason())
}

/// Felix's duration parameters take seconds (`90`, `0.5`); Go durations (`90s`) are accepted too.
fn seconds_or_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Ok(Duration::from_secs_f64(seconds));
        }
        return Err("must be a non-negative number of seconds".to_string());
    }
    parse_go_duration(text).map_err(|error| error.to_string())
}

impl Config {
    /// Parses and validates an environment map.
    pub fn from_env(variables: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let env = Environment { variables };

        let node_name = NodeNameSource {
            nodename: env.get("NODENAME").map(str::to_string),
            nodename_file: env
                .path("CALICO_NODENAME_FILE")
                .unwrap_or_else(|| PathBuf::from(DEFAULT_NODENAME_FILE)),
            hostname: env.get("HOSTNAME").map(str::to_string),
        };

        let datastore = match env.get("DATASTORE_TYPE").unwrap_or("kubernetes") {
            "kubernetes" => Datastore::Kubernetes {
                kubeconfig: env.path("KUBECONFIG"),
            },
            "etcdv3" => {
                let endpoints: Vec<String> = env
                    .get("ETCD_ENDPOINTS")
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|endpoint| !endpoint.is_empty())
                    .map(str::to_string)
                    .collect();
                if endpoints.is_empty() {
                    return Err(
                        env.error("ETCD_ENDPOINTS", "is required when DATASTORE_TYPE=etcdv3")
                    );
                }
                if let Some(bad) = endpoints.iter().find(|endpoint| {
                    !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                }) {
                    return Err(env.error(
                        "ETCD_ENDPOINTS",
                        format!("endpoint {bad:?} must start with http:// or https://"),
                    ));
                }
                Datastore::Etcd {
                    endpoints,
                    ca_cert_file: env.path("ETCD_CA_CERT_FILE"),
                    cert_file: env.path("ETCD_CERT_FILE"),
                    key_file: env.path("ETCD_KEY_FILE"),
                    kubeconfig: env.path("KUBECONFIG"),
                }
            }
            _ => return Err(env.error("DATASTORE_TYPE", "expected kubernetes or etcdv3")),
        };
        if let Datastore::Etcd {
            cert_file,
            key_file,
            ..
        } = &datastore
        {
            if cert_file.is_some() != key_file.is_some() {
                let missing = if cert_file.is_some() {
                    "ETCD_KEY_FILE"
                } else {
                    "ETCD_CERT_FILE"
                };
                return Err(env.error(
                    missing,
                    "ETCD_CERT_FILE and ETCD_KEY_FILE must be set together",
                ));
            }
        }

        let networking_backend = match env.get("CALICO_NETWORKING_BACKEND") {
            Some("bird") => NetworkingBackend::Bird,
            Some("vxlan") => NetworkingBackend::Vxlan,
            Some("none") => NetworkingBackend::None,
            Some(_) => {
                return Err(env.error("CALICO_NETWORKING_BACKEND", "expected bird, vxlan or none"))
            }
            // Legacy switch (reference §8.1): CALICO_NETWORKING=false means no networking.
            None if env
                .get("CALICO_NETWORKING")
                .is_some_and(|v| v.eq_ignore_ascii_case("false")) =>
            {
                NetworkingBackend::None
            }
            None => NetworkingBackend::Bird,
        };

        let default_pools = default_pools(&env)?;

        let route_protocol = env
            .parse("STARLING_ROUTE_PROTOCOL", |text| {
                let protocol: u8 = integer_in(text, 1, 255, "route protocol")?;
                match protocol {
                    0..=4 => Err(format!(
                        "route protocol {protocol} is reserved by the kernel"
                    )),
                    12 => Err("route protocol 12 is BIRD's".to_string()),
                    80 => Err("route protocol 80 is Felix's".to_string()),
                    _ => Ok(protocol),
                }
            })?
            .unwrap_or(DEFAULT_ROUTE_PROTOCOL);

        Ok(Config {
            node_name,
            datastore,
            wait_for_datastore: env.flag("WAIT_FOR_DATASTORE"),
            ipv4: env
                .parse("IP", |text| parse_address_setting(text, true))?
                .unwrap_or_default(),
            ipv6: env
                .parse("IP6", |text| parse_address_setting(text, false))?
                .unwrap_or_default(),
            ipv4_autodetection: env
                .parse("IP_AUTODETECTION_METHOD", parse_autodetection_method)?
                .unwrap_or_default(),
            ipv6_autodetection: env
                .parse("IP6_AUTODETECTION_METHOD", parse_autodetection_method)?
                .unwrap_or_default(),
            autodetect_poll_interval: env
                .parse("AUTODETECT_POLL_INTERVAL", |text| {
                    parse_go_duration(text).map_err(|error| error.to_string())
                })?
                .unwrap_or(Duration::from_secs(60)),
            disable_node_ip_check: env.flag("DISABLE_NODE_IP_CHECK"),
            as_number: env.parse("AS", |text| {
                text.parse::<AsNumber>().map_err(|error| error.to_string())
            })?,
            router_id: env.parse("CALICO_ROUTER_ID", |text| {
                if text == "hash" {
                    return Ok(RouterIdSetting::Hash);
                }
                text.parse()
                    .map(RouterIdSetting::Address)
                    .map_err(|_| "expected an IPv4 address or hash".to_string())
            })?,
            networking_backend,
            cluster_type: env
                .get("CLUSTER_TYPE")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_string)
                .collect(),
            default_pools,
            namespace: env.get("NAMESPACE").unwrap_or("kube-system").to_string(),
            felix: felix_overrides(&env)?,
            route_protocol,
            control_socket: env
                .path("STARLING_CONTROL_SOCKET")
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
        })
    }
}

fn felix_overrides(env: &Environment<'_>) -> Result<FelixOverrides, ConfigError> {
    let port = |text: &str| integer_in::<u16>(text, 1, 65535, "port");
    let mtu = |text: &str| integer_in::<u32>(text, 0, 65535, "MTU (0 = automatic)");
    Ok(FelixOverrides {
        health_enabled: env.parse("FELIX_HEALTHENABLED", felix_bool)?,
        health_host: env.get("FELIX_HEALTHHOST").map(str::to_string),
        health_port: env.parse("FELIX_HEALTHPORT", port)?,
        prometheus_metrics_enabled: env.parse("FELIX_PROMETHEUSMETRICSENABLED", felix_bool)?,
        prometheus_metrics_host: env.get("FELIX_PROMETHEUSMETRICSHOST").map(str::to_string),
        prometheus_metrics_port: env.parse("FELIX_PROMETHEUSMETRICSPORT", port)?,
        ipip_mtu: env.parse("FELIX_IPINIPMTU", mtu)?,
        vxlan_mtu: env.parse("FELIX_VXLANMTU", mtu)?,
        vxlan_mtu_v6: env.parse("FELIX_VXLANMTUV6", mtu)?,
        vxlan_port: env.parse("FELIX_VXLANPORT", port)?,
        vxlan_vni: env.parse("FELIX_VXLANVNI", |text| {
            integer_in::<u32>(text, 1, 16_777_215, "VNI")
        })?,
        ipv6_support: env.parse("FELIX_IPV6SUPPORT", felix_bool)?,
        interface_prefixes: env.parse("FELIX_INTERFACEPREFIX", |text| {
            let prefixes = crate::validate::felix::split_list(text);
            if prefixes.is_empty() {
                Err("names no interface prefix".to_string())
            } else {
                Ok(prefixes)
            }
        })?,
        route_refresh_interval: env.parse("FELIX_ROUTEREFRESHINTERVAL", seconds_or_duration)?,
    })
}

/// Per-family variable names.
struct PoolVariables {
    ipv4: bool,
    cidr: &'static str,
    block_size: &'static str,
    ipip: Option<&'static str>,
    vxlan: &'static str,
    nat_outgoing: &'static str,
    node_selector: &'static str,
    disable_bgp_export: &'static str,
}

const IPV4_POOL: PoolVariables = PoolVariables {
    ipv4: true,
    cidr: "CALICO_IPV4POOL_CIDR",
    block_size: "CALICO_IPV4POOL_BLOCK_SIZE",
    ipip: Some("CALICO_IPV4POOL_IPIP"),
    vxlan: "CALICO_IPV4POOL_VXLAN",
    nat_outgoing: "CALICO_IPV4POOL_NAT_OUTGOING",
    node_selector: "CALICO_IPV4POOL_NODE_SELECTOR",
    disable_bgp_export: "CALICO_IPV4POOL_DISABLE_BGP_EXPORT",
};

const IPV6_POOL: PoolVariables = PoolVariables {
    ipv4: false,
    cidr: "CALICO_IPV6POOL_CIDR",
    block_size: "CALICO_IPV6POOL_BLOCK_SIZE",
    ipip: None,
    vxlan: "CALICO_IPV6POOL_VXLAN",
    nat_outgoing: "CALICO_IPV6POOL_NAT_OUTGOING",
    node_selector: "CALICO_IPV6POOL_NODE_SELECTOR",
    disable_bgp_export: "CALICO_IPV6POOL_DISABLE_BGP_EXPORT",
};

fn default_pools(env: &Environment<'_>) -> Result<DefaultPools, ConfigError> {
    if env.flag("NO_DEFAULT_POOLS") {
        for variable in [IPV4_POOL.cidr, IPV6_POOL.cidr] {
            if let Some(cidr) = env.get(variable) {
                return Err(env.error(
                    "NO_DEFAULT_POOLS",
                    format!("cannot be combined with {variable}={cidr:?}"),
                ));
            }
        }
        return Ok(DefaultPools {
            ipv4: None,
            ipv6: None,
        });
    }
    Ok(DefaultPools {
        ipv4: default_pool(env, &IPV4_POOL)?,
        ipv6: default_pool(env, &IPV6_POOL)?,
    })
}

fn default_pool(
    env: &Environment<'_>,
    names: &PoolVariables,
) -> Result<Option<DefaultPoolConfig>, ConfigError> {
    let family = if names.ipv4 { "IPv4" } else { "IPv6" };
    let cidr = match env.get(names.cidr) {
        Some(text) if text.eq_ignore_ascii_case("none") => return Ok(None),
        None => PoolCidrSource::Automatic,
        Some(text) => {
            let cidr: IpNet = text
                .parse()
                .map_err(|_| env.error(names.cidr, "expected a CIDR or none"))?;
            if matches!(cidr, IpNet::V4(_)) != names.ipv4 {
                return Err(env.error(names.cidr, format!("is not an {family} CIDR")));
            }
            PoolCidrSource::Explicit(cidr.trunc())
        }
    };
    let (default_block, min_block, max_block) = if names.ipv4 {
        (26, 20, 32)
    } else {
        (122, 116, 128)
    };
    let block_size = env
        .parse(names.block_size, |text| {
            integer_in::<u8>(text, min_block, max_block, "block size")
        })?
        .unwrap_or(default_block);
    let ipip_mode = match names.ipip {
        Some(variable) => env
            .parse(variable, parse_encap_mode)?
            .unwrap_or(EncapMode::Never),
        None => EncapMode::Never,
    };
    let vxlan_mode = env
        .parse(names.vxlan, parse_encap_mode)?
        .unwrap_or(EncapMode::Never);
    if ipip_mode.is_enabled() && vxlan_mode.is_enabled() {
        if let Some(ipip_variable) = names.ipip {
            return Err(env.error(
                names.vxlan,
                format!("cannot be enabled together with {ipip_variable}"),
            ));
        }
    }
    let node_selector = env
        .parse(names.node_selector, |text| {
            let selector = Selector::parse(text)
                .map_err(|error| format!("selector does not parse: {error}"))?;
            if selector.contains_global() {
                return Err("selector must not use global()".to_string());
            }
            Ok(selector)
        })?
        .unwrap_or_else(Selector::all);
    let pool = DefaultPoolConfig {
        cidr,
        block_size,
        ipip_mode,
        vxlan_mode,
        nat_outgoing: env
            .get(names.nat_outgoing)
            .map_or(names.ipv4, parse_lenient_bool),
        node_selector,
        disable_bgp_export: env
            .get(names.disable_bgp_export)
            .is_some_and(parse_lenient_bool),
    };
    // The pool must also pass the IPPool rules (link-local overlap, room for one block, ...).
    if let PoolCidrSource::Explicit(cidr) = &pool.cidr {
        let spec = IPPoolSpec {
            cidr: cidr.to_string(),
            block_size: Some(i64::from(pool.block_size)),
            ..IPPoolSpec::default()
        };
        validate_ip_pool("default", &spec, false)
            .map_err(|error| env.error(names.cidr, error.reason))?;
    }
    Ok(Some(pool))
}
