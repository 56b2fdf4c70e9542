//! Golden tests over messages captured from real peers (bird2, gobgpd, FRR bgpd) by
//! `examples/record_bgp_fixtures.rs`; the fixture files note each peer's version and configuration.

mod bgp_support;

use std::net::Ipv4Addr;

use ipnet::IpNet;
use starling_bgp::codec::*;
use starling_model::AsNumber;

fn load(name: &str) -> Vec<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bgp")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(bgp_support::hex)
        .collect()
}

/// Decodes every captured message; each must decode cleanly, and re-encoding must give a
/// message that decodes to the same value.
fn decode_all(name: &str) -> Vec<Message> {
    let mut options = CodecOptions::FOUR_OCTET;
    load(name)
        .iter()
        .map(|bytes| {
            let message =
                Message::decode(bytes, &options).unwrap_or_else(|error| panic!("{name}: {error}"));
            if let Message::Open(open) = &message {
                options.four_octet_as = open.four_octet_as().is_some();
            }
            if let Message::Update(update) = &message {
                assert!(update.problems.is_empty(), "{name}: {:?}", update.problems);
            }
            let again = Message::decode(&message.encode(&options).unwrap(), &options).unwrap();
            assert_eq!(again, message, "{name}: re-encoding changed the message");
            message
        })
        .collect()
}

fn announced(messages: &[Message]) -> Vec<(IpNet, PathAttributes)> {
    let mut routes = Vec::new();
    for message in messages {
        if let Message::Update(update) = message {
            for prefix in update.announced() {
                routes.push((prefix, update.attributes.clone()));
            }
        }
    }
    routes
}

fn end_of_ribs(messages: &[Message]) -> Vec<Family> {
    messages
        .iter()
        .filter_map(|message| match message {
            Message::Update(update) => update.end_of_rib_family(),
            _ => None,
        })
        .collect()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

/// Messages whose encoding matches the peer's byte for byte (attribute order and length flags
/// agree with ours), checked in both directions.
fn assert_byte_exact(name: &str, indices: &[usize]) {
    let raw = load(name);
    for &index in indices {
        let message = Message::decode(&raw[index], &CodecOptions::FOUR_OCTET).unwrap();
        bgp_support::assert_golden(
            &raw[index],
            &message,
            &CodecOptions::FOUR_OCTET,
            &format!("{name} #{index}"),
        );
    }
}

#[test]
fn bird2_open_updates_and_end_of_rib() {
    let messages = decode_all("bird2.hex");
    let Message::Open(open) = &messages[0] else {
        panic!("first message is not an OPEN")
    };
    assert_eq!(open.asn(), AsNumber(65001));
    assert_eq!(open.hold_time, 240);
    assert_eq!(open.bgp_identifier, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(
        open.families(),
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert!(open.supports_route_refresh());
    let restart = open
        .graceful_restart()
        .expect("graceful restart capability");
    assert_eq!(restart.restart_time, 120);
    assert_eq!(restart.families.len(), 2);
    // Enhanced route refresh (70) and long-lived GR (71) are kept raw.
    assert!(open.capabilities.contains(&Capability::Unknown {
        code: 70,
        value: vec![]
    }));
    assert_eq!(messages[1], Message::Keepalive);

    let routes = announced(&messages);
    let prefixes: Vec<IpNet> = routes.iter().map(|(prefix, _)| *prefix).collect();
    assert_eq!(
        prefixes,
        vec![
            net("10.1.0.64/26"),
            net("10.1.0.0/26"),
            net("192.168.10.0/24"),
            net("2001:db8:1::/48")
        ]
    );
    let (_, tagged) = &routes[2];
    assert_eq!(
        tagged.as_path,
        Some(AsPath::from_sequence([AsNumber(65001)]))
    );
    assert_eq!(tagged.next_hop, Some(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(tagged.multi_exit_disc, Some(50));
    assert_eq!(tagged.communities, vec![Community::new(64512, 100)]);
    assert_eq!(
        tagged.large_communities,
        vec![LargeCommunity {
            global_administrator: 64512,
            local_data_1: 1,
            local_data_2: 2
        }]
    );
    let (_, ipv6) = &routes[3];
    let Some(MpReach {
        next_hop: NextHop::V6 { global, link_local },
        ..
    }) = &ipv6.mp_reach
    else {
        panic!("no IPv6 MP_REACH")
    };
    assert_eq!(
        *global,
        "2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert!(link_local.is_some_and(|address| address.segments()[0] == 0xfe80));
    assert_eq!(
        end_of_ribs(&messages),
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert_byte_exact("bird2.hex", &[1, 2, 3, 4, 6]);
}

#[test]
fn gobgp_four_octet_as_open_and_updates() {
    let messages = decode_all("gobgp.hex");
    let Message::Open(open) = &messages[0] else {
        panic!("first message is not an OPEN")
    };
    assert_eq!(open.my_as, 23456, "AS_TRANS in the 2-octet field");
    assert_eq!(open.asn(), AsNumber(4_200_000_001));
    assert_eq!(open.hold_time, 90);
    assert_eq!(
        open.families(),
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert_eq!(
        open.graceful_restart().map(|restart| restart.restart_time),
        Some(120)
    );

    let routes = announced(&messages);
    let prefixes: Vec<IpNet> = routes.iter().map(|(prefix, _)| *prefix).collect();
    assert_eq!(
        prefixes,
        vec![
            net("10.2.0.0/24"),
            net("10.2.1.0/24"),
            net("2001:db8:2::/48")
        ]
    );
    let (_, first) = &routes[0];
    assert_eq!(first.origin, Some(Origin::Incomplete));
    assert_eq!(
        first.as_path,
        Some(AsPath::from_sequence([AsNumber(4_200_000_001)]))
    );
    assert_eq!(first.multi_exit_disc, Some(10));
    assert_eq!(first.communities, vec![Community::new(64512, 200)]);
    let (_, second) = &routes[1];
    assert_eq!(
        second.large_communities,
        vec![LargeCommunity {
            global_administrator: 64512,
            local_data_1: 3,
            local_data_2: 4
        }]
    );
    assert_eq!(
        end_of_ribs(&messages),
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert_byte_exact("gobgp.hex", &[1, 2, 3, 4, 6]);
}

#[test]
fn frr_open_with_many_parameters_and_updates() {
    let messages = decode_all("frr.hex");
    let Message::Open(open) = &messages[0] else {
        panic!("first message is not an OPEN")
    };
    assert_eq!(open.asn(), AsNumber(65003));
    assert_eq!(open.hold_time, 180);
    let restart = open
        .graceful_restart()
        .expect("graceful restart capability");
    assert!(restart.restarting, "FRR sets the R bit on a fresh start");
    assert!(restart.notification, "FRR sets the RFC 8538 N bit");
    assert_eq!(restart.restart_time, 120);
    // Extended message (6), ADD-PATH (69), FQDN (73), LLGR (71) and Cisco route refresh (128)
    // are not interpreted and kept raw.
    let raw_codes: Vec<u8> = open
        .capabilities
        .iter()
        .filter_map(|capability| match capability {
            Capability::Unknown { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(raw_codes, vec![128, 70, 6, 69, 73, 71]);

    let routes = announced(&messages);
    let prefixes: Vec<IpNet> = routes.iter().map(|(prefix, _)| *prefix).collect();
    assert_eq!(
        prefixes,
        vec![
            net("10.3.0.0/24"),
            net("10.3.1.0/25"),
            net("2001:db8:3::/48")
        ]
    );
    let (_, ipv6) = &routes[2];
    // FRR sends an IPv4-mapped IPv6 next hop over an IPv4 session.
    assert_eq!(
        ipv6.mp_reach.as_ref().map(|reach| reach.next_hop),
        Some(NextHop::V6 {
            global: "::ffff:10.0.0.2".parse().unwrap(),
            link_local: None
        })
    );
    assert_eq!(
        end_of_ribs(&messages),
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert_byte_exact("frr.hex", &[1, 4, 5]);
}
