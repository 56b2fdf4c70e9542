//! Golden byte vectors for every BGP message type and capability, checked in both directions:
//! decode(bytes) == value and encode(value) == bytes, with a hex diff on failure.

mod bgp_support;

use std::net::{Ipv4Addr, Ipv6Addr};

use bgp_support::{assert_bytes_eq, assert_golden, hex};
use ipnet::{IpNet, Ipv4Net};
use starling_bgp::codec::*;
use starling_model::AsNumber;

fn v4(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

const FOUR: CodecOptions = CodecOptions::FOUR_OCTET;
const TWO: CodecOptions = CodecOptions::TWO_OCTET;

#[test]
fn keepalive() {
    assert_golden(&hex("M 0013 04"), &Message::Keepalive, &FOUR, "KEEPALIVE");
}

#[test]
fn notification_without_data() {
    let message =
        Message::Notification(Notification::cease(cease_subcode::ADMINISTRATIVE_SHUTDOWN));
    assert_golden(
        &hex("M 0015 03 06 02"),
        &message,
        &FOUR,
        "NOTIFICATION cease",
    );
}

#[test]
fn notification_with_data() {
    let message = Message::Notification(Notification::new(2, 2, vec![0xfc, 0x00]));
    assert_golden(
        &hex("M 0017 03 02 02 fc00"),
        &message,
        &FOUR,
        "NOTIFICATION bad peer AS",
    );
}

#[test]
fn route_refresh_ipv4_and_ipv6() {
    let v4 = Message::RouteRefresh(RouteRefresh::new(Family::IPV4_UNICAST));
    assert_golden(&hex("M 0017 05 0001 00 01"), &v4, &FOUR, "ROUTE-REFRESH v4");
    let v6 = Message::RouteRefresh(RouteRefresh::new(Family::IPV6_UNICAST));
    assert_golden(&hex("M 0017 05 0002 00 01"), &v6, &FOUR, "ROUTE-REFRESH v6");
}

#[test]
fn open_with_every_capability() {
    let bytes = hex("M 003b 01
         04 fc00 00f0 0a000001   # version, AS 64512, hold 240, id 10.0.0.1
         1e 02 1c                 # optional parameters: one capabilities parameter
         01 04 0001 00 01         # multiprotocol ipv4 unicast
         01 04 0002 00 01         # multiprotocol ipv6 unicast
         02 00                    # route refresh
         40 06 8078 0001 01 80    # graceful restart: R bit, 120 s, ipv4 forwarding preserved
         41 04 0000fc00           # 4-octet AS 64512");
    let open = Open {
        version: 4,
        my_as: 64512,
        hold_time: 240,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::GracefulRestart(GracefulRestart {
                restarting: true,
                notification: false,
                restart_time: 120,
                families: vec![GracefulRestartFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                }],
            }),
            Capability::FourOctetAs(AsNumber(64512)),
        ],
    };
    assert_golden(&bytes, &Message::Open(open.clone()), &FOUR, "OPEN");
    assert_eq!(open.asn(), AsNumber(64512));
    assert_eq!(
        open.families(),
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert!(open.supports_route_refresh());
    assert_eq!(open.graceful_restart().map(|gr| gr.restart_time), Some(120));
}

#[test]
fn open_with_four_octet_as_and_unknown_capability() {
    let bytes = hex("M 0029 01
         04 5ba0 005a c0a80001    # AS_TRANS in the 2-octet field, hold 90
         0c 02 0a
         41 04 fa56ea00           # 4-octet AS 4200000000
         49 02 6869               # unknown capability 73 (FQDN), kept raw");
    let open = Open {
        version: 4,
        my_as: 23456,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(192, 168, 0, 1),
        capabilities: vec![
            Capability::FourOctetAs(AsNumber(4_200_000_000)),
            Capability::Unknown {
                code: 73,
                value: b"hi".to_vec(),
            },
        ],
    };
    assert_golden(
        &bytes,
        &Message::Open(open.clone()),
        &FOUR,
        "OPEN 4-octet AS",
    );
    assert_eq!(open.asn(), AsNumber(4_200_000_000));
    // RFC 4760 §8: no multiprotocol capability means IPv4 unicast only.
    assert_eq!(open.families(), vec![Family::IPV4_UNICAST]);
    let built = Open::new(
        AsNumber(4_200_000_000),
        90,
        Ipv4Addr::new(192, 168, 0, 1),
        vec![
            Capability::FourOctetAs(AsNumber(4_200_000_000)),
            Capability::Unknown {
                code: 73,
                value: b"hi".to_vec(),
            },
        ],
    );
    assert_eq!(built, open);
}

#[test]
fn open_graceful_restart_helper_without_families() {
    let bytes = hex("M 0023 01 04 fde8 0003 01020304 06 02 04 40 02 0000");
    let message = Message::Open(Open {
        version: 4,
        my_as: 65000,
        hold_time: 3,
        bgp_identifier: Ipv4Addr::new(1, 2, 3, 4),
        capabilities: vec![Capability::GracefulRestart(GracefulRestart::default())],
    });
    assert_golden(&bytes, &message, &FOUR, "OPEN GR helper");
}

fn ipv4_attributes() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence([AsNumber(64513)])),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 2)),
        multi_exit_disc: Some(0),
        local_pref: Some(100),
        communities: vec![Community::new(64512, 100)],
        large_communities: vec![LargeCommunity {
            global_administrator: 64512,
            local_data_1: 1,
            local_data_2: 2,
        }],
        ..PathAttributes::default()
    }
}

#[test]
fn update_ipv4_announcement() {
    let bytes = hex("M 0057 02
         0000 0038
         40 01 01 00                       # ORIGIN IGP
         40 02 06 02 01 0000fc01           # AS_PATH sequence 64513
         40 03 04 0a000002                 # NEXT_HOP 10.0.0.2
         80 04 04 00000000                 # MED 0
         40 05 04 00000064                 # LOCAL_PREF 100
         c0 08 04 fc000064                 # COMMUNITIES 64512:100
         c0 20 0c 0000fc00 00000001 00000002  # LARGE_COMMUNITIES 64512:1:2
         1a 0a010000 10 c0a8                 # NLRI 10.1.0.0/26, 192.168.0.0/16");
    let update = Update {
        attributes: ipv4_attributes(),
        nlri: vec![v4("10.1.0.0/26"), v4("192.168.0.0/16")],
        ..Update::default()
    };
    assert_golden(&bytes, &update.clone().into(), &FOUR, "UPDATE v4");
    assert_eq!(
        update.announced(),
        vec![net("10.1.0.0/26"), net("192.168.0.0/16")]
    );
    assert_eq!(update.error_action(), None);
}

#[test]
fn update_ipv4_reflected_with_rr_attributes() {
    let bytes = hex("M 0050 02
         0000 0035
         40 01 01 02                       # ORIGIN incomplete
         40 02 00                          # empty AS_PATH (iBGP)
         40 03 04 0a000002
         40 05 04 00000064
         40 06 00                          # ATOMIC_AGGREGATE
         c0 07 08 0000fc00 0a000009        # AGGREGATOR 64512 10.0.0.9
         80 09 04 0a000007                 # ORIGINATOR_ID 10.0.0.7
         80 0a 08 01010101 02020202        # CLUSTER_LIST
         18 0a0200");
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Incomplete),
            as_path: Some(AsPath::default()),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 2)),
            local_pref: Some(100),
            atomic_aggregate: true,
            aggregator: Some(Aggregator {
                asn: AsNumber(64512),
                address: Ipv4Addr::new(10, 0, 0, 9),
            }),
            originator_id: Some(Ipv4Addr::new(10, 0, 0, 7)),
            cluster_list: vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)],
            ..PathAttributes::default()
        },
        nlri: vec![v4("10.2.0.0/24")],
        ..Update::default()
    };
    assert_golden(&bytes, &update.into(), &FOUR, "UPDATE v4 reflected");
}

#[test]
fn update_ipv6_announcement_with_link_local_next_hop() {
    let bytes = hex("M 0054 02
         0000 003d
         80 0e 2c 0002 01 20                         # MP_REACH ipv6 unicast, 32-byte next hop
         20010db8000000000000000000000001            # global 2001:db8::1
         fe800000000000000000000000000001            # link-local fe80::1
         00                                          # reserved
         30 20010db80001                             # 2001:db8:1::/48
         40 01 01 00
         40 02 00
         40 05 04 00000064");
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            local_pref: Some(100),
            mp_reach: Some(MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::V6 {
                    global: "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
                    link_local: Some("fe80::1".parse::<Ipv6Addr>().unwrap()),
                },
                prefixes: vec![net("2001:db8:1::/48")],
            }),
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    assert_golden(&bytes, &update.clone().into(), &FOUR, "UPDATE v6");
    assert_eq!(update.announced(), vec![net("2001:db8:1::/48")]);
}

#[test]
fn update_ipv6_global_next_hop_only() {
    let bytes = hex("M 0046 02 0000 002f
         80 0e 1e 0002 01 10 20010db8000000000000000000000002 00 40 20010db800020000
         40 01 01 00 40 02 00 40 05 04 00000064");
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            local_pref: Some(100),
            mp_reach: Some(MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::V6 {
                    global: "2001:db8::2".parse().unwrap(),
                    link_local: None,
                },
                prefixes: vec![net("2001:db8:2::/64")],
            }),
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    assert_golden(&bytes, &update.into(), &FOUR, "UPDATE v6 16-byte next hop");
}

#[test]
fn update_ipv4_withdrawal() {
    let bytes = hex("M 001c 02 0005 1a0a010000 0000");
    let update = Update {
        withdrawn_routes: vec![v4("10.1.0.0/26")],
        ..Update::default()
    };
    assert_golden(&bytes, &update.clone().into(), &FOUR, "UPDATE v4 withdraw");
    assert_eq!(update.withdrawn(), vec![net("10.1.0.0/26")]);
    assert_eq!(update.end_of_rib_family(), None);
}

#[test]
fn update_ipv6_withdrawal() {
    let bytes = hex("M 0024 02 0000 000d 80 0f 0a 0002 01 30 20010db80001");
    let update = Update {
        attributes: PathAttributes {
            mp_unreach: Some(MpUnreach {
                family: Family::IPV6_UNICAST,
                prefixes: vec![net("2001:db8:1::/48")],
            }),
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    assert_golden(&bytes, &update.clone().into(), &FOUR, "UPDATE v6 withdraw");
    assert_eq!(update.withdrawn(), vec![net("2001:db8:1::/48")]);
}

#[test]
fn end_of_rib_markers() {
    let ipv4 = Update::end_of_rib(Family::IPV4_UNICAST);
    assert_golden(
        &hex("M 0017 02 0000 0000"),
        &ipv4.clone().into(),
        &FOUR,
        "EoR v4",
    );
    assert_eq!(ipv4.end_of_rib_family(), Some(Family::IPV4_UNICAST));
    let ipv6 = Update::end_of_rib(Family::IPV6_UNICAST);
    assert_golden(
        &hex("M 001d 02 0000 0006 80 0f 03 0002 01"),
        &ipv6.clone().into(),
        &FOUR,
        "EoR v6",
    );
    assert_eq!(ipv6.end_of_rib_family(), Some(Family::IPV6_UNICAST));
}

/// RFC 6793 §4.2.2: towards a 2-octet peer, AS_TRANS in AS_PATH/AGGREGATOR and the real values
/// in AS4_PATH/AS4_AGGREGATOR; §4.2.3 merges them back on receipt.
#[test]
fn update_to_two_octet_peer_uses_as_trans_and_as4_attributes() {
    let bytes = hex("M 0050 02
         0000 0035
         40 01 01 00
         40 02 06 02 02 fde9 5ba0                 # AS_PATH 65001 AS_TRANS
         40 03 04 0a000002
         c0 07 06 5ba0 0a000009                   # AGGREGATOR AS_TRANS 10.0.0.9
         c0 11 0a 02 02 0000fde9 fa56ea00         # AS4_PATH 65001 4200000000
         c0 12 08 fa56ea00 0a000009               # AS4_AGGREGATOR 4200000000 10.0.0.9
         18 0a0200");
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence([
                AsNumber(65001),
                AsNumber(4_200_000_000),
            ])),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 2)),
            aggregator: Some(Aggregator {
                asn: AsNumber(4_200_000_000),
                address: Ipv4Addr::new(10, 0, 0, 9),
            }),
            ..PathAttributes::default()
        },
        nlri: vec![v4("10.2.0.0/24")],
        ..Update::default()
    };
    assert_golden(&bytes, &update.into(), &TWO, "UPDATE to 2-octet peer");
}

/// An old (2-octet) speaker prepended its AS after the AS4 information was attached: the merge
/// keeps the leading AS_PATH entries AS4_PATH lacks.
#[test]
fn as4_path_merge_after_old_speaker_prepend() {
    let bytes = hex("M 003e 02 0000 0023
         40 01 01 00
         40 02 08 02 03 fdea fde9 5ba0            # 65002 65001 AS_TRANS
         40 03 04 0a000002
         c0 11 0a 02 02 0000fde9 fa56ea00         # AS4_PATH 65001 4200000000
         18 0a0200");
    let Message::Update(update) = Message::decode(&bytes, &TWO).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(
        update.attributes.as_path,
        Some(AsPath::from_sequence(
            [65002, 65001, 4_200_000_000].map(AsNumber)
        ))
    );
    assert!(update.problems.is_empty());
}

/// AS4_PATH longer than AS_PATH is ignored (RFC 6793 §4.2.3).
#[test]
fn as4_path_longer_than_as_path_is_ignored() {
    let bytes = hex("M 003a 02 0000 001f
         40 01 01 00
         40 02 04 02 01 fde9
         40 03 04 0a000002
         c0 11 0a 02 02 0000fde9 fa56ea00
         18 0a0200");
    let Message::Update(update) = Message::decode(&bytes, &TWO).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(
        update.attributes.as_path,
        Some(AsPath::from_sequence([AsNumber(65001)]))
    );
}

/// AS4_PATH between two 4-octet speakers is discarded (RFC 6793 §4.1).
#[test]
fn as4_path_from_four_octet_peer_is_discarded() {
    let bytes = hex("M 0038 02 0000 001d
         40 01 01 00
         40 02 06 02 01 0000fde9
         40 03 04 0a000002
         c0 11 06 02 01 fa56ea00
         18 0a0200");
    let Message::Update(update) = Message::decode(&bytes, &FOUR).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(
        update.attributes.as_path,
        Some(AsPath::from_sequence([AsNumber(65001)]))
    );
}

#[test]
fn as_set_and_confederation_segments() {
    let bytes = hex("M 0043 02 0000 0028
         40 01 01 00
         40 02 1a 03 01 0000fde8 02 02 0000fde9 0000fdea 01 02 0000fdeb 0000fdec
         40 03 04 0a000002
         18 0a0200");
    let path = AsPath {
        segments: vec![
            AsPathSegment {
                kind: SegmentKind::ConfederationSequence,
                asns: vec![AsNumber(65000)],
            },
            AsPathSegment {
                kind: SegmentKind::Sequence,
                asns: vec![AsNumber(65001), AsNumber(65002)],
            },
            AsPathSegment {
                kind: SegmentKind::Set,
                asns: vec![AsNumber(65003), AsNumber(65004)],
            },
        ],
    };
    assert_eq!(path.length(), 3);
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(path),
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 2)),
            ..PathAttributes::default()
        },
        nlri: vec![v4("10.2.0.0/24")],
        ..Update::default()
    };
    assert_golden(&bytes, &update.into(), &FOUR, "AS_SET and confederation");
}

/// Unknown optional transitive attributes pass through with the Partial bit set.
#[test]
fn unknown_optional_transitive_attribute_gets_partial_bit() {
    let received =
        hex("M 002b 02 0000 0013 40 01 01 00 40 02 00 40 03 04 0a000002 c0 63 02 abcd 00");
    let forwarded =
        hex("M 002b 02 0000 0013 40 01 01 00 40 02 00 40 03 04 0a000002 e0 63 02 abcd 00");
    let Message::Update(update) = Message::decode(&received, &FOUR).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(
        update.attributes.unknown,
        vec![RawAttribute {
            flags: 0xe0,
            type_code: 99,
            value: vec![0xab, 0xcd]
        }]
    );
    assert_eq!(update.nlri, vec![v4("0.0.0.0/0")]);
    let encoded = Message::Update(update).encode(&FOUR).unwrap();
    assert_bytes_eq(&encoded, &forwarded, "forwarded unknown attribute");
}

/// Unknown optional non-transitive attributes are dropped quietly (RFC 4271 §5).
#[test]
fn unknown_optional_non_transitive_attribute_is_dropped() {
    let bytes = hex("M 002b 02 0000 0013 40 01 01 00 40 02 00 40 03 04 0a000002 80 63 02 abcd 00");
    let Message::Update(update) = Message::decode(&bytes, &FOUR).unwrap() else {
        panic!("not an UPDATE")
    };
    assert!(update.attributes.unknown.is_empty());
    assert!(update.problems.is_empty());
}

/// Attributes over 255 bytes use the extended length flag.
#[test]
fn extended_length_attribute() {
    let communities: Vec<Community> = (1..=70).map(|value| Community::new(64512, value)).collect();
    let mut text = String::from("M 0133 02 0000 011c d0 08 0118");
    for value in 1..=70u16 {
        text.push_str(&format!(" fc00{value:04x}"));
    }
    let bytes = hex(&text);
    let update = Update {
        attributes: PathAttributes {
            communities,
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    assert_golden(&bytes, &update.into(), &FOUR, "extended length COMMUNITIES");
}

/// Extended length on a short attribute is accepted on receipt.
#[test]
fn extended_length_flag_on_short_attribute_is_accepted() {
    let bytes = hex("M 0023 02 0000 0008 50 01 0001 00 40 02 00 18 0a0200");
    let Message::Update(update) = Message::decode(&bytes, &FOUR).unwrap() else {
        panic!("not an UPDATE")
    };
    assert_eq!(update.attributes.origin, Some(Origin::Igp));
}
