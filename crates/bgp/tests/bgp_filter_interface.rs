//! BGPFilter `interface` rules on export, as BIRD's `ifname` gave them in Calico: a borrowed
//! workload /32 carries its pod's veth, a peer's routes the session's interface, blackhole
//! blocks and service addresses none (an `interface` rule never matches them).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::{json, Value};
use starling_bgp::codec::{AsPath, Family, Origin, PathAttributes, Update};
use starling_bgp::filter::{FilterChain, FilterSet};
use starling_bgp::policy::{CalicoPolicy, CalicoRibPolicy, OwnBlock, PoolFacts, RouteKind};
use starling_bgp::rib::{
    Candidate, PeerConfig, PeerId, PeerSession, Rib, RibConfig, RouteAttributes,
};
use starling_model::pool::PoolEncapsulation;
use starling_model::validate::bgpfilter::validate_bgp_filter;
use starling_model::{AsNumber, NextHopMode};

const BLOCK: &str = "10.244.1.0/26";
const BORROWED: &str = "10.244.2.7/32";
const TUNNEL_ROUTE: &str = "10.244.3.1/32";
const SERVICE: &str = "10.96.0.0/12";
/// Learned from the eBGP peer, inside the pool (Calico's rules pass it on).
const LEARNED: &str = "10.244.9.0/26";

const TOR: PeerId = PeerId(1);
const UPSTREAM: PeerId = PeerId(2);

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn chain(rules: Value) -> FilterChain {
    let spec = serde_json::from_value(json!({ "exportV4": rules })).unwrap();
    let filter = validate_bgp_filter("f", &spec).unwrap();
    let known: FilterSet = [("f".to_string(), Ok(Arc::new(filter)))]
        .into_iter()
        .collect();
    FilterChain::resolve("tor", &["f".to_string()], &known)
}

fn peer_config(index: u8, peer_as: u32, interface: &str, filters: FilterChain) -> PeerConfig {
    PeerConfig {
        address: IpAddr::V4(Ipv4Addr::new(172, 16, 0, index)),
        peer_as: AsNumber(peer_as),
        local_as: AsNumber(64512),
        route_reflector_client: false,
        next_hop_mode: NextHopMode::Auto,
        local_address_v4: Some(Ipv4Addr::new(172, 16, 0, 1)),
        local_address_v6: None,
        allowed_local_as: 0,
        filters,
        interface: Some(interface.to_string()),
    }
}

fn policy() -> CalicoPolicy {
    CalicoPolicy {
        own_blocks: vec![OwnBlock {
            cidr: net(BLOCK),
            confirmed: true,
        }],
        pools: vec![PoolFacts {
            cidr: net("10.244.0.0/16"),
            disable_bgp_export: false,
            encapsulation: PoolEncapsulation::NoEncap,
            routes_owned_by_felix: false,
        }],
        static_routes: vec![net(SERVICE)],
        ..CalicoPolicy::default()
    }
}

/// A node with its block, a borrowed /32 on a workload veth, a /32 on `vxlan.calico`, a service
/// range, and a route learned from an eBGP upstream over `eth1`; the iBGP peer `tor` (over
/// `eth0`) runs `filters`.
fn rib(filters: FilterChain) -> Rib {
    let mut rib = Rib::new(RibConfig {
        local_as: AsNumber(64512),
        router_id: Ipv4Addr::new(172, 16, 0, 1),
        cluster_id: None,
    });
    rib.add_peer(TOR, peer_config(2, 64512, "eth0", filters));
    rib.add_peer(UPSTREAM, peer_config(3, 64600, "eth1", FilterChain::None));
    for (id, router_id) in [(TOR, 2), (UPSTREAM, 3)] {
        rib.peer_established(
            id,
            PeerSession {
                router_id: Ipv4Addr::new(172, 16, 0, router_id),
                families: vec![Family::IPV4_UNICAST],
                graceful_restart: None,
            },
        );
    }
    rib.originate(net(BLOCK), RouteAttributes::local());
    rib.originate_via(
        net(BORROWED),
        RouteAttributes::local(),
        Some("cali1a2b3c4d5e6"),
    );
    rib.originate_via(
        net(TUNNEL_ROUTE),
        RouteAttributes::local(),
        Some("vxlan.calico"),
    );
    rib.originate(net(SERVICE), RouteAttributes::local());
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            next_hop: Some(Ipv4Addr::new(172, 16, 0, 3)),
            ..Default::default()
        },
        nlri: vec![LEARNED.parse().unwrap()],
        ..Default::default()
    };
    rib.apply_update(UPSTREAM, &update, &accept_all);
    rib
}

fn accept_all(_: &PeerConfig, _: &IpNet, _: &mut Cow<'_, RouteAttributes>) -> bool {
    true
}

/// What `tor` holds after the next export, sorted (`advertised` follows its Adj-RIB-Out).
fn exported(rib: &mut Rib, advertised: &mut BTreeSet<String>) -> Vec<String> {
    let policy = policy();
    let rib_policy = CalicoRibPolicy {
        policy: &policy,
        classify: |prefix: &IpNet, _: &Candidate| {
            let kind = if *prefix == net(SERVICE) {
                RouteKind::Service
            } else {
                RouteKind::LocalBlockOrWorkload
            };
            (kind, false)
        },
    };
    let batch = rib.export(TOR, &rib_policy);
    for prefix in batch.withdraw.values().flatten() {
        advertised.remove(&prefix.to_string());
    }
    advertised.extend(batch.announce.values().flatten().map(|p| p.to_string()));
    advertised.iter().cloned().collect()
}

/// What a fresh node sends `tor` with `filters`.
fn sent(filters: FilterChain) -> Vec<String> {
    exported(&mut rib(filters), &mut BTreeSet::new())
}

const EVERYTHING: [&str; 5] = [SERVICE, BLOCK, BORROWED, TUNNEL_ROUTE, LEARNED];

fn all_but(excluded: &[&str]) -> Vec<String> {
    let mut prefixes: Vec<String> = EVERYTHING
        .iter()
        .filter(|prefix| !excluded.contains(prefix))
        .map(|prefix| prefix.to_string())
        .collect();
    prefixes.sort();
    prefixes
}

#[test]
fn without_filters_calicos_rules_send_everything() {
    assert_eq!(sent(FilterChain::None), all_but(&[]));
}

#[test]
fn workload_pattern_rejects_only_the_borrowed_address() {
    let filters = chain(json!([{"action": "Reject", "interface": "cali*"}]));
    assert_eq!(sent(filters), all_but(&[BORROWED]));
}

#[test]
fn tunnel_pattern_matches_the_felix_device_route() {
    let filters = chain(json!([{"action": "Reject", "interface": "*.calico"}]));
    assert_eq!(sent(filters), all_but(&[TUNNEL_ROUTE]));
}

#[test]
fn learned_routes_carry_the_interface_of_their_session() {
    // The upstream's session runs over eth1, tor's over eth0: only eth1 is the route's.
    let eth1 = chain(json!([{"action": "Reject", "interface": "eth1"}]));
    assert_eq!(sent(eth1), all_but(&[LEARNED]));
    let eth0 = chain(json!([{"action": "Reject", "interface": "eth0"}]));
    assert_eq!(sent(eth0), all_but(&[]));
}

#[test]
fn routes_without_an_interface_never_match_even_a_catch_all_pattern() {
    // `*` matches every name, so only the block and the service range (no interface) are left
    // to Calico's rules.
    let filters = chain(json!([{"action": "Reject", "interface": "*"}]));
    assert_eq!(sent(filters), all_but(&[BORROWED, TUNNEL_ROUTE, LEARNED]));
    // And an Accept for `*` lets out what has an interface only.
    let accept = chain(json!([
        {"action": "Accept", "interface": "*"},
        {"action": "Reject"}
    ]));
    assert_eq!(sent(accept), all_but(&[SERVICE, BLOCK]));
}

#[test]
fn non_matching_patterns_leave_calicos_rules_in_charge() {
    for pattern in ["tunl0", "cali", "*.cali", "wg*", "eth2"] {
        let filters = chain(json!([{"action": "Reject", "interface": pattern}]));
        assert_eq!(sent(filters), all_but(&[]), "{pattern}");
    }
}

#[test]
fn a_changed_interface_is_re_exported() {
    let filters = chain(json!([{"action": "Reject", "interface": "cali*"}]));
    let mut rib = rib(filters);
    let mut advertised = BTreeSet::new();
    assert_eq!(exported(&mut rib, &mut advertised), all_but(&[BORROWED]));
    // The pod comes back on a veth the pattern does not cover: the /32 goes out now.
    let changed = rib.originate_via(net(BORROWED), RouteAttributes::local(), Some("tap0"));
    assert_eq!(changed, [net(BORROWED)]);
    assert_eq!(exported(&mut rib, &mut advertised), all_but(&[]));
    // An `eth0` rule on tor matches nothing yet; then the upstream's session moves to eth0
    // and its route follows, on the next export without any new UPDATE.
    let eth0 = chain(json!([{"action": "Reject", "interface": "eth0"}]));
    rib.add_peer(TOR, peer_config(2, 64512, "eth0", eth0));
    assert_eq!(exported(&mut rib, &mut advertised), all_but(&[]));
    rib.add_peer(UPSTREAM, peer_config(3, 64600, "eth0", FilterChain::None));
    assert_eq!(exported(&mut rib, &mut advertised), all_but(&[LEARNED]));
    let best = rib.best(&net(LEARNED)).unwrap();
    assert_eq!(best.interface.as_deref(), Some("eth0"));
}
