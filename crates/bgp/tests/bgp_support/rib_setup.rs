//! Helpers for the RIB tests: a RIB with fixed identity, peers by index, and UPDATE builders.
#![allow(dead_code)]

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;
use starling_bgp::codec::*;
use starling_bgp::rib::*;
use starling_model::{AsNumber, NextHopMode};

pub const OUR_AS: AsNumber = AsNumber(64512);

pub const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

pub const CLUSTER_ID: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);

pub fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

pub fn new_rib(cluster_id: Option<Ipv4Addr>) -> Rib {
    Rib::new(RibConfig {
        local_as: OUR_AS,
        router_id: ROUTER_ID,
        cluster_id,
    })
}

pub fn peer_config(index: u8, peer_as: AsNumber, client: bool) -> PeerConfig {
    PeerConfig {
        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10 + index)),
        peer_as,
        local_as: OUR_AS,
        route_reflector_client: client,
        next_hop_mode: NextHopMode::Auto,
        local_address_v4: Some(ROUTER_ID),
        local_address_v6: Some("2001:db8::1".parse().unwrap()),
        allowed_local_as: 0,
        interface: None,
        filters: Default::default(),
    }
}

pub fn session(index: u8) -> PeerSession {
    PeerSession {
        router_id: Ipv4Addr::new(192, 168, 0, 10 + index),
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        graceful_restart: Some(GracefulRestart {
            restarting: false,
            notification: false,
            restart_time: 120,
            families: vec![GracefulRestartFamily {
                family: Family::IPV4_UNICAST,
                forwarding_preserved: true,
            }],
        }),
    }
}

/// Adds and brings up a peer.
pub fn up(rib: &mut Rib, index: u8, peer_as: AsNumber, client: bool) -> PeerId {
    let id = PeerId(u32::from(index));
    rib.add_peer(id, peer_config(index, peer_as, client));
    rib.peer_established(id, session(index));
    // Drain the initial full export so later exports show only changes.
    rib.export(id, &AcceptAll);
    id
}

pub fn attributes(path: &[u32], next_hop: [u8; 4]) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence(path.iter().map(|asn| AsNumber(*asn)))),
        next_hop: Some(Ipv4Addr::from(next_hop)),
        ..PathAttributes::default()
    }
}

pub fn announce(attributes: PathAttributes, prefixes: &[&str]) -> Update {
    Update {
        attributes,
        nlri: prefixes
            .iter()
            .map(|prefix| prefix.parse().unwrap())
            .collect(),
        ..Update::default()
    }
}

pub fn accept_all(_: &PeerConfig, _: &IpNet, _: &mut Cow<'_, RouteAttributes>) -> bool {
    true
}

pub fn best_source(rib: &Rib, prefix: &str) -> Option<RouteSource> {
    rib.best(&net(prefix)).map(|candidate| candidate.source)
}

pub fn exported(batch: &ExportBatch) -> Vec<(IpNet, Arc<RouteAttributes>)> {
    let mut routes: Vec<(IpNet, Arc<RouteAttributes>)> = batch
        .announce
        .iter()
        .flat_map(|((_, attributes), prefixes)| {
            prefixes
                .iter()
                .map(move |prefix| (*prefix, attributes.clone()))
        })
        .collect();
    routes.sort_by_key(|(prefix, _)| *prefix);
    routes
}
