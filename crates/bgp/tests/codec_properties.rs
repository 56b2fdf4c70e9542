//! Property tests for the codec: encode → decode is the identity for every valid message, on
//! both 4-octet and 2-octet sessions, and the UPDATE packers lose or duplicate no prefix.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use starling_bgp::codec::*;
use starling_model::AsNumber;

fn ipv4_prefix() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(address, length)| {
        Ipv4Net::new(Ipv4Addr::from(address), length)
            .unwrap()
            .trunc()
    })
}

fn ipv6_prefix() -> impl Strategy<Value = IpNet> {
    (any::<u128>(), 0u8..=128).prop_map(|(address, length)| {
        IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from(address), length)
                .unwrap()
                .trunc(),
        )
    })
}

fn host_ipv4() -> impl Strategy<Value = Ipv4Addr> {
    (1u32..0xe000_0000).prop_map(Ipv4Addr::from)
}

fn asn(four_octet: bool) -> BoxedStrategy<AsNumber> {
    if four_octet {
        prop_oneof![1u32..65536, any::<u32>()]
            .prop_map(AsNumber)
            .boxed()
    } else {
        (1u32..65536).prop_map(AsNumber).boxed()
    }
}

/// Paths that survive the trip: on 2-octet sessions only plain sets and sequences with no two
/// adjacent sequences (AS4_PATH merging would join them) — the shapes real speakers send.
fn as_path(four_octet_session: bool) -> impl Strategy<Value = AsPath> {
    let kinds: Vec<SegmentKind> = if four_octet_session {
        vec![
            SegmentKind::Sequence,
            SegmentKind::Set,
            SegmentKind::ConfederationSequence,
            SegmentKind::ConfederationSet,
        ]
    } else {
        vec![SegmentKind::Sequence, SegmentKind::Set]
    };
    let segment = (
        proptest::sample::select(kinds),
        proptest::collection::vec(asn(true), 1..6),
    )
        .prop_map(|(kind, asns)| AsPathSegment { kind, asns });
    proptest::collection::vec(segment, 0..4).prop_map(move |segments| {
        let mut kept: Vec<AsPathSegment> = Vec::new();
        for segment in segments {
            let adjacent_sequences = kept.last().is_some_and(|last| {
                last.kind == SegmentKind::Sequence && segment.kind == SegmentKind::Sequence
            });
            if !adjacent_sequences || four_octet_session {
                kept.push(segment);
            }
        }
        AsPath { segments: kept }
    })
}

fn unknown_attribute() -> impl Strategy<Value = RawAttribute> {
    let known = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 17, 18, 32];
    (
        any::<u8>().prop_filter("recognised type", move |code| !known.contains(code)),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(type_code, value)| RawAttribute {
            flags: 0xe0,
            type_code,
            value,
        })
}

fn attributes(four_octet_session: bool) -> impl Strategy<Value = PathAttributes> {
    (
        (
            proptest::sample::select(vec![Origin::Igp, Origin::Egp, Origin::Incomplete]),
            as_path(four_octet_session),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            any::<bool>(),
            proptest::option::of((asn(true), host_ipv4())),
        ),
        (
            proptest::collection::vec(any::<u32>().prop_map(Community), 0..5),
            proptest::option::of(host_ipv4()),
            proptest::collection::vec(host_ipv4(), 0..4),
            proptest::collection::vec(
                (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c)| LargeCommunity {
                    global_administrator: a,
                    local_data_1: b,
                    local_data_2: c,
                }),
                0..4,
            ),
            proptest::collection::btree_map(any::<u8>(), unknown_attribute(), 0..3),
        ),
    )
        .prop_map(
            |(
                (origin, as_path, med, local_pref, atomic, aggregator),
                (communities, originator, cluster_list, large_communities, unknown),
            )| {
                let mut unknown: Vec<RawAttribute> = unknown.into_values().collect();
                unknown.sort_by_key(|raw| raw.type_code);
                unknown.dedup_by_key(|raw| raw.type_code);
                PathAttributes {
                    origin: Some(origin),
                    as_path: Some(as_path),
                    multi_exit_disc: med,
                    local_pref,
                    atomic_aggregate: atomic,
                    aggregator: aggregator.map(|(asn, address)| Aggregator { asn, address }),
                    communities,
                    originator_id: originator,
                    cluster_list,
                    large_communities,
                    unknown,
                    ..PathAttributes::default()
                }
            },
        )
}

fn update(four_octet_session: bool) -> impl Strategy<Value = Update> {
    (
        proptest::collection::vec(ipv4_prefix(), 0..20),
        attributes(four_octet_session),
        proptest::collection::vec(ipv4_prefix(), 0..20),
        host_ipv4(),
        proptest::option::of((
            proptest::collection::vec(ipv6_prefix(), 0..10),
            any::<u128>(),
            proptest::option::of(any::<u128>()),
        )),
        proptest::option::of(proptest::collection::vec(ipv6_prefix(), 0..10)),
    )
        .prop_map(
            |(withdrawn, mut attributes, nlri, next_hop, reach, unreach)| {
                if !nlri.is_empty() {
                    attributes.next_hop = Some(next_hop);
                }
                attributes.mp_reach = reach.map(|(prefixes, global, link_local)| MpReach {
                    family: Family::IPV6_UNICAST,
                    next_hop: NextHop::V6 {
                        global: Ipv6Addr::from(global),
                        link_local: link_local.map(Ipv6Addr::from),
                    },
                    prefixes,
                });
                attributes.mp_unreach = unreach.map(|prefixes| MpUnreach {
                    family: Family::IPV6_UNICAST,
                    prefixes,
                });
                Update {
                    withdrawn_routes: withdrawn,
                    attributes,
                    nlri,
                    problems: Vec::new(),
                }
            },
        )
}

fn capability() -> impl Strategy<Value = Capability> {
    let family = (any::<u16>(), any::<u8>()).prop_map(|(afi, safi)| Family { afi, safi });
    prop_oneof![
        family.clone().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        any::<u32>().prop_map(|asn| Capability::FourOctetAs(AsNumber(asn))),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            proptest::collection::vec((family, any::<bool>()), 0..4)
        )
            .prop_map(|(restarting, notification, restart_time, families)| {
                Capability::GracefulRestart(GracefulRestart {
                    restarting,
                    notification,
                    restart_time,
                    families: families
                        .into_iter()
                        .map(|(family, forwarding_preserved)| GracefulRestartFamily {
                            family,
                            forwarding_preserved,
                        })
                        .collect(),
                })
            }),
        (
            any::<u8>().prop_filter("recognised", |code| ![1, 2, 64, 65].contains(code)),
            proptest::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

fn message(four_octet_session: bool) -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::Keepalive),
        (
            any::<u8>(),
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..50)
        )
            .prop_map(
                |(code, subcode, data)| Message::Notification(Notification::new(
                    code, subcode, data
                ))
            ),
        (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(afi, subtype, safi)| {
            Message::RouteRefresh(RouteRefresh {
                family: Family { afi, safi },
                subtype,
            })
        }),
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            proptest::collection::vec(capability(), 0..12)
        )
            .prop_map(|(version, my_as, hold_time, identifier, capabilities)| {
                Message::Open(Open {
                    version,
                    my_as,
                    hold_time,
                    bgp_identifier: Ipv4Addr::from(identifier),
                    capabilities,
                })
            }),
        update(four_octet_session).prop_map(Message::from),
    ]
}

fn round_trip(message: &Message, options: &CodecOptions) -> Result<(), TestCaseError> {
    let bytes = match message.encode(options) {
        Ok(bytes) => bytes,
        // Too large for one message: nothing to round-trip.
        Err(EncodeError::MessageTooLong { .. }) => return Ok(()),
        Err(error) => return Err(TestCaseError::fail(format!("encode failed: {error}"))),
    };
    prop_assert_eq!(frame_length(&bytes), Ok(Some(bytes.len())));
    let decoded = Message::decode(&bytes, options)
        .map_err(|error| TestCaseError::fail(format!("decode failed: {error}")))?;
    prop_assert_eq!(&decoded, message);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trip_four_octet_session(message in message(true)) {
        round_trip(&message, &CodecOptions::FOUR_OCTET)?;
    }

    #[test]
    fn round_trip_two_octet_session(message in message(false)) {
        round_trip(&message, &CodecOptions::TWO_OCTET)?;
    }

    #[test]
    fn packed_announcements_carry_every_prefix_once(
        prefixes in proptest::collection::btree_set(ipv4_prefix(), 0..3000),
        attributes in attributes(true),
        next_hop in host_ipv4(),
    ) {
        let prefixes: Vec<IpNet> = prefixes.into_iter().map(IpNet::V4).collect();
        let messages = pack_announcements(
            Family::IPV4_UNICAST,
            NextHop::V4(next_hop),
            &attributes,
            &prefixes,
            &CodecOptions::FOUR_OCTET,
        ).unwrap();
        let mut seen = Vec::new();
        for bytes in &messages {
            prop_assert!(bytes.len() <= MAX_MESSAGE_LENGTH);
            let Message::Update(update) = Message::decode(bytes, &CodecOptions::FOUR_OCTET).unwrap() else {
                return Err(TestCaseError::fail("not an UPDATE"));
            };
            prop_assert!(update.problems.is_empty());
            prop_assert_eq!(update.attributes.next_hop, Some(next_hop));
            prop_assert_eq!(&update.attributes.communities, &attributes.communities);
            seen.extend(update.announced());
        }
        prop_assert_eq!(seen, prefixes);
    }

    #[test]
    fn packed_ipv6_announcements_and_withdrawals_carry_every_prefix_once(
        prefixes in proptest::collection::btree_set(ipv6_prefix(), 0..1500),
        attributes in attributes(true),
        global in any::<u128>(),
    ) {
        let prefixes: Vec<IpNet> = prefixes.into_iter().collect();
        let next_hop = NextHop::V6 { global: Ipv6Addr::from(global), link_local: None };
        let messages = pack_announcements(Family::IPV6_UNICAST, next_hop, &attributes, &prefixes, &CodecOptions::FOUR_OCTET).unwrap();
        let mut announced = Vec::new();
        for bytes in &messages {
            prop_assert!(bytes.len() <= MAX_MESSAGE_LENGTH);
            let Message::Update(update) = Message::decode(bytes, &CodecOptions::FOUR_OCTET).unwrap() else {
                return Err(TestCaseError::fail("not an UPDATE"));
            };
            prop_assert!(update.problems.is_empty());
            prop_assert_eq!(update.attributes.mp_reach.as_ref().map(|reach| reach.next_hop), Some(next_hop));
            announced.extend(update.announced());
        }
        prop_assert_eq!(&announced, &prefixes);
        let mut withdrawn = Vec::new();
        for bytes in pack_withdrawals(Family::IPV6_UNICAST, &prefixes).unwrap() {
            prop_assert!(bytes.len() <= MAX_MESSAGE_LENGTH);
            let Message::Update(update) = Message::decode(&bytes, &CodecOptions::FOUR_OCTET).unwrap() else {
                return Err(TestCaseError::fail("not an UPDATE"));
            };
            withdrawn.extend(update.withdrawn());
        }
        prop_assert_eq!(withdrawn, prefixes);
    }

    #[test]
    fn packed_ipv4_withdrawals_carry_every_prefix_once(
        prefixes in proptest::collection::btree_set(ipv4_prefix(), 0..3000),
    ) {
        let prefixes: Vec<IpNet> = prefixes.into_iter().map(IpNet::V4).collect();
        let mut withdrawn = Vec::new();
        for bytes in pack_withdrawals(Family::IPV4_UNICAST, &prefixes).unwrap() {
            prop_assert!(bytes.len() <= MAX_MESSAGE_LENGTH);
            let Message::Update(update) = Message::decode(&bytes, &CodecOptions::FOUR_OCTET).unwrap() else {
                return Err(TestCaseError::fail("not an UPDATE"));
            };
            withdrawn.extend(update.withdrawn());
        }
        prop_assert_eq!(withdrawn, prefixes);
    }
}

#[test]
fn packing_fills_messages() {
    // 2000 /24s at 4 bytes each need at least two messages but no more than three.
    let prefixes: Vec<IpNet> = (0..2000u32)
        .map(|index| {
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (index << 8)), 24).unwrap())
        })
        .collect();
    let attributes = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        ..PathAttributes::default()
    };
    let messages = pack_announcements(
        Family::IPV4_UNICAST,
        NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)),
        &attributes,
        &prefixes,
        &CodecOptions::FOUR_OCTET,
    )
    .unwrap();
    assert_eq!(messages.len(), 2);
    assert!(
        messages[0].len() > MAX_MESSAGE_LENGTH - 4,
        "first message only {} bytes",
        messages[0].len()
    );
}

#[test]
fn packing_rejects_wrong_family() {
    let result = pack_withdrawals(Family::IPV4_UNICAST, &["2001:db8::/32".parse().unwrap()]);
    assert!(matches!(
        result,
        Err(EncodeError::PrefixFamilyMismatch { .. })
    ));
    let result = pack_announcements(
        Family::IPV6_UNICAST,
        NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)),
        &PathAttributes::default(),
        &["2001:db8::/32".parse().unwrap()],
        &CodecOptions::FOUR_OCTET,
    );
    assert!(matches!(
        result,
        Err(EncodeError::NextHopFamilyMismatch { .. })
    ));
}
