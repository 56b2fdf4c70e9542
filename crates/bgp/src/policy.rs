//! Calico's route policy over plain inputs (reference calico.md §6.5–6.6), as pure functions:
//!
//! * [`CalicoPolicy::export`] — what BIRD's `calico_export_to_bgp_peers(internal)` decides for a
//!   route towards one peer, including the communities `prefixAdvertisements` attach.
//! * [`CalicoPolicy::import`] — learned routes that fall inside this node's own blocks are
//!   refused (the node's own block route must never be replaced by a learned copy).
//! * [`CalicoPolicy::kernel`] — BIRD's `calico_kernel_programming` filter: whether a best
//!   learned route goes into the kernel, through `tunl0` or directly, and with which metric.
//!
//! The RIB's [`ExportPolicy`] / [`ImportPolicy`] traits are implemented on [`CalicoPolicy`]
//! with each route's [`RouteKind`] supplied by a caller-provided classifier.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;

use starling_model::pool::{EncapMode, PoolEncapsulation};

use starling_model::bgpfilter::{Direction, RouteFacts};

use super::codec::{Community, LargeCommunity};
use super::filter::FilterVerdict;
use super::rib::{Candidate, PeerConfig, RouteAttributes, RouteSource};

/// What kind of route is being exported (BIRD distinguished these by protocol and `ifname`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteKind {
    /// A local block affinity or a workload route inside one.
    LocalBlockOrWorkload,
    /// A route through Felix's VXLAN or WireGuard device (`*.cali`, `*.calico`).
    FelixTunnel,
    /// A route through `tunl0` while Felix owns IPIP routes.
    FelixIpip,
    /// A BPF-mode device route (`bpf*.cali`).
    Bpf,
    /// A service address route (`serviceClusterIPs` and per-service /32s).
    Service,
    /// Learned over BGP.
    Learned,
    /// Anything else (e.g. connected networks).
    Other,
}

/// One IP pool as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolFacts {
    pub cidr: IpNet,
    pub disable_bgp_export: bool,
    pub encapsulation: PoolEncapsulation,
    /// Felix, not the BGP speaker, installs this pool's routes (calico.md §0, §6.6 step 4).
    pub routes_owned_by_felix: bool,
}

/// A community value from `prefixAdvertisements`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommunityValue {
    Standard(Community),
    Large(LargeCommunity),
}

impl std::str::FromStr for CommunityValue {
    type Err = String;

    /// Parses Calico's `aa:nn` (16-bit parts) or `aa:nn:mm` (32-bit parts).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.trim().split(':').collect();
        let error = || format!("{text:?} is not a community (expected aa:nn or aa:nn:mm)");
        match parts.as_slice() {
            [asn, value] => Ok(CommunityValue::Standard(Community::new(
                asn.parse().map_err(|_| error())?,
                value.parse().map_err(|_| error())?,
            ))),
            [global, first, second] => Ok(CommunityValue::Large(LargeCommunity {
                global_administrator: global.parse().map_err(|_| error())?,
                local_data_1: first.parse().map_err(|_| error())?,
                local_data_2: second.parse().map_err(|_| error())?,
            })),
            _ => Err(error()),
        }
    }
}

/// A `prefixAdvertisements` entry with its communities already resolved from names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixAdvertisement {
    pub cidr: IpNet,
    pub communities: Vec<CommunityValue>,
}

/// A local block affinity and whether it is confirmed (pending and pending-deletion blocks are
/// not advertised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnBlock {
    pub cidr: IpNet,
    pub confirmed: bool,
}

/// Everything Calico's rules depend on for one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CalicoPolicy {
    pub own_blocks: Vec<OwnBlock>,
    pub pools: Vec<PoolFacts>,
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// Static (service) routes this node advertises (`/calico/staticroutes`).
    pub static_routes: Vec<IpNet>,
    /// This node is a route reflector.
    pub route_reflector: bool,
    pub service_load_balancer_ips: Vec<IpNet>,
    pub service_external_ips: Vec<IpNet>,
    /// CIDRs never installed from BGP (`/calico/rejectcidrs`: service ranges we advertise).
    pub reject_cidrs: Vec<IpNet>,
    /// Own network of the node's IPv4 address (IPIP CrossSubnet decision).
    pub own_network_v4: Option<IpNet>,
    /// Node IPs of WireGuard-enabled peers, when this node runs WireGuard.
    pub wireguard_peer_addresses: Vec<IpAddr>,
    /// `ipv4NormalRoutePriority` / `ipv6NormalRoutePriority` (default 1024).
    pub normal_route_priority: u32,
}

/// Outcome of the export rules for one route and peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportDecision {
    Reject,
    /// Advertise, adding these communities.
    Accept(Vec<CommunityValue>),
}

/// How a learned route goes into the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelDecision {
    Reject,
    Install {
        /// Through `tunl0` onlink (IPIP) instead of directly.
        via_ipip_tunnel: bool,
        /// Route metric (priority); lower wins.
        metric: u32,
    },
}

/// Calico's default normal route priority.
pub const DEFAULT_NORMAL_ROUTE_PRIORITY: u32 = 1024;
/// BIRD's `2147483647 - local_pref` mapping ceiling (calico.md §6.4).
const METRIC_CEILING: u32 = 2_147_483_647;

fn within(prefix: &IpNet, cidr: &IpNet) -> bool {
    cidr.contains(prefix)
}

impl CalicoPolicy {
    /// §6.5, first match wins. `elevated_priority` is a more-specific local route whose metric
    /// is below the normal priority (live migration).
    pub fn export(
        &self,
        prefix: &IpNet,
        kind: RouteKind,
        internal_peer: bool,
        elevated_priority: bool,
    ) -> ExportDecision {
        // 1. Pools with BGP export disabled.
        if self
            .pools
            .iter()
            .any(|pool| pool.disable_bgp_export && within(prefix, &pool.cidr))
        {
            return ExportDecision::Reject;
        }
        // 2. Felix's tunnel routes never go to iBGP peers.
        if internal_peer && matches!(kind, RouteKind::FelixTunnel | RouteKind::FelixIpip) {
            return ExportDecision::Reject;
        }
        // 3. BPF device routes.
        if kind == RouteKind::Bpf {
            return ExportDecision::Reject;
        }
        // 4. Communities from prefixAdvertisements whose CIDR covers the route.
        let communities: Vec<CommunityValue> = self
            .prefix_advertisements
            .iter()
            .filter(|advertisement| within(prefix, &advertisement.cidr))
            .flat_map(|advertisement| advertisement.communities.iter().copied())
            .collect();
        let accept = ExportDecision::Accept(communities);
        // 5. Own confirmed blocks: the block itself, more-specifics only when elevated.
        for block in self.own_blocks.iter().filter(|block| block.confirmed) {
            if *prefix == block.cidr {
                return accept;
            }
            if within(prefix, &block.cidr) {
                return if elevated_priority {
                    accept
                } else {
                    ExportDecision::Reject
                };
            }
        }
        // 6. Static (service) routes: the configured ranges and per-service addresses.
        if kind == RouteKind::Service || self.static_routes.contains(prefix) {
            return accept;
        }
        // 7. Route reflectors pass service LoadBalancer and external IPs (IPv4).
        if self.route_reflector
            && prefix.addr().is_ipv4()
            && self
                .service_load_balancer_ips
                .iter()
                .chain(&self.service_external_ips)
                .any(|cidr| within(prefix, cidr))
        {
            return accept;
        }
        // 8. Anything inside an exportable pool (borrowed /32s, reflected pool routes).
        if self.pools.iter().any(|pool| within(prefix, &pool.cidr)) {
            return accept;
        }
        ExportDecision::Reject
    }

    /// Import rule: refuse learned routes inside this node's own blocks.
    pub fn import(&self, prefix: &IpNet) -> bool {
        !self
            .own_blocks
            .iter()
            .any(|block| within(prefix, &block.cidr))
    }

    /// §6.6 for a best learned route with its next hop and LOCAL_PREF.
    pub fn kernel(
        &self,
        prefix: &IpNet,
        next_hop: Option<IpAddr>,
        local_pref: Option<u32>,
    ) -> KernelDecision {
        // 1. Service ranges this node advertises itself.
        if self.reject_cidrs.iter().any(|cidr| within(prefix, cidr)) {
            return KernelDecision::Reject;
        }
        // 2. Metric from LOCAL_PREF (v3.32+): 2147483647 - local_pref, else the normal priority.
        let normal = if self.normal_route_priority == 0 {
            DEFAULT_NORMAL_ROUTE_PRIORITY
        } else {
            self.normal_route_priority
        };
        let metric = local_pref.map_or(normal, |local_pref| {
            METRIC_CEILING.saturating_sub(local_pref)
        });
        // 3. WireGuard peers' traffic goes through WireGuard, not BGP routes.
        if next_hop.is_some_and(|next_hop| self.wireguard_peer_addresses.contains(&next_hop)) {
            return KernelDecision::Reject;
        }
        // 4. Per pool.
        if let Some(pool) = self.pools.iter().find(|pool| within(prefix, &pool.cidr)) {
            return match pool.encapsulation {
                PoolEncapsulation::Vxlan(_) => KernelDecision::Reject,
                _ if pool.routes_owned_by_felix => KernelDecision::Reject,
                PoolEncapsulation::Ipip(mode) if prefix.addr().is_ipv4() => {
                    let same_subnet = match (self.own_network_v4, next_hop) {
                        (Some(network), Some(next_hop)) => network.contains(&next_hop),
                        _ => false,
                    };
                    KernelDecision::Install {
                        via_ipip_tunnel: mode == EncapMode::Always
                            || (mode == EncapMode::CrossSubnet && !same_subnet),
                        metric,
                    }
                }
                _ => KernelDecision::Install {
                    via_ipip_tunnel: false,
                    metric,
                },
            };
        }
        // 5. Everything else.
        KernelDecision::Install {
            via_ipip_tunnel: false,
            metric,
        }
    }
}

/// [`CalicoPolicy`] bound to a route classifier, usable as the RIB's import and export policy.
pub struct CalicoRibPolicy<'a, Classify: Fn(&IpNet, &Candidate) -> (RouteKind, bool)> {
    pub policy: &'a CalicoPolicy,
    /// Returns the route's kind and whether it has elevated priority.
    pub classify: Classify,
}

impl<Classify: Fn(&IpNet, &Candidate) -> (RouteKind, bool)> super::rib::ExportPolicy
    for CalicoRibPolicy<'_, Classify>
{
    fn export(
        &self,
        peer: &PeerConfig,
        prefix: &IpNet,
        candidate: &Candidate,
        attributes: &mut Cow<'_, RouteAttributes>,
    ) -> bool {
        let from_peer = matches!(candidate.source, RouteSource::Peer(_));
        // BGPFilters run before Calico's rules (confd calls the filter functions first); an
        // Accept there exports the route as is, without prefixAdvertisements' communities.
        // `interface` rules match the candidate's interface, BIRD's `ifname`: a workload's veth
        // for its borrowed /32, the session interface for a peer's routes (BIRD uses the
        // interface toward the resolved next hop, which is the session's for single-hop peers),
        // nothing for blackhole blocks and service addresses (BIRD's ifname is empty there).
        let facts = RouteFacts {
            prefix,
            from_peer,
            interface: candidate.interface.as_deref(),
        };
        match peer.filters.decide(Direction::Export, &facts) {
            FilterVerdict::Accept => return true,
            FilterVerdict::Reject => return false,
            FilterVerdict::NoMatch => {}
        }
        let (kind, elevated) = match candidate.source {
            RouteSource::Peer(_) => (RouteKind::Learned, false),
            RouteSource::Local => (self.classify)(prefix, candidate),
        };
        match self
            .policy
            .export(prefix, kind, !peer.is_external(), elevated)
        {
            ExportDecision::Reject => false,
            ExportDecision::Accept(communities) => {
                for community in communities {
                    // Only copy the attributes when something is really added.
                    match community {
                        CommunityValue::Standard(value)
                            if !attributes.communities.contains(&value) =>
                        {
                            attributes.to_mut().communities.push(value)
                        }
                        CommunityValue::Large(value)
                            if !attributes.large_communities.contains(&value) =>
                        {
                            attributes.to_mut().large_communities.push(value)
                        }
                        _ => {}
                    }
                }
                true
            }
        }
    }
}

impl<Classify: Fn(&IpNet, &Candidate) -> (RouteKind, bool)> super::rib::ImportPolicy
    for CalicoRibPolicy<'_, Classify>
{
    /// Starling's own-block rule first (a safety rule no filter overrides), then the peer's
    /// BGPFilters; no matching rule accepts (Calico's import default).
    fn import(&self, peer: &PeerConfig, prefix: &IpNet, _: &mut Cow<'_, RouteAttributes>) -> bool {
        let facts = RouteFacts {
            prefix,
            from_peer: true,
            interface: peer.interface.as_deref(),
        };
        self.policy.import(prefix)
            && peer.filters.decide(Direction::Import, &facts) != FilterVerdict::Reject
    }
}

/// Which prefixes a policy change can affect, so only those are re-exported and re-installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyScope {
    Nothing,
    /// Prefixes inside any of these CIDRs.
    Within(Vec<IpNet>),
    /// A change that can affect any prefix (route reflector role, node subnet, priorities).
    All,
}

/// CIDRs of entries present in one list and not in the other.
fn changed_cidrs<T: PartialEq>(old: &[T], new: &[T], cidr: impl Fn(&T) -> IpNet) -> Vec<IpNet> {
    let mut cidrs: Vec<IpNet> = old
        .iter()
        .filter(|entry| !new.contains(entry))
        .chain(new.iter().filter(|entry| !old.contains(entry)))
        .map(cidr)
        .collect();
    cidrs.sort();
    cidrs.dedup();
    cidrs
}

impl CalicoPolicy {
    /// The prefixes whose export or kernel decision can differ between `self` and `new`.
    pub fn changed_scope(&self, new: &CalicoPolicy) -> PolicyScope {
        if self == new {
            return PolicyScope::Nothing;
        }
        if self.route_reflector != new.route_reflector
            || self.own_network_v4 != new.own_network_v4
            || self.wireguard_peer_addresses != new.wireguard_peer_addresses
            || self.normal_route_priority != new.normal_route_priority
        {
            return PolicyScope::All;
        }
        let mut scope = changed_cidrs(&self.own_blocks, &new.own_blocks, |block| block.cidr);
        scope.extend(changed_cidrs(&self.pools, &new.pools, |pool| pool.cidr));
        scope.extend(changed_cidrs(
            &self.prefix_advertisements,
            &new.prefix_advertisements,
            |advertisement| advertisement.cidr,
        ));
        for (old, new) in [
            (&self.static_routes, &new.static_routes),
            (
                &self.service_load_balancer_ips,
                &new.service_load_balancer_ips,
            ),
            (&self.service_external_ips, &new.service_external_ips),
            (&self.reject_cidrs, &new.reject_cidrs),
        ] {
            scope.extend(changed_cidrs(old, new, |cidr| *cidr));
        }
        scope.sort();
        scope.dedup();
        PolicyScope::Within(scope)
    }

    /// The kind of a route this node originates: blocks of VXLAN pools are Felix's tunnel
    /// routes (BIRD saw them on `vxlan.calico`), which never go to iBGP peers.
    pub fn classify_local(&self, prefix: &IpNet) -> RouteKind {
        let in_vxlan_pool = self.pools.iter().any(|pool| {
            matches!(pool.encapsulation, PoolEncapsulation::Vxlan(_)) && within(prefix, &pool.cidr)
        });
        if in_vxlan_pool {
            RouteKind::FelixTunnel
        } else {
            RouteKind::LocalBlockOrWorkload
        }
    }
}
