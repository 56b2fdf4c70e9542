//! Adj-RIB-Out: full table then End-of-RIB then changes, session rewrites (eBGP/iBGP, next hop
//! modes), route reflection rules, export policy, and the graceful restart helper.

#[path = "bgp_support/rib_setup.rs"]
mod rib_setup;

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use starling_bgp::codec::*;
use starling_bgp::rib::*;
use starling_model::{AsNumber, NextHopMode};

use rib_setup::*;

#[test]
fn first_export_sends_everything_then_end_of_rib_then_only_changes() {
    let mut rib = new_rib(None);
    rib.originate(net("10.5.0.0/26"), RouteAttributes::local());
    rib.originate(net("10.5.0.64/26"), RouteAttributes::local());
    rib.originate(net("2001:db8:5::/122"), RouteAttributes::local());
    let id = PeerId(1);
    rib.add_peer(id, peer_config(1, OUR_AS, false));
    assert!(
        rib.export(id, &AcceptAll).is_empty(),
        "nothing before the session is up"
    );
    rib.peer_established(id, session(1));
    let batch = rib.export(id, &AcceptAll);
    assert_eq!(
        batch.end_of_rib,
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    let routes = exported(&batch);
    assert_eq!(routes.len(), 3);
    // Both IPv4 blocks share one attribute set, so they pack into one group.
    assert_eq!(batch.announce.len(), 2);
    let (_, ipv4) = &routes[0];
    assert_eq!(ipv4.next_hop, Some(IpAddr::V4(ROUTER_ID)));
    assert_eq!(ipv4.local_pref, Some(DEFAULT_LOCAL_PREF));
    let (_, ipv6) = &routes[2];
    assert_eq!(ipv6.next_hop, Some("2001:db8::1".parse().unwrap()));
    assert_eq!(rib.advertised_count(id), 3);

    assert!(
        rib.export(id, &AcceptAll).is_empty(),
        "no change, nothing to send"
    );
    rib.withdraw_local(net("10.5.0.64/26"));
    let batch = rib.export(id, &AcceptAll);
    assert_eq!(
        batch.withdraw,
        [(Family::IPV4_UNICAST, vec![net("10.5.0.64/26")])]
            .into_iter()
            .collect()
    );
    assert!(batch.announce.is_empty());
    assert!(batch.end_of_rib.is_empty());

    // The encoded batch decodes back to the same content.
    rib.originate(net("10.5.0.128/26"), RouteAttributes::local());
    let batch = rib.export(id, &AcceptAll);
    let messages = batch.encode(&CodecOptions::FOUR_OCTET).unwrap();
    assert_eq!(messages.len(), 1);
    let Message::Update(update) = Message::decode(&messages[0], &CodecOptions::FOUR_OCTET).unwrap()
    else {
        panic!("not an UPDATE")
    };
    assert_eq!(update.nlri, vec!["10.5.0.128/26".parse().unwrap()]);
    assert_eq!(update.attributes.next_hop, Some(ROUTER_ID));
    assert_eq!(update.attributes.local_pref, Some(100));
}

#[test]
fn export_to_external_peer_rewrites_attributes() {
    let mut rib = new_rib(None);
    let internal = up(&mut rib, 1, OUR_AS, false);
    let external = up(&mut rib, 2, AsNumber(65002), false);
    let mut learned = attributes(&[65009], [10, 0, 0, 99]);
    learned.local_pref = Some(300);
    learned.multi_exit_disc = Some(7);
    rib.apply_update(internal, &announce(learned, &["10.9.0.0/24"]), &accept_all);
    let routes = exported(&rib.export(external, &AcceptAll));
    assert_eq!(routes.len(), 1);
    let (_, attributes) = &routes[0];
    assert_eq!(
        attributes.as_path,
        AsPath::from_sequence([OUR_AS, AsNumber(65009)])
    );
    assert_eq!(attributes.local_pref, None);
    assert_eq!(attributes.multi_exit_disc, None);
    assert_eq!(attributes.next_hop, Some(IpAddr::V4(ROUTER_ID)));
    // Not sent back to where it came from.
    assert!(exported(&rib.export(internal, &AcceptAll)).is_empty());
}

#[test]
fn next_hop_modes() {
    let mut rib = new_rib(None);
    let source = up(&mut rib, 1, AsNumber(65001), false);
    rib.apply_update(
        source,
        &announce(attributes(&[65001], [10, 0, 0, 11]), &["10.9.0.0/24"]),
        &accept_all,
    );
    for (index, peer_as, mode, expected) in [
        (2u8, OUR_AS, NextHopMode::Auto, Ipv4Addr::new(10, 0, 0, 11)),
        (3, OUR_AS, NextHopMode::SelfAddress, ROUTER_ID),
        (4, AsNumber(65004), NextHopMode::Auto, ROUTER_ID),
        (
            5,
            AsNumber(65005),
            NextHopMode::Keep,
            Ipv4Addr::new(10, 0, 0, 11),
        ),
    ] {
        let id = PeerId(u32::from(index));
        let mut config = peer_config(index, peer_as, false);
        config.next_hop_mode = mode;
        rib.add_peer(id, config);
        rib.peer_established(id, session(index));
        let routes = exported(&rib.export(id, &AcceptAll));
        assert_eq!(
            routes[0].1.next_hop,
            Some(IpAddr::V4(expected)),
            "{mode:?} towards AS {peer_as}"
        );
    }
}

#[test]
fn internal_routes_are_not_passed_between_internal_peers_without_reflection() {
    let mut rib = new_rib(None);
    let first = up(&mut rib, 1, OUR_AS, false);
    let second = up(&mut rib, 2, OUR_AS, true);
    rib.apply_update(
        first,
        &announce(attributes(&[], [10, 0, 0, 11]), &["10.9.0.0/24"]),
        &accept_all,
    );
    assert!(rib.export(second, &AcceptAll).is_empty());
}

#[test]
fn route_reflection_rules() {
    let mut rib = new_rib(Some(CLUSTER_ID));
    let client_a = up(&mut rib, 1, OUR_AS, true);
    let client_b = up(&mut rib, 2, OUR_AS, true);
    let non_client = up(&mut rib, 3, OUR_AS, false);
    let other_non_client = up(&mut rib, 4, OUR_AS, false);
    let external = up(&mut rib, 5, AsNumber(65005), false);

    // A client's route goes to every other peer, with ORIGINATOR_ID and CLUSTER_LIST for iBGP.
    rib.apply_update(
        client_a,
        &announce(attributes(&[], [10, 0, 0, 11]), &["10.1.0.0/26"]),
        &accept_all,
    );
    for peer in [client_b, non_client, other_non_client] {
        let routes = exported(&rib.export(peer, &AcceptAll));
        assert_eq!(routes.len(), 1, "to {peer:?}");
        let (_, attributes) = &routes[0];
        assert_eq!(
            attributes.originator_id,
            Some(Ipv4Addr::new(192, 168, 0, 11))
        );
        assert_eq!(attributes.cluster_list, vec![CLUSTER_ID]);
        assert_eq!(
            attributes.next_hop,
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 11))),
            "next hop unchanged"
        );
    }
    let routes = exported(&rib.export(external, &AcceptAll));
    assert_eq!(routes[0].1.originator_id, None);
    assert!(routes[0].1.cluster_list.is_empty());
    assert!(
        rib.export(client_a, &AcceptAll).is_empty(),
        "not back to the source"
    );

    // A non-client's route goes to clients only (and eBGP).
    let mut with_cluster = attributes(&[], [10, 0, 0, 13]);
    with_cluster.cluster_list = vec![Ipv4Addr::new(7, 7, 7, 7)];
    rib.apply_update(
        non_client,
        &announce(with_cluster, &["10.3.0.0/26"]),
        &accept_all,
    );
    for peer in [client_a, client_b] {
        let routes = exported(&rib.export(peer, &AcceptAll));
        assert_eq!(routes.len(), 1);
        assert_eq!(
            routes[0].1.cluster_list,
            vec![CLUSTER_ID, Ipv4Addr::new(7, 7, 7, 7)],
            "ours prepended"
        );
    }
    assert!(rib.export(other_non_client, &AcceptAll).is_empty());
    assert_eq!(exported(&rib.export(external, &AcceptAll)).len(), 1);

    // Not reflected to the originator itself.
    let mut from_b = attributes(&[], [10, 0, 0, 12]);
    from_b.originator_id = Some(Ipv4Addr::new(192, 168, 0, 12));
    rib.apply_update(client_a, &announce(from_b, &["10.2.0.0/26"]), &accept_all);
    assert!(rib.export(client_b, &AcceptAll).is_empty());
}

#[test]
fn export_policy_can_reject_and_tag() {
    let mut rib = new_rib(None);
    let id = up(&mut rib, 1, OUR_AS, false);
    rib.originate(net("10.5.0.0/26"), RouteAttributes::local());
    rib.originate(net("10.6.0.0/26"), RouteAttributes::local());
    rib.originate(net("10.7.0.0/26"), RouteAttributes::local());
    let policy = |_: &PeerConfig,
                  prefix: &IpNet,
                  _: &Candidate,
                  attributes: &mut Cow<'_, RouteAttributes>| {
        // The policy sees the attributes as they will be sent.
        assert_eq!(attributes.next_hop, Some(IpAddr::V4(ROUTER_ID)));
        if *prefix == net("10.5.0.0/26") {
            attributes
                .to_mut()
                .communities
                .push(Community::new(64512, 100));
        }
        *prefix != net("10.6.0.0/26")
    };
    let routes = exported(&rib.export(id, &policy));
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].0, net("10.5.0.0/26"));
    assert_eq!(routes[0].1.communities, vec![Community::new(64512, 100)]);
    assert_eq!(routes[1].0, net("10.7.0.0/26"));
    assert!(routes[1].1.communities.is_empty());
}

#[test]
fn routes_from_one_update_share_attributes_in_the_adj_rib_out() {
    let mut rib = new_rib(Some(CLUSTER_ID));
    let source = up(&mut rib, 1, OUR_AS, true);
    let client = up(&mut rib, 2, OUR_AS, true);
    let prefixes: Vec<String> = (0..50).map(|index| format!("10.{index}.0.0/24")).collect();
    let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    rib.apply_update(
        source,
        &announce(attributes(&[], [10, 0, 0, 11]), &prefixes),
        &accept_all,
    );
    let batch = rib.export(client, &AcceptAll);
    assert_eq!(batch.announce.len(), 1, "one attribute group");
    let ((_, shared), group) = batch.announce.iter().next().unwrap();
    assert_eq!(group.len(), 50);
    assert_eq!(shared.cluster_list, vec![CLUSTER_ID]);
    // Re-exporting after an unrelated change sends nothing for these prefixes.
    rib.originate(net("10.200.0.0/24"), RouteAttributes::local());
    let batch = rib.export(client, &AcceptAll);
    assert_eq!(exported(&batch).len(), 1);
}

#[test]
fn graceful_restart_keeps_stale_routes_until_end_of_rib() {
    let mut rib = new_rib(None);
    let peer = up(&mut rib, 1, OUR_AS, false);
    rib.apply_update(
        peer,
        &announce(
            attributes(&[], [10, 0, 0, 11]),
            &["10.9.0.0/24", "10.9.1.0/24"],
        ),
        &accept_all,
    );
    assert_eq!(
        rib.peer_down(peer, true),
        Vec::<IpNet>::new(),
        "graceful: nothing changes"
    );
    assert_eq!(rib.stale_count(peer), 2);
    assert!(rib.best(&net("10.9.0.0/24")).unwrap().stale);

    // The peer comes back (forwarding preserved for IPv4) and refreshes one route.
    assert!(rib.peer_established(peer, session(1)).is_empty());
    rib.apply_update(
        peer,
        &announce(attributes(&[], [10, 0, 0, 11]), &["10.9.0.0/24"]),
        &accept_all,
    );
    assert!(!rib.best(&net("10.9.0.0/24")).unwrap().stale);
    assert_eq!(rib.stale_count(peer), 1);
    let changed = rib.apply_update(peer, &Update::end_of_rib(Family::IPV4_UNICAST), &accept_all);
    assert_eq!(changed, vec![net("10.9.1.0/24")]);
    assert!(rib.best(&net("10.9.0.0/24")).is_some());
    assert_eq!(rib.best(&net("10.9.1.0/24")), None);
}

#[test]
fn graceful_restart_sweep_on_timer_and_when_not_preserved() {
    let mut rib = new_rib(None);
    let peer = up(&mut rib, 1, OUR_AS, false);
    rib.apply_update(
        peer,
        &announce(attributes(&[], [10, 0, 0, 11]), &["10.9.0.0/24"]),
        &accept_all,
    );
    rib.peer_down(peer, true);
    assert_eq!(rib.sweep_stale(peer, None), vec![net("10.9.0.0/24")]);

    rib.apply_update(
        peer,
        &announce(attributes(&[], [10, 0, 0, 11]), &["10.9.0.0/24"]),
        &accept_all,
    );
    assert_eq!(
        rib.best(&net("10.9.0.0/24")),
        None,
        "updates while down are ignored"
    );

    rib.peer_established(peer, session(1));
    rib.apply_update(
        peer,
        &announce(attributes(&[], [10, 0, 0, 11]), &["10.9.0.0/24"]),
        &accept_all,
    );
    rib.peer_down(peer, true);
    let mut without_forwarding = session(1);
    without_forwarding.graceful_restart = None;
    assert_eq!(
        rib.peer_established(peer, without_forwarding),
        vec![net("10.9.0.0/24")]
    );
}

#[test]
fn non_graceful_down_removes_routes_and_clears_adj_rib_out() {
    let mut rib = new_rib(None);
    let source = up(&mut rib, 1, AsNumber(65001), false);
    let listener = up(&mut rib, 2, OUR_AS, false);
    rib.apply_update(
        source,
        &announce(attributes(&[65001], [10, 0, 0, 11]), &["10.9.0.0/24"]),
        &accept_all,
    );
    assert_eq!(exported(&rib.export(listener, &AcceptAll)).len(), 1);
    assert_eq!(rib.peer_down(source, false), vec![net("10.9.0.0/24")]);
    let batch = rib.export(listener, &AcceptAll);
    assert_eq!(
        batch.withdraw.get(&Family::IPV4_UNICAST),
        Some(&vec![net("10.9.0.0/24")])
    );
    assert_eq!(rib.remove_peer(source), Vec::<IpNet>::new());
}

#[test]
fn incremental_exports_survive_change_log_compaction() {
    let mut rib = new_rib(None);
    let early = up(&mut rib, 1, OUR_AS, false);
    let prefixes: Vec<IpNet> = (0..70_000u32)
        .map(|index| {
            IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (index << 8)), 24).unwrap())
        })
        .collect();
    for prefix in &prefixes {
        rib.originate(*prefix, RouteAttributes::local());
    }
    // A peer that comes up later gets a full table; the early one gets every change.
    let late = up(&mut rib, 2, OUR_AS, false);
    assert_eq!(rib.advertised_count(late), 70_000);
    assert_eq!(exported(&rib.export(early, &AcceptAll)).len(), 70_000);
    for prefix in &prefixes[..10] {
        rib.withdraw_local(*prefix);
    }
    for peer in [early, late] {
        let batch = rib.export(peer, &AcceptAll);
        assert_eq!(
            batch.withdraw.get(&Family::IPV4_UNICAST).map(Vec::len),
            Some(10)
        );
        assert!(batch.announce.is_empty());
        assert_eq!(rib.advertised_count(peer), 69_990);
    }
}
