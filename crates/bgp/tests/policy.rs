//! Calico's export, import and kernel-programming rules (calico.md §6.5–6.6) over plain inputs,
//! and the policy plugged into the RIB.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use starling_bgp::codec::{Community, Family, GracefulRestart, LargeCommunity};
use starling_bgp::policy::*;
use starling_bgp::rib::*;
use starling_model::pool::{EncapMode, PoolEncapsulation};
use starling_model::{AsNumber, NextHopMode};

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn pool(cidr: &str, encapsulation: PoolEncapsulation) -> PoolFacts {
    PoolFacts {
        cidr: net(cidr),
        disable_bgp_export: false,
        encapsulation,
        routes_owned_by_felix: false,
    }
}

fn policy() -> CalicoPolicy {
    CalicoPolicy {
        own_blocks: vec![
            OwnBlock {
                cidr: net("10.244.1.0/26"),
                confirmed: true,
            },
            OwnBlock {
                cidr: net("10.244.1.64/26"),
                confirmed: false,
            },
        ],
        pools: vec![
            pool("10.244.0.0/16", PoolEncapsulation::Ipip(EncapMode::Always)),
            pool("10.250.0.0/16", PoolEncapsulation::Vxlan(EncapMode::Always)),
            pool(
                "10.251.0.0/16",
                PoolEncapsulation::Ipip(EncapMode::CrossSubnet),
            ),
            pool("10.252.0.0/16", PoolEncapsulation::NoEncap),
            PoolFacts {
                disable_bgp_export: true,
                ..pool("10.253.0.0/16", PoolEncapsulation::NoEncap)
            },
        ],
        prefix_advertisements: vec![PrefixAdvertisement {
            cidr: net("10.244.0.0/16"),
            communities: vec!["64512:100".parse().unwrap(), "64512:1:2".parse().unwrap()],
        }],
        static_routes: vec![net("10.96.0.0/12")],
        route_reflector: false,
        service_load_balancer_ips: vec![net("192.0.2.0/24")],
        service_external_ips: vec![],
        reject_cidrs: vec![net("10.96.0.0/12")],
        own_network_v4: Some(net("172.16.0.0/24")),
        wireguard_peer_addresses: vec![],
        normal_route_priority: 1024,
    }
}

fn tagged() -> ExportDecision {
    ExportDecision::Accept(vec![
        CommunityValue::Standard(Community::new(64512, 100)),
        CommunityValue::Large(LargeCommunity {
            global_administrator: 64512,
            local_data_1: 1,
            local_data_2: 2,
        }),
    ])
}

#[test]
fn community_values_parse_both_forms() {
    assert_eq!(
        "65000:7".parse::<CommunityValue>(),
        Ok(CommunityValue::Standard(Community::new(65000, 7)))
    );
    assert!(
        "70000:7".parse::<CommunityValue>().is_err(),
        "standard parts are 16-bit"
    );
    assert!("1:2:3:4".parse::<CommunityValue>().is_err());
    assert!("x:1".parse::<CommunityValue>().unwrap_err().contains("x:1"));
}

#[test]
fn own_confirmed_block_is_exported_with_communities() {
    let policy = policy();
    assert_eq!(
        policy.export(
            &net("10.244.1.0/26"),
            RouteKind::LocalBlockOrWorkload,
            true,
            false
        ),
        tagged()
    );
}

#[test]
fn more_specifics_of_own_block_only_when_elevated() {
    let policy = policy();
    let workload = net("10.244.1.5/32");
    assert_eq!(
        policy.export(&workload, RouteKind::LocalBlockOrWorkload, true, false),
        ExportDecision::Reject
    );
    assert_eq!(
        policy.export(&workload, RouteKind::LocalBlockOrWorkload, true, true),
        tagged()
    );
}

#[test]
fn unconfirmed_block_is_not_special_but_pool_rule_accepts() {
    // Pending blocks produce no calico_aggr statements; the pool rule (8) then applies.
    let policy = policy();
    assert_eq!(
        policy.export(
            &net("10.244.1.64/26"),
            RouteKind::LocalBlockOrWorkload,
            true,
            false
        ),
        tagged()
    );
}

#[test]
fn borrowed_address_inside_a_pool_is_exported() {
    let policy = policy();
    assert_eq!(
        policy.export(
            &net("10.252.7.9/32"),
            RouteKind::LocalBlockOrWorkload,
            true,
            false
        ),
        ExportDecision::Accept(vec![])
    );
}

#[test]
fn disabled_export_pool_is_never_exported() {
    let policy = policy();
    assert_eq!(
        policy.export(
            &net("10.253.0.0/26"),
            RouteKind::LocalBlockOrWorkload,
            false,
            true
        ),
        ExportDecision::Reject
    );
}

#[test]
fn felix_tunnel_routes_only_to_external_peers() {
    let policy = policy();
    let prefix = net("10.250.3.0/26");
    assert_eq!(
        policy.export(&prefix, RouteKind::FelixTunnel, true, false),
        ExportDecision::Reject
    );
    assert_eq!(
        policy.export(&prefix, RouteKind::FelixTunnel, false, false),
        ExportDecision::Accept(vec![])
    );
    assert_eq!(
        policy.export(&prefix, RouteKind::FelixIpip, true, false),
        ExportDecision::Reject
    );
    assert_eq!(
        policy.export(&prefix, RouteKind::Bpf, false, false),
        ExportDecision::Reject
    );
}

#[test]
fn static_service_routes_and_reflector_service_ranges() {
    let mut policy = policy();
    assert_eq!(
        policy.export(&net("10.96.0.0/12"), RouteKind::Service, true, false),
        ExportDecision::Accept(vec![])
    );
    let load_balancer = net("192.0.2.10/32");
    assert_eq!(
        policy.export(&load_balancer, RouteKind::Learned, true, false),
        ExportDecision::Reject
    );
    policy.route_reflector = true;
    assert_eq!(
        policy.export(&load_balancer, RouteKind::Learned, true, false),
        ExportDecision::Accept(vec![])
    );
}

#[test]
fn anything_else_is_rejected() {
    assert_eq!(
        policy().export(&net("8.8.8.0/24"), RouteKind::Learned, false, false),
        ExportDecision::Reject
    );
}

#[test]
fn learned_routes_inside_own_blocks_are_refused() {
    let policy = policy();
    assert!(!policy.import(&net("10.244.1.0/26")));
    assert!(!policy.import(&net("10.244.1.7/32")));
    assert!(policy.import(&net("10.244.2.0/26")));
}

#[test]
fn kernel_programming_per_pool() {
    let policy = policy();
    let remote = Some(IpAddr::V4(Ipv4Addr::new(172, 16, 1, 5)));
    let local_subnet = Some(IpAddr::V4(Ipv4Addr::new(172, 16, 0, 5)));
    let install = |via_ipip_tunnel| KernelDecision::Install {
        via_ipip_tunnel,
        metric: 1024,
    };
    assert_eq!(
        policy.kernel(&net("10.244.2.0/26"), local_subnet, None),
        install(true),
        "IPIP Always"
    );
    assert_eq!(
        policy.kernel(&net("10.251.2.0/26"), remote, None),
        install(true),
        "CrossSubnet, other subnet"
    );
    assert_eq!(
        policy.kernel(&net("10.251.2.0/26"), local_subnet, None),
        install(false),
        "CrossSubnet, same subnet"
    );
    assert_eq!(
        policy.kernel(&net("10.252.2.0/26"), remote, None),
        install(false),
        "no encapsulation"
    );
    assert_eq!(
        policy.kernel(&net("10.250.2.0/26"), remote, None),
        KernelDecision::Reject,
        "VXLAN is Felix's"
    );
    assert_eq!(
        policy.kernel(&net("10.96.0.1/32"), remote, None),
        KernelDecision::Reject,
        "reject CIDR"
    );
    assert_eq!(
        policy.kernel(&net("8.8.8.0/24"), remote, None),
        install(false),
        "outside pools"
    );
    assert_eq!(
        policy.kernel(&net("8.8.8.0/24"), remote, Some(2_147_483_647 - 500)),
        KernelDecision::Install {
            via_ipip_tunnel: false,
            metric: 500
        },
        "metric from LOCAL_PREF"
    );
}

#[test]
fn kernel_programming_felix_owned_pools_and_wireguard() {
    let mut policy = policy();
    policy.pools[0].routes_owned_by_felix = true;
    let next_hop = Some(IpAddr::V4(Ipv4Addr::new(172, 16, 1, 5)));
    assert_eq!(
        policy.kernel(&net("10.244.2.0/26"), next_hop, None),
        KernelDecision::Reject
    );
    policy.wireguard_peer_addresses = vec![IpAddr::V4(Ipv4Addr::new(172, 16, 1, 5))];
    assert_eq!(
        policy.kernel(&net("8.8.8.0/24"), next_hop, None),
        KernelDecision::Reject
    );
}

#[test]
fn policy_plugged_into_the_rib() {
    let policy = policy();
    let rib_policy = CalicoRibPolicy {
        policy: &policy,
        classify: |_: &IpNet, _: &Candidate| (RouteKind::LocalBlockOrWorkload, false),
    };
    let mut rib = Rib::new(RibConfig {
        local_as: AsNumber(64512),
        router_id: Ipv4Addr::new(172, 16, 0, 1),
        cluster_id: None,
    });
    let peer = PeerId(1);
    rib.add_peer(
        peer,
        PeerConfig {
            address: IpAddr::V4(Ipv4Addr::new(172, 16, 0, 2)),
            peer_as: AsNumber(64512),
            local_as: AsNumber(64512),
            route_reflector_client: false,
            next_hop_mode: NextHopMode::Auto,
            local_address_v4: Some(Ipv4Addr::new(172, 16, 0, 1)),
            local_address_v6: None,
            allowed_local_as: 0,
            interface: None,
            filters: Default::default(),
        },
    );
    rib.peer_established(
        peer,
        PeerSession {
            router_id: Ipv4Addr::new(172, 16, 0, 2),
            families: vec![Family::IPV4_UNICAST],
            graceful_restart: Some(GracefulRestart::default()),
        },
    );
    rib.originate(net("10.244.1.0/26"), RouteAttributes::local());
    rib.originate(net("10.244.1.5/32"), RouteAttributes::local());
    let batch = rib.export(peer, &rib_policy);
    let announced: Vec<(IpNet, Vec<Community>)> = batch
        .announce
        .iter()
        .flat_map(|((_, attributes), prefixes)| {
            prefixes
                .iter()
                .map(move |prefix| (*prefix, attributes.communities.clone()))
        })
        .collect();
    assert_eq!(
        announced,
        vec![(net("10.244.1.0/26"), vec![Community::new(64512, 100)])]
    );
}

/// A RIB with one established peer (`peer_as` decides iBGP/eBGP) and these local blocks.
fn rib_exporting(peer_as: u32, blocks: &[&str]) -> (Rib, PeerId) {
    let mut rib = Rib::new(RibConfig {
        local_as: AsNumber(64512),
        router_id: Ipv4Addr::new(172, 16, 0, 1),
        cluster_id: None,
    });
    let peer = PeerId(1);
    rib.add_peer(
        peer,
        PeerConfig {
            address: IpAddr::V4(Ipv4Addr::new(172, 16, 0, 2)),
            peer_as: AsNumber(peer_as),
            local_as: AsNumber(64512),
            route_reflector_client: false,
            next_hop_mode: NextHopMode::Auto,
            local_address_v4: Some(Ipv4Addr::new(172, 16, 0, 1)),
            local_address_v6: None,
            allowed_local_as: 0,
            interface: None,
            filters: Default::default(),
        },
    );
    rib.peer_established(
        peer,
        PeerSession {
            router_id: Ipv4Addr::new(172, 16, 0, 2),
            families: vec![Family::IPV4_UNICAST],
            graceful_restart: None,
        },
    );
    for block in blocks {
        rib.originate(net(block), RouteAttributes::local());
    }
    (rib, peer)
}

fn exported(rib: &mut Rib, peer: PeerId, policy: &CalicoPolicy) -> Vec<IpNet> {
    let rib_policy = CalicoRibPolicy {
        policy,
        classify: |prefix: &IpNet, _: &Candidate| (policy.classify_local(prefix), false),
    };
    let batch = rib.export(peer, &rib_policy);
    let mut prefixes: Vec<IpNet> = batch.announce.values().flatten().copied().collect();
    prefixes.sort();
    prefixes
}

fn with_own_blocks(blocks: &[&str]) -> CalicoPolicy {
    CalicoPolicy {
        own_blocks: blocks
            .iter()
            .map(|block| OwnBlock {
                cidr: net(block),
                confirmed: true,
            })
            .collect(),
        ..policy()
    }
}

#[test]
fn vxlan_pool_blocks_never_leave_the_node_over_ibgp() {
    let blocks = ["10.244.1.0/26", "10.250.1.0/26", "10.253.1.0/26"];
    let policy = with_own_blocks(&blocks);
    assert_eq!(
        policy.classify_local(&net("10.250.1.0/26")),
        RouteKind::FelixTunnel
    );
    assert_eq!(
        policy.classify_local(&net("10.244.1.0/26")),
        RouteKind::LocalBlockOrWorkload
    );
    // iBGP: the IPIP block only; the VXLAN block is Felix's, the disableBGPExport one is kept.
    let (mut rib, peer) = rib_exporting(64512, &blocks);
    assert_eq!(
        exported(&mut rib, peer, &policy),
        vec![net("10.244.1.0/26")]
    );
    // eBGP peers may see the VXLAN block; disableBGPExport still holds.
    let (mut rib, peer) = rib_exporting(65000, &blocks);
    assert_eq!(
        exported(&mut rib, peer, &policy),
        vec![net("10.244.1.0/26"), net("10.250.1.0/26")]
    );
}

#[test]
fn policy_changes_name_the_prefixes_they_affect() {
    let before = with_own_blocks(&["10.244.1.0/26"]);
    assert_eq!(before.changed_scope(&before.clone()), PolicyScope::Nothing);
    let after = with_own_blocks(&["10.244.1.0/26", "10.244.2.0/26"]);
    assert_eq!(
        before.changed_scope(&after),
        PolicyScope::Within(vec![net("10.244.2.0/26")])
    );
    let mut disabled = before.clone();
    disabled.pools[0].disable_bgp_export = true;
    assert_eq!(
        before.changed_scope(&disabled),
        PolicyScope::Within(vec![net("10.244.0.0/16")])
    );
    let reflector = CalicoPolicy {
        route_reflector: true,
        ..before.clone()
    };
    assert_eq!(before.changed_scope(&reflector), PolicyScope::All);
}

#[test]
fn a_new_block_reexports_only_itself() {
    let before = with_own_blocks(&["10.244.1.0/26"]);
    let (mut rib, peer) = rib_exporting(64512, &["10.244.1.0/26"]);
    assert_eq!(
        exported(&mut rib, peer, &before),
        vec![net("10.244.1.0/26")]
    );
    let after = with_own_blocks(&["10.244.1.0/26", "10.244.2.0/26"]);
    let mut changed = rib.originate(net("10.244.2.0/26"), RouteAttributes::local());
    let PolicyScope::Within(scope) = before.changed_scope(&after) else {
        panic!("a new block is a bounded change");
    };
    let affected = rib.prefixes_within(&scope);
    assert_eq!(affected, vec![net("10.244.2.0/26")]);
    rib.reexport(&affected);
    changed.extend(affected);
    assert_eq!(exported(&mut rib, peer, &after), vec![net("10.244.2.0/26")]);
    // Nothing left to send.
    assert!(exported(&mut rib, peer, &after).is_empty());
}

#[test]
fn prefixes_refused_on_import_count_as_received_not_accepted() {
    let policy = with_own_blocks(&["10.244.1.0/26"]);
    let (mut rib, peer) = rib_exporting(64512, &[]);
    let rib_policy = CalicoRibPolicy {
        policy: &policy,
        classify: |prefix: &IpNet, _: &Candidate| (policy.classify_local(prefix), false),
    };
    let update = starling_bgp::codec::Update {
        attributes: starling_bgp::codec::PathAttributes {
            origin: Some(starling_bgp::codec::Origin::Igp),
            as_path: Some(starling_bgp::codec::AsPath::default()),
            next_hop: Some(Ipv4Addr::new(172, 16, 0, 2)),
            ..Default::default()
        },
        // The first falls inside our own block: refused by Calico's import rule.
        nlri: vec![
            "10.244.1.0/26".parse().unwrap(),
            "10.244.2.0/26".parse().unwrap(),
        ],
        ..Default::default()
    };
    rib.apply_update(peer, &update, &rib_policy);
    assert_eq!(rib.received_count(peer), 2);
    assert_eq!(rib.accepted_count(peer), 1);
    let withdraw = starling_bgp::codec::Update {
        withdrawn_routes: vec!["10.244.1.0/26".parse().unwrap()],
        ..Default::default()
    };
    rib.apply_update(peer, &withdraw, &rib_policy);
    assert_eq!(rib.received_count(peer), 1);
    assert_eq!(rib.accepted_count(peer), 1);
}

#[test]
fn an_import_block_refuses_new_prefixes_past_the_limit_but_keeps_updates() {
    let (mut rib, peer) = rib_exporting(64512, &[]);
    rib.set_import_block(peer, Some(2));
    let announce = |prefixes: &[&str], next_hop: [u8; 4]| starling_bgp::codec::Update {
        attributes: starling_bgp::codec::PathAttributes {
            origin: Some(starling_bgp::codec::Origin::Igp),
            as_path: Some(starling_bgp::codec::AsPath::default()),
            next_hop: Some(Ipv4Addr::from(next_hop)),
            ..Default::default()
        },
        nlri: prefixes.iter().map(|text| text.parse().unwrap()).collect(),
        ..Default::default()
    };
    let accept = |_: &PeerConfig, _: &IpNet, _: &mut std::borrow::Cow<'_, RouteAttributes>| true;
    rib.apply_update(
        peer,
        &announce(
            &["10.9.0.0/24", "10.9.1.0/24", "10.9.2.0/24"],
            [172, 16, 0, 2],
        ),
        &accept,
    );
    assert_eq!(rib.accepted_count(peer), 2);
    assert_eq!(rib.received_count(peer), 3);
    assert!(rib.best(&net("10.9.2.0/24")).is_none());
    // A known prefix may still change.
    rib.apply_update(peer, &announce(&["10.9.0.0/24"], [172, 16, 0, 3]), &accept);
    let best = rib.best(&net("10.9.0.0/24")).unwrap();
    assert_eq!(
        best.attributes.next_hop,
        Some(IpAddr::V4(Ipv4Addr::new(172, 16, 0, 3)))
    );
}
