//! From cluster state to what the dataplane and the BGP speaker should do (pure, no I/O).
//!
//! Contract: [`compute`] reads a [`ClusterState`], the local node and the configuration and
//! returns the dataplane input (and its [`Desired`]) plus, for the `bird` backend, the
//! [`SpeakerConfig`]. It depends only on its arguments.
//!
//! Route sources: with `bird`, IPIP and no-encap pools' remote blocks are learned over BGP
//! (as BIRD programmed them) while VXLAN pools are always routed from IPAM (as Felix did); with
//! `vxlan` or `none`, everything comes from IPAM.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::desired;
use crate::floating;
use crate::services::ServiceSettings;
use crate::spec::Desired;
use crate::spec::{
    veth_name, BlockSummary, DataplaneConfig, DataplaneInput, FloatingIps, HostInterface,
    LocalWorkload,
};
use crate::state::{ClusterState, Kind};
use starling_bgp::config::SpeakerConfig;
use starling_bgp::kernel::LearnedRoute;
use starling_bgp::peering::{compute_sessions, PeeringInput};
use starling_bgp::policy::{
    CalicoPolicy, CommunityValue, OwnBlock, PoolFacts, PrefixAdvertisement,
};
use starling_ipam::block::{ATTRIBUTE_NAMESPACE, ATTRIBUTE_NODE, ATTRIBUTE_POD};
use starling_ipam::records::{AffinityState, AffinityType};
use starling_model::config::{Config, NetworkingBackend, RouterIdSetting};
use starling_model::validate::resolve_overlaps;
use starling_model::{BgpConfig, CalicoNode, FelixConfig, IpPool};

/// Restart time advertised to peers (BIRD's default).
pub const GRACEFUL_RESTART_TIME: Duration = Duration::from_secs(120);

/// The outside facts a computation needs besides the cluster state.
pub struct ComputeInput<'a> {
    pub state: &'a ClusterState,
    pub config: &'a Config,
    pub node_name: &'a str,
    /// The node as start-up registered it, until the watch delivers it.
    pub registered_node: Option<&'a CalicoNode>,
    pub host_interfaces: &'a [HostInterface],
    pub learned_routes: &'a [LearnedRoute],
}

/// Everything computed in one pass.
#[derive(Debug, Clone)]
pub struct Computed {
    pub local_node: CalicoNode,
    pub felix: FelixConfig,
    pub dataplane: DataplaneInput,
    pub desired: Desired,
    /// `None` without BGP, or while the node has no router ID.
    pub speaker: Option<SpeakerConfig>,
}

/// The local node: the watched record, else the registered one, else just the name.
pub fn local_node(input: &ComputeInput<'_>) -> CalicoNode {
    input
        .state
        .node(input.node_name)
        .or(input.registered_node)
        .cloned()
        .unwrap_or_else(|| CalicoNode {
            name: input.node_name.to_string(),
            ..CalicoNode::default()
        })
}

/// FelixConfiguration `default`, then `node.<name>`, then `FELIX_*`.
pub fn felix_config(state: &ClusterState, config: &Config, node_name: &str) -> FelixConfig {
    let node_key = format!("node.{node_name}");
    FelixConfig::resolve(
        state.felix_configuration("default"),
        state.felix_configuration(&node_key),
        &config.felix,
    )
}

/// The pools in effect (overlapping ones dropped by name order, as every node does).
pub fn effective_pools(state: &ClusterState) -> Vec<IpPool> {
    let (pools, overlaps) = resolve_overlaps(&state.pools());
    for overlap in overlaps {
        tracing::warn!(kept = %overlap.kept, ignored = %overlap.ignored, "IPPools overlap");
    }
    pools
}

fn dataplane_config(config: &Config, felix: &FelixConfig) -> DataplaneConfig {
    let nonzero = |mtu: u32| (mtu != 0).then_some(mtu);
    DataplaneConfig {
        route_protocol: config.route_protocol,
        vxlan_vni: felix.vxlan_vni,
        vxlan_port: felix.vxlan_port,
        ipip_mtu: nonzero(felix.ipip_mtu),
        vxlan_mtu: nonzero(felix.vxlan_mtu),
        vxlan_mtu_v6: nonzero(felix.vxlan_mtu_v6),
        // Validated with its FelixConfiguration, so the default is never used in practice.
        mtu_interface_pattern: felix.mtu_iface_pattern.parse().unwrap_or_default(),
        interface_prefixes: felix.interface_prefixes.clone(),
        workload_route_metric: felix.ipv4_normal_route_priority,
        ip_forwarding: felix.ip_forwarding,
        ipv6_support: felix.ipv6_support,
        cluster_routes_from_bgp: config.networking_backend == NetworkingBackend::Bird,
    }
}

/// Blocks as the dataplane sees them, and this node's workloads from IPAM and pods.
fn blocks_and_workloads(
    state: &ClusterState,
    node_name: &str,
    prefix: &str,
) -> (Vec<BlockSummary>, Vec<LocalWorkload>) {
    let mut blocks = Vec::new();
    let mut workloads: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    for block in state.blocks() {
        let affinity = block.host().map(str::to_string);
        let mut borrowed = Vec::new();
        for (address, attribute) in block.allocated() {
            let user = attribute.secondary.get(ATTRIBUTE_NODE);
            if let (Some(user), Some(owner)) = (user, affinity.as_ref()) {
                if user != owner {
                    borrowed.push((address, user.clone()));
                }
            }
            if user.map(String::as_str) == Some(node_name) {
                if let (Some(namespace), Some(pod)) = (
                    attribute.secondary.get(ATTRIBUTE_NAMESPACE),
                    attribute.secondary.get(ATTRIBUTE_POD),
                ) {
                    workloads
                        .entry(veth_name(prefix, namespace, pod))
                        .or_default()
                        .insert(address);
                }
            }
        }
        blocks.push(BlockSummary {
            cidr: block.cidr,
            affinity,
            borrowed,
        });
    }
    for pod in state.pods() {
        if pod.addresses.is_empty() {
            continue;
        }
        workloads
            .entry(veth_name(prefix, &pod.namespace, &pod.name))
            .or_default()
            .extend(pod.addresses.iter().copied());
    }
    let workloads = workloads
        .into_iter()
        .map(|(interface, addresses)| LocalWorkload {
            interface,
            addresses: addresses.into_iter().collect(),
            mac: None,
        })
        .collect();
    (blocks, workloads)
}

/// One full computation.
pub fn compute(input: &ComputeInput<'_>) -> Computed {
    let state = input.state;
    let local = local_node(input);
    let felix = felix_config(state, input.config, input.node_name);
    let config = dataplane_config(input.config, &felix);
    let prefix = config
        .interface_prefixes
        .first()
        .cloned()
        .unwrap_or_else(|| "cali".to_string());
    let (blocks, workloads) = blocks_and_workloads(state, input.node_name, &prefix);
    let pools = effective_pools(state);
    let dataplane = DataplaneInput {
        config,
        local_node: local.clone(),
        nodes: state.nodes(),
        pools: pools.clone(),
        blocks,
        workloads,
        learned_routes: input.learned_routes.to_vec(),
        host_interfaces: input.host_interfaces.to_vec(),
        datastore_in_sync: state.all_in_sync(&Kind::ALL),
    };
    let mut desired = desired::compute(&dataplane);
    desired.floating_ips = floating::local_floating_ips(state, input.node_name, felix.floating_ips);
    let speaker = (input.config.networking_backend == NetworkingBackend::Bird)
        .then(|| speaker_config(input, &local, &pools, &dataplane, &desired.floating_ips))
        .flatten();
    Computed {
        local_node: local,
        felix,
        dataplane,
        desired,
        speaker,
    }
}

/// `CALICO_ROUTER_ID=hash`: the first four bytes of SHA-256(node name), first octet kept
/// below 224 (reference §6.4).
pub fn hashed_router_id(node_name: &str) -> Ipv4Addr {
    let digest = Sha256::digest(node_name.as_bytes());
    let mut first = digest[0];
    if first > 223 {
        first -= 32;
    }
    Ipv4Addr::new(first, digest[1], digest[2], digest[3])
}

/// The BGPConfiguration in force on `node_name` (`default` overlaid by `node.<name>`).
pub fn effective_bgp_config(state: &ClusterState, node_name: &str) -> BgpConfig {
    let node_key = format!("node.{node_name}");
    BgpConfig::effective(
        state.bgp_configuration("default"),
        state.bgp_configuration(&node_key),
    )
}

fn speaker_config(
    input: &ComputeInput<'_>,
    local: &CalicoNode,
    pools: &[IpPool],
    dataplane: &DataplaneInput,
    floating_ips: &FloatingIps,
) -> Option<SpeakerConfig> {
    let state = input.state;
    let router_id = match input.config.router_id {
        Some(RouterIdSetting::Address(address)) => address,
        Some(RouterIdSetting::Hash) => hashed_router_id(input.node_name),
        None => local.ipv4()?,
    };
    let bgp = effective_bgp_config(state, input.node_name);
    let mut nodes = state.nodes();
    if !nodes.iter().any(|node| node.name == local.name) {
        nodes.push(local.clone());
    }
    let peers = state.bgp_peers();
    let filters = state.bgp_filters();
    let sessions = compute_sessions(&PeeringInput {
        local,
        nodes: &nodes,
        config: &bgp,
        peers: &peers,
        filters: &filters,
    });
    let mut passwords = BTreeMap::new();
    for (name, session) in &sessions {
        let Some(reference) = &session.password else {
            continue;
        };
        match state.secret_value(&reference.name, &reference.key) {
            Some(password) => {
                passwords.insert(name.clone(), password.to_string());
            }
            None if reference.optional => {}
            None => tracing::warn!(
                session = %name,
                secret = %reference.name,
                key = %reference.key,
                "BGP password secret not found; the session runs without it"
            ),
        }
    }

    let own_blocks: Vec<OwnBlock> = state
        .affinities()
        .filter(|a| a.key.host == input.node_name && a.key.affinity_type == AffinityType::Host)
        .map(|a| OwnBlock {
            cidr: a.key.cidr,
            confirmed: a.state == AffinityState::Confirmed,
        })
        .collect();
    let mut originated: BTreeSet<IpNet> = own_blocks
        .iter()
        .filter(|block| block.confirmed && block.cidr.prefix_len() < block.cidr.max_prefix_len())
        .map(|block| block.cidr)
        .collect();
    // Local workloads whose address lies outside our own blocks were borrowed: announce /32s.
    // BIRD learned them from Felix's kernel route on the pod's veth, which export `interface`
    // rules match.
    let mut originated_interfaces = BTreeMap::new();
    for workload in &dataplane.workloads {
        for address in &workload.addresses {
            if !own_blocks.iter().any(|block| block.cidr.contains(address))
                && pools.iter().any(|pool| pool.contains(*address))
            {
                originated.insert(IpNet::from(*address));
                originated_interfaces.insert(IpNet::from(*address), workload.interface.clone());
            }
        }
    }
    // Floating IPs are announced by the node whose endpoint holds them (BIRD exported the
    // route Felix gave each one); the export policy passes those inside a pool, as Calico's.
    originated.extend(floating::originated(floating_ips));
    // Felix routes a floating IP to its pod's veth too (calico.md §5.2), so that is its
    // interface for export rules.
    for (external, internal) in &floating_ips.dnat {
        if let Some(workload) = dataplane
            .workloads
            .iter()
            .find(|workload| workload.addresses.contains(internal))
        {
            originated_interfaces.insert(IpNet::from(*external), workload.interface.clone());
        }
    }

    let communities: BTreeMap<&str, &str> = bgp
        .communities
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let prefix_advertisements = bgp
        .prefix_advertisements
        .iter()
        .map(|advertisement| PrefixAdvertisement {
            cidr: advertisement.cidr,
            communities: advertisement
                .communities
                .iter()
                .filter_map(|text| {
                    let value = communities.get(text.as_str()).copied().unwrap_or(text);
                    value.parse::<CommunityValue>().ok()
                })
                .collect(),
        })
        .collect();
    // Service ranges (§6.7): advertised from every node that is not excluded, never installed
    // from BGP. Per-service addresses come from `services::ServiceAdvertiser`, not from here.
    let service_settings = ServiceSettings::new(&bgp, local);
    let service_ranges = service_settings.global_routes();
    originated.extend(service_ranges.iter().copied());
    let policy = CalicoPolicy {
        own_blocks,
        pools: pools
            .iter()
            .map(|pool| PoolFacts {
                cidr: pool.cidr,
                disable_bgp_export: pool.disable_bgp_export,
                encapsulation: pool.encapsulation(),
                routes_owned_by_felix: false,
            })
            .collect(),
        prefix_advertisements,
        static_routes: service_ranges,
        route_reflector: local.is_route_reflector(),
        service_load_balancer_ips: bgp.service_load_balancer_ips.clone(),
        service_external_ips: bgp.service_external_ips.clone(),
        reject_cidrs: service_settings.reject_cidrs(),
        own_network_v4: local.ipv4_address.map(|net| IpNet::V4(net.trunc())),
        wireguard_peer_addresses: Vec::new(),
        normal_route_priority: bgp.ipv4_normal_route_priority,
    };
    Some(SpeakerConfig {
        router_id,
        local_as: local.as_number.unwrap_or(bgp.as_number),
        listen_address: bgp
            .bind_to_node_ip
            .then(|| local.ipv4().map(IpAddr::V4))
            .flatten(),
        listen_port: bgp.listen_port,
        sessions,
        passwords,
        originated: originated.into_iter().collect(),
        originated_interfaces,
        policy,
        graceful_restart_time: GRACEFUL_RESTART_TIME,
    })
}
