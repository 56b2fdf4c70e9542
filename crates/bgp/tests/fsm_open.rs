//! OPEN validation with the exact NOTIFICATIONs, capability and timer negotiation, our own
//! OPEN, and connection collision resolution.

#[path = "bgp_support/fsm_script.rs"]
mod fsm_script;

use std::net::Ipv4Addr;
use std::time::Duration;

use starling_bgp::codec::*;
use starling_bgp::fsm::*;
use starling_model::AsNumber;

use fsm_script::*;

#[test]
fn configured_keepalive_is_used_up_to_a_third_of_hold() {
    let local = local_open(&config());
    let negotiated = negotiate(&local, &peer_open(90), Some(Duration::from_secs(10)));
    assert_eq!(negotiated.keepalive_interval, Some(Duration::from_secs(10)));
    let negotiated = negotiate(&local, &peer_open(90), Some(Duration::from_secs(60)));
    assert_eq!(negotiated.keepalive_interval, Some(Duration::from_secs(30)));
    let negotiated = negotiate(&local, &peer_open(300), None);
    assert_eq!(
        negotiated.hold_time,
        Duration::from_secs(240),
        "hold is the minimum of both"
    );
    assert_eq!(negotiated.keepalive_interval, Some(Duration::from_secs(80)));
    let negotiated = negotiate(&local, &peer_open(3), None);
    assert_eq!(negotiated.keepalive_interval, Some(Duration::from_secs(1)));
}

#[test]
fn negotiation_intersects_families_and_records_peer_restart() {
    let local = local_open(&config());
    let negotiated = negotiate(&local, &peer_open(90), None);
    assert_eq!(negotiated.families, vec![Family::IPV4_UNICAST]);
    assert!(negotiated.four_octet_as);
    assert!(negotiated.route_refresh);
    assert!(negotiated.peer_preserved_forwarding(Family::IPV4_UNICAST));
    assert!(!negotiated.peer_preserved_forwarding(Family::IPV6_UNICAST));
    assert_eq!(negotiated.codec_options(), CodecOptions::FOUR_OCTET);

    let old_peer = Open {
        version: 4,
        my_as: 64512,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: vec![],
    };
    let negotiated = negotiate(&local, &old_peer, None);
    assert_eq!(
        negotiated.families,
        vec![Family::IPV4_UNICAST],
        "no MP capability means IPv4"
    );
    assert!(!negotiated.four_octet_as);
    assert!(!negotiated.route_refresh);
    assert_eq!(negotiated.peer_graceful_restart, None);
}

#[test]
fn open_with_unsupported_version() {
    let mut open = peer_open(90);
    open.version = 3;
    assert_open_rejected(config(), open, Notification::new(2, 1, vec![0, 4]));
}

#[test]
fn open_from_wrong_as() {
    let open = Open::new(AsNumber(65000), 90, Ipv4Addr::new(10, 0, 0, 2), vec![]);
    assert_open_rejected(config(), open, Notification::new(2, 2, vec![]));
}

#[test]
fn open_with_inconsistent_two_octet_field() {
    // The 4-octet capability says 4200000000 but the 2-octet field is not AS_TRANS.
    let mut config = config();
    config.peer_as = AsNumber(4_200_000_000);
    let mut open = Open::new(
        AsNumber(4_200_000_000),
        90,
        Ipv4Addr::new(10, 0, 0, 2),
        vec![],
    );
    assert!(validate_open(&config, &local_open(&config), &open).is_ok());
    open.my_as = 65000;
    assert_open_rejected(config.clone(), open, Notification::new(2, 2, vec![]));
    // A peer without the 4-octet capability cannot be a 4-octet AS.
    let two_octet_only = Open {
        version: 4,
        my_as: 23456,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: vec![],
    };
    assert_open_rejected(config, two_octet_only, Notification::new(2, 2, vec![]));
}

#[test]
fn open_with_unacceptable_hold_time() {
    assert_open_rejected(config(), peer_open(2), Notification::new(2, 6, vec![]));
    assert_open_rejected(config(), peer_open(1), Notification::new(2, 6, vec![]));
}

#[test]
fn open_with_bad_identifier() {
    let mut open = peer_open(90);
    open.bgp_identifier = Ipv4Addr::UNSPECIFIED;
    assert_open_rejected(config(), open, Notification::new(2, 3, vec![]));
    // iBGP peer claiming our own identifier.
    let mut open = peer_open(90);
    open.bgp_identifier = Ipv4Addr::new(10, 0, 0, 1);
    assert_open_rejected(config(), open.clone(), Notification::new(2, 3, vec![]));
    // The same identifier is allowed between different ASes (RFC 6286 §2.2).
    let mut external = config();
    external.peer_as = AsNumber(65001);
    let open = Open::new(AsNumber(65001), 90, Ipv4Addr::new(10, 0, 0, 1), vec![]);
    assert!(validate_open(&external, &local_open(&external), &open).is_ok());
}

#[test]
fn open_rejection_display_names_the_problem() {
    let rejection = OpenRejection::BadPeerAs {
        received: AsNumber(65000),
        two_octet: 65000,
        expected: AsNumber(64512),
    };
    assert!(rejection.to_string().contains("65000"));
    assert!(rejection.to_string().contains("64512"));
}

#[test]
fn collision_keeps_connection_of_higher_identifier() {
    let low = Ipv4Addr::new(10, 0, 0, 1);
    let high = Ipv4Addr::new(10, 0, 0, 2);
    assert_eq!(
        collision_survivor(high, LOCAL_AS, low, LOCAL_AS),
        ConnectionOrigin::Local
    );
    assert_eq!(
        collision_survivor(low, LOCAL_AS, high, LOCAL_AS),
        ConnectionOrigin::Remote
    );
    // Compared as numbers, not text: 9.0.0.0 < 10.0.0.0.
    assert_eq!(
        collision_survivor(
            Ipv4Addr::new(9, 0, 0, 0),
            LOCAL_AS,
            Ipv4Addr::new(10, 0, 0, 0),
            LOCAL_AS
        ),
        ConnectionOrigin::Remote
    );
    // Equal identifiers: the larger AS wins (RFC 6286 §2.3).
    assert_eq!(
        collision_survivor(low, AsNumber(65001), low, AsNumber(65000)),
        ConnectionOrigin::Local
    );
    assert_eq!(
        collision_survivor(low, AsNumber(65000), low, AsNumber(65001)),
        ConnectionOrigin::Remote
    );
}

#[test]
fn local_open_advertises_configured_capabilities() {
    let mut config = config();
    config.local_as = AsNumber(4_200_000_000);
    let open = local_open(&config);
    assert_eq!(open.my_as, 23456);
    assert_eq!(open.asn(), AsNumber(4_200_000_000));
    assert_eq!(open.hold_time, 240);
    assert_eq!(
        open.families(),
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert!(open.supports_route_refresh());
    let restart = open.graceful_restart().unwrap();
    assert_eq!(restart.restart_time, 120);
    assert_eq!(restart.families.len(), 2);
    config.graceful_restart = None;
    assert_eq!(local_open(&config).graceful_restart(), None);
}

#[test]
fn codec_options_follow_negotiation_and_down_reasons_read_well() {
    let mut script = Script::new(config());
    assert_eq!(script.fsm.codec_options(), CodecOptions::FOUR_OCTET);
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    script
        .fsm
        .handle(Input::TcpConnectionConfirmed, script.at(0.0));
    let two_octet_peer = Open {
        version: 4,
        my_as: 64512,
        hold_time: 90,
        bgp_identifier: std::net::Ipv4Addr::new(10, 0, 0, 2),
        capabilities: vec![],
    };
    script
        .fsm
        .handle(received(Message::Open(two_octet_peer)), script.at(0.0));
    assert_eq!(script.fsm.codec_options(), CodecOptions::TWO_OCTET);
    assert_eq!(
        DownReason::NotificationReceived(Notification::cease(
            cease_subcode::ADMINISTRATIVE_SHUTDOWN
        ))
        .to_string(),
        "received cease (6/2)"
    );
    assert_eq!(
        DownReason::NotificationSent(Notification::new(2, 2, vec![0xfc, 0x00])).to_string(),
        "sent OPEN message error (2/2) data fc00"
    );
    assert_eq!(
        DownReason::HoldTimerExpired.to_string(),
        "hold timer expired"
    );
}

#[test]
fn invalid_configured_hold_time_is_rounded_up() {
    let mut config = config();
    config.hold_time_seconds = 2;
    assert_eq!(local_open(&config).hold_time, 3);
    config.hold_time_seconds = 0;
    assert_eq!(local_open(&config).hold_time, 0);
}
