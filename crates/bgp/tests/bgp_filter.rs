//! Calico's BGPFilter semantics as a table: first matching rule across a peer's filters in
//! order; no match leaves the default behaviour; a missing or invalid filter rejects all.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;
use serde_json::json;
use starling_bgp::codec::{AsPath, Family, Origin, PathAttributes, Update};
use starling_bgp::filter::{FilterChain, FilterSet, FilterVerdict, ProblemReason};
use starling_bgp::policy::{CalicoPolicy, CalicoRibPolicy, OwnBlock};
use starling_bgp::rib::{
    Candidate, PeerConfig, PeerId, PeerSession, Rib, RibConfig, RouteAttributes,
};
use starling_model::bgpfilter::{Direction, RouteFacts};
use starling_model::validate::bgpfilter::validate_bgp_filter;
use starling_model::{AsNumber, NextHopMode};

fn known() -> FilterSet {
    let specs = [
        (
            "allow-77",
            json!({
                "exportV4": [
                    {"action": "Accept", "matchOperator": "In", "cidr": "77.0.0.0/16"},
                    {"action": "Reject", "matchOperator": "In", "cidr": "78.0.0.0/8"}
                ],
                "importV4": [
                    {"action": "Reject", "matchOperator": "Equal", "cidr": "10.9.0.0/24"},
                    {"action": "Accept", "matchOperator": "In", "cidr": "55.0.0.0/16", "prefixLength": {"min": 30}}
                ]
            }),
        ),
        (
            "reject-rest",
            json!({
                "exportV4": [{"action": "Reject"}],
                "exportV6": [{"action": "Accept", "matchOperator": "NotEqual", "cidr": "fd00::/64"}],
                "importV4": [{"action": "Reject", "matchOperator": "NotIn", "cidr": "55.0.0.0/8"}]
            }),
        ),
        (
            "peers-only",
            json!({
                "exportV4": [
                    {"action": "Reject", "source": "RemotePeers"},
                    {"action": "Reject", "interface": "*.calico"}
                ]
            }),
        ),
    ];
    let mut set: FilterSet = specs
        .into_iter()
        .map(|(name, value)| {
            let filter =
                validate_bgp_filter(name, &serde_json::from_value(value).unwrap()).unwrap();
            (name.to_string(), Ok(Arc::new(filter)))
        })
        .collect();
    set.insert(
        "broken".into(),
        Err("BGPFilter \"broken\": spec.importV4[0].cidr \"x\" is not a CIDR".into()),
    );
    set
}

fn chain(names: &[&str]) -> FilterChain {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    FilterChain::resolve("tor", &names, &known())
}

fn decide(
    chain: &FilterChain,
    direction: Direction,
    prefix: &str,
    from_peer: bool,
    interface: Option<&str>,
) -> FilterVerdict {
    let prefix: IpNet = prefix.parse().unwrap();
    chain.decide(
        direction,
        &RouteFacts {
            prefix: &prefix,
            from_peer,
            interface,
        },
    )
}

/// (chain, direction, prefix, learned from a peer, interface, expected verdict)
type Row<'a> = (
    &'a FilterChain,
    Direction,
    &'a str,
    bool,
    Option<&'a str>,
    FilterVerdict,
);

#[test]
fn first_match_across_filters_in_order() {
    use Direction::{Export, Import};
    use FilterVerdict::{Accept, NoMatch, Reject};
    let both = chain(&["allow-77", "reject-rest"]);
    let reversed = chain(&["reject-rest", "allow-77"]);
    let none = chain(&[]);
    let peers = chain(&["peers-only"]);
    let table: [Row; 24] = [
        // The first filter's rules decide before the second's are looked at.
        (&both, Export, "77.0.1.0/24", false, None, Accept),
        (&both, Export, "78.1.0.0/16", false, None, Reject),
        (&both, Export, "10.0.0.0/26", false, None, Reject),
        (&reversed, Export, "77.0.1.0/24", false, None, Reject),
        // In matches the CIDR itself and more-specifics; not a shorter prefix.
        (&both, Export, "77.0.0.0/16", false, None, Accept),
        (
            &chain(&["allow-77"]),
            Export,
            "77.0.0.0/15",
            false,
            None,
            NoMatch,
        ),
        // A family without rules: no match in the first filter, the second's v6 rule.
        (&both, Export, "fd00:1::/64", false, None, Accept),
        (&both, Export, "fd00::/64", false, None, NoMatch),
        // Import: Equal is exact; prefixLength {min: 30} limits In to /30../32.
        (&both, Import, "10.9.0.0/24", true, None, Reject),
        (&both, Import, "10.9.0.0/25", true, None, Reject),
        (
            &chain(&["allow-77"]),
            Import,
            "10.9.0.0/25",
            true,
            None,
            NoMatch,
        ),
        (&both, Import, "55.0.1.4/30", true, None, Accept),
        (&both, Import, "55.0.1.0/24", true, None, NoMatch),
        (&both, Import, "55.1.0.0/16", true, None, NoMatch),
        (&both, Import, "56.0.0.0/16", true, None, Reject),
        // IPv6 import with no v6 import rules anywhere: default behaviour.
        (&both, Import, "fd00::/64", true, None, NoMatch),
        // No filters at all.
        (&none, Export, "77.0.1.0/24", false, None, NoMatch),
        (&none, Import, "77.0.1.0/24", true, None, NoMatch),
        // source: RemotePeers matches routes learned over BGP only.
        (&peers, Export, "10.1.0.0/26", true, None, Reject),
        (&peers, Export, "10.1.0.0/26", false, None, NoMatch),
        // interface: pattern on the route's interface; unknown interface never matches.
        (
            &peers,
            Export,
            "10.1.0.0/26",
            false,
            Some("vxlan.calico"),
            Reject,
        ),
        (&peers, Export, "10.1.0.0/26", false, Some("eth0"), NoMatch),
        (&peers, Export, "10.1.0.0/26", false, None, NoMatch),
        (
            &peers,
            Import,
            "10.1.0.0/26",
            true,
            Some("vxlan.calico"),
            NoMatch,
        ),
    ];
    for (index, (chain, direction, prefix, from_peer, interface, expected)) in
        table.into_iter().enumerate()
    {
        assert_eq!(
            decide(chain, direction, prefix, from_peer, interface),
            expected,
            "row {index}: {direction:?} {prefix} from_peer={from_peer} interface={interface:?}"
        );
    }
}

#[test]
fn missing_or_invalid_filter_rejects_everything() {
    for names in [
        &["allow-77", "nope"][..],
        &["broken"],
        &["nope", "allow-77"],
    ] {
        let chain = chain(names);
        let reason = chain.problem().expect("unusable").to_string();
        assert!(
            reason.starts_with("BGPPeer \"tor\": spec.filters names BGPFilter"),
            "{reason}"
        );
        for direction in [Direction::Import, Direction::Export] {
            for prefix in ["77.0.1.0/24", "10.0.0.0/8", "fd00::/64"] {
                assert_eq!(
                    decide(&chain, direction, prefix, true, None),
                    FilterVerdict::Reject,
                    "{names:?} {prefix}"
                );
            }
        }
    }
    // The first unusable filter in the list is named, with a reason telling the two cases apart.
    let missing = chain(&["allow-77", "nope", "broken"]);
    let problem = missing.problem().unwrap();
    assert_eq!(
        (problem.peer.as_str(), problem.filter.as_str()),
        ("tor", "nope")
    );
    assert_eq!(problem.reason, ProblemReason::NotFound);
    assert_eq!(problem.reason.label(), "not_found");
    assert!(problem
        .to_string()
        .contains("BGPFilter \"nope\", which is not found;"));
    let broken = chain(&["broken", "nope"]);
    let problem = broken.problem().unwrap();
    assert_eq!(problem.filter, "broken");
    assert_eq!(problem.reason.label(), "invalid");
    assert!(
        problem.to_string().contains(
            "which is invalid: BGPFilter \"broken\": spec.importV4[0].cidr \"x\" is not a CIDR"
        ),
        "{problem}"
    );
}

/// A RIB with one established iBGP peer running `filters`, originating `blocks`.
fn rib_with(filters: FilterChain, blocks: &[&str]) -> (Rib, PeerId) {
    let mut rib = Rib::new(RibConfig {
        local_as: AsNumber(64512),
        router_id: Ipv4Addr::new(172, 16, 0, 1),
        cluster_id: None,
    });
    let peer = PeerId(1);
    rib.add_peer(peer, peer_config(filters));
    rib.peer_established(
        peer,
        PeerSession {
            router_id: Ipv4Addr::new(172, 16, 0, 2),
            families: vec![Family::IPV4_UNICAST],
            graceful_restart: None,
        },
    );
    for block in blocks {
        rib.originate(block.parse().unwrap(), RouteAttributes::local());
    }
    (rib, peer)
}

fn peer_config(filters: FilterChain) -> PeerConfig {
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
        filters,
    }
}

fn calico_policy() -> CalicoPolicy {
    CalicoPolicy {
        own_blocks: vec![OwnBlock {
            cidr: "10.244.1.0/26".parse().unwrap(),
            confirmed: true,
        }],
        ..CalicoPolicy::default()
    }
}

fn exported(rib: &mut Rib, peer: PeerId, policy: &CalicoPolicy) -> Vec<String> {
    let rib_policy = CalicoRibPolicy {
        policy,
        classify: |prefix: &IpNet, _: &Candidate| (policy.classify_local(prefix), false),
    };
    let batch = rib.export(peer, &rib_policy);
    let mut prefixes: Vec<String> = batch
        .announce
        .values()
        .flatten()
        .map(|prefix| prefix.to_string())
        .collect();
    prefixes.sort();
    prefixes
}

#[test]
fn export_filter_runs_before_calicos_rules_and_changes_in_place() {
    let policy = calico_policy();
    // 77.0.1.0/24 is no block of ours (Calico alone would not export it); the filter accepts
    // it. The own block falls through allow-77 to reject-rest's catch-all Reject.
    let (mut rib, peer) = rib_with(
        chain(&["allow-77", "reject-rest"]),
        &["10.244.1.0/26", "77.0.1.0/24"],
    );
    assert_eq!(exported(&mut rib, peer, &policy), ["77.0.1.0/24"]);
    // Without filters Calico's rules decide: the own block only.
    rib.add_peer(peer, peer_config(FilterChain::None));
    assert_eq!(exported(&mut rib, peer, &policy), ["10.244.1.0/26"]);
    // An unusable chain exports nothing.
    rib.add_peer(peer, peer_config(chain(&["nope"])));
    let rib_policy = CalicoRibPolicy {
        policy: &policy,
        classify: |prefix: &IpNet, _: &Candidate| (policy.classify_local(prefix), false),
    };
    let batch = rib.export(peer, &rib_policy);
    assert!(batch.announce.values().flatten().next().is_none());
    let withdrawn: Vec<String> = batch
        .withdraw
        .values()
        .flatten()
        .map(|prefix| prefix.to_string())
        .collect();
    assert_eq!(withdrawn, ["10.244.1.0/26"]);
}

#[test]
fn import_filter_keeps_rejected_routes_out_of_the_rib() {
    let policy = calico_policy();
    let (mut rib, peer) = rib_with(chain(&["allow-77", "reject-rest"]), &[]);
    let rib_policy = CalicoRibPolicy {
        policy: &policy,
        classify: |prefix: &IpNet, _: &Candidate| (policy.classify_local(prefix), false),
    };
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            next_hop: Some(Ipv4Addr::new(172, 16, 0, 2)),
            ..Default::default()
        },
        nlri: ["55.0.1.4/30", "56.0.0.0/16", "10.9.0.0/24", "55.3.0.0/16"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect(),
        ..Default::default()
    };
    rib.apply_update(peer, &update, &rib_policy);
    assert_eq!(rib.received_count(peer), 4);
    assert_eq!(rib.accepted_count(peer), 2);
    let best: Vec<String> = rib
        .best_routes()
        .map(|(prefix, _)| prefix.to_string())
        .collect();
    // 55.0.1.4/30: allow-77 accepts; 55.3.0.0/16: no rule matches, import accepts.
    assert_eq!(best, ["55.0.1.4/30", "55.3.0.0/16"]);
}

#[test]
fn stricter_import_filter_removes_routes_at_once_and_looser_needs_them_again() {
    let policy = calico_policy();
    let (mut rib, peer) = rib_with(FilterChain::None, &[]);
    let rib_policy = CalicoRibPolicy {
        policy: &policy,
        classify: |prefix: &IpNet, _: &Candidate| (policy.classify_local(prefix), false),
    };
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            next_hop: Some(Ipv4Addr::new(172, 16, 0, 2)),
            ..Default::default()
        },
        nlri: ["55.0.1.4/30", "56.0.0.0/16"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect(),
        ..Default::default()
    };
    rib.apply_update(peer, &update, &rib_policy);
    assert_eq!(rib.accepted_count(peer), 2);
    // reject-rest refuses everything outside 55.0.0.0/8: 56.0.0.0/16 leaves the Loc-RIB now.
    let stricter = chain(&["reject-rest"]);
    assert!(FilterChain::None.import_differs(&stricter));
    rib.add_peer(peer, peer_config(stricter));
    let changed = rib.reimport(peer, &rib_policy);
    assert_eq!(changed, ["56.0.0.0/16".parse::<IpNet>().unwrap()]);
    assert_eq!((rib.received_count(peer), rib.accepted_count(peer)), (2, 1));
    // Back to no filter: nothing returns by itself (refused routes are kept by prefix only);
    // the peer's answer to a ROUTE-REFRESH, the same UPDATE again, brings it back.
    rib.add_peer(peer, peer_config(FilterChain::None));
    assert!(rib.reimport(peer, &rib_policy).is_empty());
    let changed = rib.apply_update(peer, &update, &rib_policy);
    assert_eq!(changed, ["56.0.0.0/16".parse::<IpNet>().unwrap()]);
    assert_eq!((rib.received_count(peer), rib.accepted_count(peer)), (2, 2));
}

#[test]
fn only_import_rule_changes_call_for_filtering_again() {
    // Export-only filters, in any split, import like no filter at all.
    let export_only = chain(&["peers-only"]);
    assert!(!FilterChain::None.import_differs(&export_only));
    assert!(chain(&["allow-77"]).import_differs(&chain(&["reject-rest"])));
    assert!(!chain(&["allow-77", "peers-only"]).import_differs(&chain(&["allow-77"])));
    // An unusable chain rejects everything: a change into or out of it always counts.
    assert!(chain(&["nope"]).import_differs(&FilterChain::None));
    assert!(!chain(&["nope"]).import_differs(&chain(&["broken"])));
}
