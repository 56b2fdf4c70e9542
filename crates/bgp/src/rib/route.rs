//! Routes as the RIB holds them: the attributes of one path in a form that is independent of
//! the wire (next hop as an address, mandatory attributes not optional), shared behind `Arc`
//! by every prefix that arrived in the same UPDATE.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::codec::{
    Aggregator, AsPath, Community, LargeCommunity, NextHop, Origin, PathAttributes, RawAttribute,
    Update,
};

/// Who a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteSource {
    /// Originated by this node (its blocks, service addresses, ...).
    Local,
    Peer(PeerId),
}

/// The caller's handle for a peer session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u32);

/// The attributes of one path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteAttributes {
    /// `None` for locally originated routes: the next hop is this node.
    pub next_hop: Option<IpAddr>,
    /// IPv6 link-local next hop sent beside the global one (RFC 2545 §3).
    pub link_local_next_hop: Option<Ipv6Addr>,
    pub origin: Origin,
    pub as_path: AsPath,
    pub multi_exit_disc: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub unknown: Vec<RawAttribute>,
}

impl RouteAttributes {
    /// Attributes for a route this node originates: IGP origin, empty path.
    pub fn local() -> RouteAttributes {
        RouteAttributes {
            next_hop: None,
            link_local_next_hop: None,
            origin: Origin::Igp,
            as_path: AsPath::default(),
            multi_exit_disc: None,
            local_pref: None,
            atomic_aggregate: false,
            aggregator: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            unknown: Vec::new(),
        }
    }

    /// The attributes an UPDATE gives its IPv4 NLRI and its MP_REACH prefixes. Missing
    /// mandatory attributes never reach here (the codec marks such UPDATEs treat-as-withdraw).
    pub(crate) fn from_update(
        update: &Update,
    ) -> (Option<Arc<RouteAttributes>>, Option<Arc<RouteAttributes>>) {
        let attributes = &update.attributes;
        let base = RouteAttributes {
            next_hop: None,
            link_local_next_hop: None,
            origin: attributes.origin.unwrap_or(Origin::Incomplete),
            as_path: attributes.as_path.clone().unwrap_or_default(),
            multi_exit_disc: attributes.multi_exit_disc,
            local_pref: attributes.local_pref,
            atomic_aggregate: attributes.atomic_aggregate,
            aggregator: attributes.aggregator,
            communities: attributes.communities.clone(),
            large_communities: attributes.large_communities.clone(),
            originator_id: attributes.originator_id,
            cluster_list: attributes.cluster_list.clone(),
            unknown: attributes.unknown.clone(),
        };
        let ipv4 = attributes.next_hop.map(|next_hop| {
            Arc::new(RouteAttributes {
                next_hop: Some(IpAddr::V4(next_hop)),
                ..base.clone()
            })
        });
        let multiprotocol = attributes.mp_reach.as_ref().map(|reach| {
            let (next_hop, link_local) = match reach.next_hop {
                NextHop::V4(address) => (IpAddr::V4(address), None),
                NextHop::V6 { global, link_local } => (IpAddr::V6(global), link_local),
            };
            Arc::new(RouteAttributes {
                next_hop: Some(next_hop),
                link_local_next_hop: link_local,
                ..base
            })
        });
        (ipv4, multiprotocol)
    }

    /// The codec attributes for sending (NEXT_HOP / MP_REACH are filled in by the packer).
    pub(crate) fn to_path_attributes(&self) -> PathAttributes {
        PathAttributes {
            origin: Some(self.origin),
            as_path: Some(self.as_path.clone()),
            multi_exit_disc: self.multi_exit_disc,
            local_pref: self.local_pref,
            atomic_aggregate: self.atomic_aggregate,
            aggregator: self.aggregator,
            communities: self.communities.clone(),
            large_communities: self.large_communities.clone(),
            originator_id: self.originator_id,
            cluster_list: self.cluster_list.clone(),
            unknown: self.unknown.clone(),
            ..PathAttributes::default()
        }
    }
}

/// Facts about the peer a route came from that the decision process needs, captured when the
/// route arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerFacts {
    pub address: IpAddr,
    pub router_id: Ipv4Addr,
    pub external: bool,
    pub route_reflector_client: bool,
}

/// One path for a prefix in the Loc-RIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub source: RouteSource,
    /// `None` for local routes.
    pub peer: Option<PeerFacts>,
    pub attributes: Arc<RouteAttributes>,
    /// Kept from a peer that went down gracefully (RFC 4724 §4.2), awaiting refresh.
    pub stale: bool,
    /// The interface the route points out of, as BIRD's `ifname` would give it to export
    /// filters: a local route's device (a workload's veth), or the session interface of the
    /// peer it came from; `None` for routes without one (blackhole blocks, service addresses).
    pub interface: Option<Arc<str>>,
}
