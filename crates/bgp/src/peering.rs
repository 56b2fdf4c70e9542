//! Calico's peering model (reference §6.3) as a pure function: from the local node, all nodes,
//! the effective BGPConfiguration and the BGPPeers, compute the BGP sessions this node must run.
//!
//! Rules reproduced from Calico's configuration generator:
//! - node-to-node mesh (when enabled and this node is not a route reflector): one iBGP peer per
//!   other non-reflector node that has an address of the family;
//! - explicit BGPPeers: global peers first, then node-specific ones; a node-specific peer to an
//!   address that already has a global peer is dropped; `peerSelector` expands to the selected
//!   nodes' addresses; automatic reverse peering gives the selected nodes the peering back;
//! - a peer equal to our own address is skipped;
//! - the side whose address sorts higher *as a string* is passive towards another Calico node,
//!   so exactly one side connects (Calico's rule; mixed clusters rely on it);
//! - a reflector treats iBGP peers without its cluster ID as route-reflector clients.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::filter::{FilterChain, FilterSet};
use starling_model::bgp::{BfdSettings, ImportLimit, PeerScope, SecretKeyRef};
use starling_model::{AsNumber, BgpConfig, BgpPeer, CalicoNode, NextHopMode, PeerTarget};

/// Which rule produced a session; shown by `node status` as the PEER TYPE column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerKind {
    Mesh,
    Global,
    NodeSpecific,
}

impl PeerKind {
    /// The wording calicoctl uses.
    pub fn label(self) -> &'static str {
        match self {
            PeerKind::Mesh => "node-to-node mesh",
            PeerKind::Global => "global",
            PeerKind::NodeSpecific => "node specific",
        }
    }

    fn name_prefix(self) -> &'static str {
        match self {
            PeerKind::Mesh => "Mesh",
            PeerKind::Global => "Global",
            PeerKind::NodeSpecific => "Node",
        }
    }
}

/// One BGP session this node should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// Calico's protocol name, e.g. `Mesh_10_0_0_7` or `Node_10_0_0_9_port_1179`.
    pub name: String,
    pub kind: PeerKind,
    pub peer_address: IpAddr,
    pub peer_port: u16,
    pub peer_as: AsNumber,
    pub local_as: AsNumber,
    /// Our address for the session (`sourceAddress: UseNodeIP`), if known.
    pub source_address: Option<IpAddr>,
    /// Wait for the peer to connect instead of connecting.
    pub passive: bool,
    pub password: Option<SecretKeyRef>,
    pub keepalive_time: Option<Duration>,
    pub graceful_restart_time: Option<Duration>,
    pub ttl_security: Option<u8>,
    pub next_hop_mode: NextHopMode,
    /// Treat the peer as a route-reflector client, with this cluster ID.
    pub route_reflector_client_cluster_id: Option<std::net::Ipv4Addr>,
    /// The peer is a Calico node (by address).
    pub peer_is_calico_node: bool,
    pub num_allowed_local_as_numbers: Option<u32>,
    /// The peer's import limit (explicit BGPPeers only; mesh sessions have none).
    pub import_limit: Option<ImportLimit>,
    /// The peer's BGPFilters, resolved (explicit BGPPeers only; mesh sessions have none).
    pub filters: FilterChain,
    /// BFD from the BGPPeer's annotations, or for mesh sessions the `default` BGPConfiguration's.
    pub bfd: Option<BfdSettings>,
}

impl SessionSpec {
    pub fn is_ebgp(&self) -> bool {
        self.peer_as != self.local_as
    }
}

fn node_address(node: &CalicoNode, ipv4: bool) -> Option<IpAddr> {
    if ipv4 {
        node.ipv4().map(IpAddr::V4)
    } else {
        node.ipv6().map(IpAddr::V6)
    }
}

fn session_name(kind: PeerKind, address: IpAddr, port: Option<u16>) -> String {
    let mut name = format!(
        "{}_{}",
        kind.name_prefix(),
        address.to_string().replace(['.', ':'], "_")
    );
    if let Some(port) = port {
        name.push_str(&format!("_port_{port}"));
    }
    name
}

/// Inputs of the peering computation.
pub struct PeeringInput<'a> {
    pub local: &'a CalicoNode,
    /// Every Calico node, including the local one.
    pub nodes: &'a [CalicoNode],
    pub config: &'a BgpConfig,
    pub peers: &'a [BgpPeer],
    /// Every BGPFilter by name (what `BGPPeer.spec.filters` refers to).
    pub filters: &'a FilterSet,
}

struct Builder<'a> {
    input: &'a PeeringInput<'a>,
    local_as: AsNumber,
    sessions: BTreeMap<String, SessionSpec>,
    /// Addresses that already have a global peer (node-specific ones to them are dropped).
    global_addresses: Vec<IpAddr>,
}

impl<'a> Builder<'a> {
    fn node_as(&self, node: &CalicoNode) -> AsNumber {
        node.as_number.unwrap_or(self.input.config.as_number)
    }

    fn calico_node_by_address(&self, address: IpAddr) -> Option<&'a CalicoNode> {
        self.input.nodes.iter().find(|n| {
            n.ipv4().map(IpAddr::V4) == Some(address) || n.ipv6().map(IpAddr::V6) == Some(address)
        })
    }

    fn own_address(&self, ipv4: bool) -> Option<IpAddr> {
        node_address(self.input.local, ipv4)
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        kind: PeerKind,
        address: IpAddr,
        port: Option<u16>,
        peer_as: AsNumber,
        peer_cluster_id: Option<std::net::Ipv4Addr>,
        template: Option<&BgpPeer>,
    ) {
        let own = self.own_address(address.is_ipv4());
        if own == Some(address) {
            return;
        }
        if kind == PeerKind::NodeSpecific && self.global_addresses.contains(&address) {
            return;
        }
        let calico_node = self.calico_node_by_address(address);
        let local_as = template
            .and_then(|p| p.local_as_number)
            .unwrap_or(self.local_as);
        let passive =
            calico_node.is_some() && own.is_some_and(|own| address.to_string() > own.to_string());
        let cluster_id = self.input.local.route_reflector_cluster_id;
        let rr_client = match cluster_id {
            Some(ours) if peer_as == local_as && peer_cluster_id != Some(ours) => Some(ours),
            _ => None,
        };
        let import_limit = template.and_then(|p| p.import_limit);
        let bfd = match template {
            Some(p) => p.bfd,
            None => self.input.config.node_mesh_bfd,
        };
        let filters = template.map_or(FilterChain::None, |p| {
            FilterChain::resolve(&p.name, &p.filters, self.input.filters)
        });
        let (password, keepalive, restart, ttl, source_node_ip, next_hop, allow_local_as) =
            match template {
                Some(p) => (
                    p.password.clone(),
                    p.keepalive_time,
                    p.max_restart_time,
                    p.ttl_security,
                    p.source_use_node_ip,
                    p.next_hop_mode,
                    p.num_allowed_local_as_numbers,
                ),
                None => (
                    self.input.config.node_mesh_password.clone(),
                    None,
                    self.input.config.node_mesh_max_restart_time,
                    None,
                    true,
                    NextHopMode::Auto,
                    None,
                ),
            };
        let name = session_name(kind, address, port);
        if kind == PeerKind::Global {
            self.global_addresses.push(address);
        }
        self.sessions.entry(name.clone()).or_insert(SessionSpec {
            name,
            kind,
            peer_address: address,
            peer_port: port.unwrap_or(self.input.config.listen_port),
            peer_as,
            local_as,
            source_address: if source_node_ip { own } else { None },
            passive,
            password,
            keepalive_time: keepalive,
            graceful_restart_time: restart,
            ttl_security: ttl,
            next_hop_mode: next_hop,
            route_reflector_client_cluster_id: rr_client,
            peer_is_calico_node: calico_node.is_some(),
            num_allowed_local_as_numbers: allow_local_as,
            import_limit,
            filters,
            bfd,
        });
    }

    fn mesh(&mut self) {
        if !self.input.config.node_to_node_mesh_enabled || self.input.local.is_route_reflector() {
            return;
        }
        for node in self.input.nodes {
            if node.name == self.input.local.name || node.is_route_reflector() {
                continue;
            }
            for ipv4 in [true, false] {
                if let (Some(address), Some(_)) = (node_address(node, ipv4), self.own_address(ipv4))
                {
                    self.add(
                        PeerKind::Mesh,
                        address,
                        None,
                        self.node_as(node),
                        None,
                        None,
                    );
                }
            }
        }
    }

    fn applies_to(scope: &PeerScope, node: &CalicoNode) -> bool {
        match scope {
            PeerScope::Global => true,
            PeerScope::Node(name) => *name == node.name,
            PeerScope::NodeSelector(selector) => selector.matches(&node.labels),
        }
    }

    /// Peerings defined by `peer` for the local node (forward direction).
    fn forward(&mut self, peer: &'a BgpPeer, kind: PeerKind) {
        if !Self::applies_to(&peer.scope, self.input.local) {
            return;
        }
        match &peer.target {
            PeerTarget::Address { ip, port } => {
                let peer_as = peer
                    .as_number
                    .or_else(|| self.calico_node_by_address(*ip).map(|n| self.node_as(n)))
                    .unwrap_or(self.input.config.as_number);
                let cluster = self
                    .calico_node_by_address(*ip)
                    .and_then(|n| n.route_reflector_cluster_id);
                self.add(kind, *ip, *port, peer_as, cluster, Some(peer));
            }
            PeerTarget::Nodes(selector) => {
                for node in self.input.nodes {
                    if node.name == self.input.local.name || !selector.matches(&node.labels) {
                        continue;
                    }
                    for ipv4 in [true, false] {
                        if let Some(address) = node_address(node, ipv4) {
                            let node_as = self.node_as(node);
                            self.add(
                                kind,
                                address,
                                None,
                                node_as,
                                node.route_reflector_cluster_id,
                                Some(peer),
                            );
                        }
                    }
                }
            }
            // Local workload peers need the local pods' addresses; the speaker adds them at run time.
            PeerTarget::LocalWorkloads(_) => {}
        }
    }

    /// Automatic reverse peering: when the local node is the *target* of `peer`, it peers back
    /// with every node the peer applies to.
    fn reverse(&mut self, peer: &'a BgpPeer) {
        if peer.reverse_peering_manual {
            return;
        }
        let local = self.input.local;
        let targeted = match &peer.target {
            PeerTarget::Nodes(selector) => selector.matches(&local.labels),
            PeerTarget::Address { ip, .. } => {
                let own = node_address(local, ip.is_ipv4());
                own == Some(*ip) && peer.as_number.is_none_or(|asn| asn == self.node_as(local))
            }
            PeerTarget::LocalWorkloads(_) => false,
        };
        if !targeted {
            return;
        }
        for node in self.input.nodes {
            if node.name == local.name || !Self::applies_to(&peer.scope, node) {
                continue;
            }
            for ipv4 in [true, false] {
                if let Some(address) = node_address(node, ipv4) {
                    let node_as = self.node_as(node);
                    self.add(
                        PeerKind::NodeSpecific,
                        address,
                        None,
                        node_as,
                        node.route_reflector_cluster_id,
                        Some(peer),
                    );
                }
            }
        }
    }
}

/// The sessions the local node runs, keyed by Calico's protocol name.
pub fn compute_sessions(input: &PeeringInput<'_>) -> BTreeMap<String, SessionSpec> {
    let local_as = input.local.as_number.unwrap_or(input.config.as_number);
    let mut builder = Builder {
        input,
        local_as,
        sessions: BTreeMap::new(),
        global_addresses: Vec::new(),
    };
    builder.mesh();
    let mut peers: Vec<&BgpPeer> = input.peers.iter().collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    for peer in peers.iter().filter(|p| p.scope == PeerScope::Global) {
        builder.forward(peer, PeerKind::Global);
    }
    for peer in peers.iter().filter(|p| p.scope != PeerScope::Global) {
        builder.forward(peer, PeerKind::NodeSpecific);
    }
    for peer in &peers {
        builder.reverse(peer);
    }
    builder.sessions
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_selector::Selector;

    fn node(name: &str, ip: &str, labels: &[(&str, &str)]) -> CalicoNode {
        CalicoNode {
            name: name.into(),
            ipv4_address: Some(format!("{ip}/24").parse().unwrap()),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn peer(name: &str, scope: PeerScope, target: PeerTarget) -> BgpPeer {
        BgpPeer {
            name: name.into(),
            scope,
            target,
            as_number: None,
            local_as_number: None,
            password: None,
            keepalive_time: None,
            max_restart_time: None,
            ttl_security: None,
            source_use_node_ip: true,
            next_hop_mode: NextHopMode::Auto,
            num_allowed_local_as_numbers: None,
            reverse_peering_manual: false,
            reachable_by: None,
            filters: Vec::new(),
            import_limit: None,
            bfd: None,
        }
    }

    #[test]
    fn full_mesh_with_string_ordered_passive_side() {
        let nodes = vec![
            node("a", "10.0.0.5", &[]),
            node("b", "10.0.0.7", &[]),
            node("c", "10.0.0.10", &[]),
        ];
        let config = BgpConfig::default();
        let sessions = compute_sessions(&PeeringInput {
            local: &nodes[0],
            nodes: &nodes,
            config: &config,
            peers: &[],
            filters: &FilterSet::new(),
        });
        let names: Vec<&str> = sessions.keys().map(String::as_str).collect();
        assert_eq!(names, ["Mesh_10_0_0_10", "Mesh_10_0_0_7"]);
        // "10.0.0.7" > "10.0.0.5": passive; "10.0.0.10" < "10.0.0.5" as strings: active.
        assert!(sessions["Mesh_10_0_0_7"].passive);
        assert!(!sessions["Mesh_10_0_0_10"].passive);
        assert_eq!(sessions["Mesh_10_0_0_7"].peer_as, AsNumber(64512));
        assert_eq!(
            sessions["Mesh_10_0_0_7"].source_address,
            Some("10.0.0.5".parse().unwrap())
        );
    }

    #[test]
    fn route_reflector_topology() {
        let mut rr = node("rr", "10.0.0.1", &[("route-reflector", "true")]);
        rr.route_reflector_cluster_id = Some("224.0.0.1".parse().unwrap());
        let nodes = vec![rr, node("c1", "10.0.0.2", &[]), node("c2", "10.0.0.3", &[])];
        let config = BgpConfig {
            node_to_node_mesh_enabled: false,
            ..BgpConfig::default()
        };
        let peers = vec![peer(
            "peer-with-rr",
            PeerScope::NodeSelector(Selector::parse("!has(route-reflector)").unwrap()),
            PeerTarget::Nodes(Selector::parse("has(route-reflector)").unwrap()),
        )];
        let client = compute_sessions(&PeeringInput {
            local: &nodes[1],
            nodes: &nodes,
            config: &config,
            peers: &peers,
            filters: &FilterSet::new(),
        });
        assert_eq!(client.keys().collect::<Vec<_>>(), ["Node_10_0_0_1"]);
        assert_eq!(
            client["Node_10_0_0_1"].route_reflector_client_cluster_id,
            None
        );

        let reflector = compute_sessions(&PeeringInput {
            local: &nodes[0],
            nodes: &nodes,
            config: &config,
            peers: &peers,
            filters: &FilterSet::new(),
        });
        assert_eq!(
            reflector.keys().collect::<Vec<_>>(),
            ["Node_10_0_0_2", "Node_10_0_0_3"]
        );
        for session in reflector.values() {
            assert_eq!(
                session.route_reflector_client_cluster_id,
                Some("224.0.0.1".parse().unwrap())
            );
            assert_eq!(session.kind.label(), "node specific");
        }
    }

    #[test]
    fn global_peer_shadows_node_specific_and_port_in_name() {
        let nodes = vec![node("a", "10.0.0.5", &[])];
        let config = BgpConfig::default();
        let mut global = peer(
            "tor",
            PeerScope::Global,
            PeerTarget::Address {
                ip: "10.0.0.254".parse().unwrap(),
                port: None,
            },
        );
        global.as_number = Some(AsNumber(65001));
        let mut specific = peer(
            "tor-node",
            PeerScope::Node("a".into()),
            PeerTarget::Address {
                ip: "10.0.0.254".parse().unwrap(),
                port: None,
            },
        );
        specific.as_number = Some(AsNumber(65002));
        let mut ported = peer(
            "other",
            PeerScope::Node("a".into()),
            PeerTarget::Address {
                ip: "10.0.0.253".parse().unwrap(),
                port: Some(1179),
            },
        );
        ported.as_number = Some(AsNumber(65003));
        let sessions = compute_sessions(&PeeringInput {
            local: &nodes[0],
            nodes: &nodes,
            config: &config,
            peers: &[global, specific, ported],
            filters: &FilterSet::new(),
        });
        assert_eq!(
            sessions.keys().collect::<Vec<_>>(),
            ["Global_10_0_0_254", "Node_10_0_0_253_port_1179"]
        );
        assert!(sessions["Global_10_0_0_254"].is_ebgp());
        assert_eq!(sessions["Node_10_0_0_253_port_1179"].peer_port, 1179);
        assert!(!sessions["Global_10_0_0_254"].peer_is_calico_node);
    }

    #[test]
    fn own_address_is_never_a_peer() {
        let nodes = vec![node("a", "10.0.0.5", &[])];
        let mut me = peer(
            "self",
            PeerScope::Global,
            PeerTarget::Address {
                ip: "10.0.0.5".parse().unwrap(),
                port: None,
            },
        );
        me.reverse_peering_manual = true;
        let sessions = compute_sessions(&PeeringInput {
            local: &nodes[0],
            nodes: &nodes,
            config: &BgpConfig::default(),
            peers: &[me],
            filters: &FilterSet::new(),
        });
        assert!(sessions.is_empty());
    }

    #[test]
    fn bfd_comes_from_the_peer_or_for_the_mesh_from_the_configuration() {
        let nodes = vec![node("a", "10.0.0.5", &[]), node("b", "10.0.0.7", &[])];
        let mesh_bfd = BfdSettings {
            interval: Duration::from_millis(300),
            multiplier: 5,
        };
        let peer_bfd = BfdSettings {
            interval: Duration::from_millis(100),
            multiplier: 3,
        };
        let config = BgpConfig {
            node_mesh_bfd: Some(mesh_bfd),
            ..BgpConfig::default()
        };
        let mut tor = peer(
            "tor",
            PeerScope::Global,
            PeerTarget::Address {
                ip: "10.0.0.254".parse().unwrap(),
                port: None,
            },
        );
        tor.as_number = Some(AsNumber(65001));
        tor.bfd = Some(peer_bfd);
        let mut plain = tor.clone();
        plain.name = "plain".into();
        plain.target = PeerTarget::Address {
            ip: "10.0.0.253".parse().unwrap(),
            port: None,
        };
        plain.bfd = None;
        let sessions = compute_sessions(&PeeringInput {
            local: &nodes[0],
            nodes: &nodes,
            config: &config,
            peers: &[tor, plain],
            filters: &FilterSet::new(),
        });
        assert_eq!(sessions["Mesh_10_0_0_7"].bfd, Some(mesh_bfd));
        assert_eq!(sessions["Global_10_0_0_254"].bfd, Some(peer_bfd));
        // The mesh setting does not leak onto explicit peers.
        assert_eq!(sessions["Global_10_0_0_253"].bfd, None);
    }
}
