//! RIB decision process: each RFC 4271 §9.1.2.2 / RFC 4456 §9 step, order independence
//! (property), and Adj-RIB-In import (loop prevention, policy, treat-as-withdraw, IPv6).

#[path = "bgp_support/rib_setup.rs"]
mod rib_setup;

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use proptest::prelude::*;
use starling_bgp::codec::*;
use starling_bgp::rib::*;
use starling_model::AsNumber;

use rib_setup::*;

#[test]
fn higher_local_pref_wins() {
    let mut rib = new_rib(None);
    let first = up(&mut rib, 1, OUR_AS, false);
    let second = up(&mut rib, 2, OUR_AS, false);
    let mut low = attributes(&[], [10, 0, 0, 11]);
    low.local_pref = Some(100);
    let mut high = attributes(&[65001, 65002], [10, 0, 0, 12]);
    high.local_pref = Some(200);
    rib.apply_update(first, &announce(low, &["10.9.0.0/24"]), &accept_all);
    let changed = rib.apply_update(second, &announce(high, &["10.9.0.0/24"]), &accept_all);
    assert_eq!(changed, vec![net("10.9.0.0/24")]);
    assert_eq!(
        best_source(&rib, "10.9.0.0/24"),
        Some(RouteSource::Peer(second))
    );
}

#[test]
fn shorter_as_path_then_lower_origin_win() {
    let mut rib = new_rib(None);
    let first = up(&mut rib, 1, AsNumber(65001), false);
    let second = up(&mut rib, 2, AsNumber(65002), false);
    rib.apply_update(
        first,
        &announce(
            attributes(&[65001, 65009], [10, 0, 0, 11]),
            &["10.9.0.0/24"],
        ),
        &accept_all,
    );
    rib.apply_update(
        second,
        &announce(attributes(&[65002], [10, 0, 0, 12]), &["10.9.0.0/24"]),
        &accept_all,
    );
    assert_eq!(
        best_source(&rib, "10.9.0.0/24"),
        Some(RouteSource::Peer(second))
    );

    let mut incomplete = attributes(&[65002], [10, 0, 0, 12]);
    incomplete.origin = Some(Origin::Incomplete);
    rib.apply_update(second, &announce(incomplete, &["10.8.0.0/24"]), &accept_all);
    let mut egp = attributes(&[65001], [10, 0, 0, 11]);
    egp.origin = Some(Origin::Egp);
    rib.apply_update(first, &announce(egp, &["10.8.0.0/24"]), &accept_all);
    assert_eq!(
        best_source(&rib, "10.8.0.0/24"),
        Some(RouteSource::Peer(first))
    );
}

#[test]
fn med_compared_only_within_the_same_neighbour_as() {
    let mut rib = new_rib(None);
    let first = up(&mut rib, 1, AsNumber(65001), false);
    let second = up(&mut rib, 2, AsNumber(65001), false);
    let third = up(&mut rib, 3, AsNumber(65003), false);
    let mut high_med = attributes(&[65001], [10, 0, 0, 11]);
    high_med.multi_exit_disc = Some(50);
    let mut low_med = attributes(&[65001], [10, 0, 0, 12]);
    low_med.multi_exit_disc = Some(10);
    rib.apply_update(
        first,
        &announce(high_med.clone(), &["10.9.0.0/24"]),
        &accept_all,
    );
    rib.apply_update(second, &announce(low_med, &["10.9.0.0/24"]), &accept_all);
    assert_eq!(
        best_source(&rib, "10.9.0.0/24"),
        Some(RouteSource::Peer(second))
    );

    // Different neighbour AS: MED is not compared, the lower router ID (peer 1) wins.
    let mut other_as = attributes(&[65003], [10, 0, 0, 13]);
    other_as.multi_exit_disc = Some(0);
    rib.apply_update(first, &announce(high_med, &["10.7.0.0/24"]), &accept_all);
    rib.apply_update(third, &announce(other_as, &["10.7.0.0/24"]), &accept_all);
    assert_eq!(
        best_source(&rib, "10.7.0.0/24"),
        Some(RouteSource::Peer(first))
    );
}

#[test]
fn external_beats_internal_then_igp_cost() {
    let mut rib = new_rib(None);
    let internal = up(&mut rib, 1, OUR_AS, false);
    let external = up(&mut rib, 2, AsNumber(65002), false);
    rib.apply_update(
        internal,
        &announce(attributes(&[65002], [10, 0, 0, 11]), &["10.9.0.0/24"]),
        &accept_all,
    );
    rib.apply_update(
        external,
        &announce(attributes(&[65002], [10, 0, 0, 12]), &["10.9.0.0/24"]),
        &accept_all,
    );
    assert_eq!(
        best_source(&rib, "10.9.0.0/24"),
        Some(RouteSource::Peer(external))
    );

    let mut rib = rib_with_two_internal();
    assert_eq!(
        best_source(&rib, "10.9.0.0/24"),
        Some(RouteSource::Peer(PeerId(1)))
    );
    // Make peer 1's next hop expensive.
    rib.set_igp_cost(|next_hop| {
        if next_hop == IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11)) {
            10
        } else {
            1
        }
    });
    assert_eq!(
        best_source(&rib, "10.9.0.0/24"),
        Some(RouteSource::Peer(PeerId(2)))
    );
}

fn rib_with_two_internal() -> Rib {
    let mut rib = new_rib(None);
    let first = up(&mut rib, 1, OUR_AS, false);
    let second = up(&mut rib, 2, OUR_AS, false);
    rib.apply_update(
        first,
        &announce(attributes(&[], [10, 0, 0, 11]), &["10.9.0.0/24"]),
        &accept_all,
    );
    rib.apply_update(
        second,
        &announce(attributes(&[], [10, 0, 0, 12]), &["10.9.0.0/24"]),
        &accept_all,
    );
    rib
}

#[test]
fn originator_id_replaces_router_id_then_cluster_list_then_address() {
    let mut rib = new_rib(None);
    let first = up(&mut rib, 1, OUR_AS, false);
    let second = up(&mut rib, 2, OUR_AS, false);
    // Peer 1 has the lower router ID, but its route carries a higher ORIGINATOR_ID.
    let mut reflected = attributes(&[], [10, 0, 0, 11]);
    reflected.originator_id = Some(Ipv4Addr::new(192, 168, 0, 99));
    rib.apply_update(first, &announce(reflected, &["10.9.0.0/24"]), &accept_all);
    rib.apply_update(
        second,
        &announce(attributes(&[], [10, 0, 0, 12]), &["10.9.0.0/24"]),
        &accept_all,
    );
    assert_eq!(
        best_source(&rib, "10.9.0.0/24"),
        Some(RouteSource::Peer(second))
    );

    // Same originator: the shorter CLUSTER_LIST wins.
    let mut long = attributes(&[], [10, 0, 0, 11]);
    long.originator_id = Some(Ipv4Addr::new(192, 168, 0, 50));
    long.cluster_list = vec![Ipv4Addr::new(2, 2, 2, 2), Ipv4Addr::new(3, 3, 3, 3)];
    let mut short = long.clone();
    short.cluster_list = vec![Ipv4Addr::new(4, 4, 4, 4)];
    rib.apply_update(
        first,
        &announce(long.clone(), &["10.8.0.0/24"]),
        &accept_all,
    );
    rib.apply_update(second, &announce(short, &["10.8.0.0/24"]), &accept_all);
    assert_eq!(
        best_source(&rib, "10.8.0.0/24"),
        Some(RouteSource::Peer(second))
    );

    // Everything equal: the lower peer address wins.
    rib.apply_update(
        second,
        &announce(long.clone(), &["10.7.0.0/24"]),
        &accept_all,
    );
    rib.apply_update(first, &announce(long, &["10.7.0.0/24"]), &accept_all);
    assert_eq!(
        best_source(&rib, "10.7.0.0/24"),
        Some(RouteSource::Peer(first))
    );
}

#[test]
fn local_route_beats_learned() {
    let mut rib = new_rib(None);
    let peer = up(&mut rib, 1, OUR_AS, false);
    let mut preferred = attributes(&[], [10, 0, 0, 11]);
    preferred.local_pref = Some(1000);
    rib.apply_update(peer, &announce(preferred, &["10.9.0.0/26"]), &accept_all);
    rib.originate(net("10.9.0.0/26"), RouteAttributes::local());
    assert_eq!(best_source(&rib, "10.9.0.0/26"), Some(RouteSource::Local));
    let changed = rib.withdraw_local(net("10.9.0.0/26"));
    assert_eq!(changed, vec![net("10.9.0.0/26")]);
    assert_eq!(
        best_source(&rib, "10.9.0.0/26"),
        Some(RouteSource::Peer(peer))
    );
}

fn arbitrary_path() -> impl Strategy<Value = (u32, Vec<u32>, u8, Option<u32>, Option<u8>, usize)> {
    (
        prop_oneof![Just(100u32), Just(200)],             // local pref
        proptest::collection::vec(65001u32..65004, 0..3), // AS path
        0u8..3,                                           // origin
        proptest::option::of(0u32..3),                    // MED
        proptest::option::of(1u8..4),                     // originator
        0usize..3,                                        // cluster list length
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The best path does not depend on the order routes arrive (nor on interleaved
    /// withdrawals of other peers' routes).
    #[test]
    fn best_path_is_independent_of_arrival_order(
        paths in proptest::collection::btree_map(1u8..=6, arbitrary_path(), 1..6),
        order in Just(()).prop_perturb(|_, mut rng| { let mut order: Vec<usize> = (0..6).collect(); for index in (1..order.len()).rev() { order.swap(index, rng.random_range(0..=index)); } order }),
    ) {
        // One path per peer: the map key is the peer.
        let paths: Vec<_> = paths.into_iter().collect();
        let build = |sequence: Vec<usize>| {
            let mut rib = new_rib(Some(CLUSTER_ID));
            let mut ids = Vec::new();
            for index in 1..=6u8 {
                let peer_as = if index % 2 == 0 { OUR_AS } else { AsNumber(65000 + u32::from(index)) };
                ids.push(up(&mut rib, index, peer_as, index == 3));
            }
            for position in sequence {
                let Some((peer, (local_pref, path, origin, med, originator, clusters))) = paths.get(position).cloned() else { continue };
                let mut attributes = attributes(&path, [10, 0, 0, peer]);
                attributes.local_pref = Some(local_pref);
                attributes.origin = Some([Origin::Igp, Origin::Egp, Origin::Incomplete][usize::from(origin)]);
                attributes.multi_exit_disc = med;
                attributes.originator_id = originator.map(|last| Ipv4Addr::new(192, 168, 1, last));
                attributes.cluster_list = (0..clusters).map(|index| Ipv4Addr::new(2, 2, 2, index as u8)).collect();
                let id = PeerId(u32::from(peer));
                // An earlier route of another prefix from the same peer, withdrawn again.
                rib.apply_update(id, &announce(attributes.clone(), &["10.1.0.0/16"]), &accept_all);
                rib.apply_update(id, &announce(attributes, &["10.9.0.0/24"]), &accept_all);
                rib.apply_update(id, &Update { withdrawn_routes: vec!["10.1.0.0/16".parse().unwrap()], ..Update::default() }, &accept_all);
            }
            rib.best(&net("10.9.0.0/24")).map(|candidate| (candidate.source, candidate.attributes.clone()))
        };
        let forward = build((0..6).collect());
        let shuffled = build(order.clone());
        let reversed = build((0..6).rev().collect());
        prop_assert_eq!(&forward, &shuffled);
        prop_assert_eq!(&forward, &reversed);
    }
}

#[test]
fn loop_prevention_on_import() {
    let mut rib = new_rib(Some(CLUSTER_ID));
    let external = up(&mut rib, 1, AsNumber(65001), false);
    let internal = up(&mut rib, 2, OUR_AS, true);
    rib.apply_update(
        external,
        &announce(
            attributes(&[65001, 64512], [10, 0, 0, 11]),
            &["10.9.0.0/24"],
        ),
        &accept_all,
    );
    assert_eq!(rib.best(&net("10.9.0.0/24")), None, "own AS in path");
    let mut own_originator = attributes(&[], [10, 0, 0, 12]);
    own_originator.originator_id = Some(ROUTER_ID);
    rib.apply_update(
        internal,
        &announce(own_originator, &["10.9.0.0/24"]),
        &accept_all,
    );
    assert_eq!(
        rib.best(&net("10.9.0.0/24")),
        None,
        "our router ID as ORIGINATOR_ID"
    );
    let mut own_cluster = attributes(&[], [10, 0, 0, 12]);
    own_cluster.cluster_list = vec![Ipv4Addr::new(9, 9, 9, 9), CLUSTER_ID];
    rib.apply_update(
        internal,
        &announce(own_cluster, &["10.9.0.0/24"]),
        &accept_all,
    );
    assert_eq!(
        rib.best(&net("10.9.0.0/24")),
        None,
        "our cluster ID in CLUSTER_LIST"
    );

    // `allow local as 1` accepts one occurrence.
    let mut relaxed = new_rib(None);
    let id = PeerId(1);
    let mut config = peer_config(1, AsNumber(65001), false);
    config.allowed_local_as = 1;
    relaxed.add_peer(id, config);
    relaxed.peer_established(id, session(1));
    relaxed.apply_update(
        id,
        &announce(
            attributes(&[65001, 64512], [10, 0, 0, 11]),
            &["10.9.0.0/24"],
        ),
        &accept_all,
    );
    assert!(relaxed.best(&net("10.9.0.0/24")).is_some());
}

#[test]
fn external_local_pref_is_ignored_and_import_policy_applies() {
    let mut rib = new_rib(None);
    let external = up(&mut rib, 1, AsNumber(65001), false);
    let mut with_pref = attributes(&[65001], [10, 0, 0, 11]);
    with_pref.local_pref = Some(500);
    let reject_own_block =
        |_: &PeerConfig, prefix: &IpNet, attributes: &mut Cow<'_, RouteAttributes>| {
            attributes.to_mut().communities.push(Community::new(1, 1));
            !net("10.5.0.0/16").contains(prefix)
        };
    rib.apply_update(
        external,
        &announce(with_pref, &["10.9.0.0/24", "10.5.1.0/26"]),
        &reject_own_block,
    );
    let best = rib.best(&net("10.9.0.0/24")).unwrap();
    assert_eq!(best.attributes.local_pref, None);
    assert_eq!(best.attributes.communities, vec![Community::new(1, 1)]);
    assert_eq!(rib.best(&net("10.5.1.0/26")), None);
    // The refused prefix was received but not accepted.
    assert_eq!(rib.received_count(external), 2);
    assert_eq!(rib.accepted_count(external), 1);
}

#[test]
fn treat_as_withdraw_removes_the_routes() {
    let mut rib = new_rib(None);
    let peer = up(&mut rib, 1, OUR_AS, false);
    rib.apply_update(
        peer,
        &announce(attributes(&[], [10, 0, 0, 11]), &["10.9.0.0/24"]),
        &accept_all,
    );
    let mut broken = announce(attributes(&[], [10, 0, 0, 11]), &["10.9.0.0/24"]);
    broken.problems.push(AttributeProblem {
        type_code: 8,
        action: UpdateErrorAction::TreatAsWithdraw,
        error: UpdateError::OptionalAttribute { attribute: vec![] },
    });
    assert_eq!(
        rib.apply_update(peer, &broken, &accept_all),
        vec![net("10.9.0.0/24")]
    );
    assert_eq!(rib.best(&net("10.9.0.0/24")), None);
}

#[test]
fn ipv6_routes_from_mp_reach() {
    let mut rib = new_rib(None);
    let peer = up(&mut rib, 1, OUR_AS, false);
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            mp_reach: Some(MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::V6 {
                    global: "2001:db8::11".parse().unwrap(),
                    link_local: None,
                },
                prefixes: vec![net("2001:db8:9::/48")],
            }),
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    rib.apply_update(peer, &update, &accept_all);
    let best = rib.best(&net("2001:db8:9::/48")).unwrap();
    assert_eq!(
        best.attributes.next_hop,
        Some("2001:db8::11".parse().unwrap())
    );
}
