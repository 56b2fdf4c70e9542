//! RIB throughput for the route-reflector case: 100 000 IPv4 prefixes learned from one client
//! in packed UPDATEs, then exported (with reflection attributes) to 10 clients and encoded.

use std::borrow::Cow;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::{IpNet, Ipv4Net};
use starling_bgp::codec::{
    pack_announcements, AsPath, CodecOptions, Family, Message, NextHop, Origin, PathAttributes,
    Update,
};
use starling_bgp::rib::{
    AcceptAll, PeerConfig, PeerId, PeerSession, Rib, RibConfig, RouteAttributes,
};
use starling_model::{AsNumber, NextHopMode};

const PREFIXES: u32 = 100_000;
const CLIENTS: u32 = 10;
const AS: AsNumber = AsNumber(64512);

fn updates() -> Vec<Update> {
    let prefixes: Vec<IpNet> = (0..PREFIXES)
        .map(|index| {
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (index << 8)), 24).unwrap())
        })
        .collect();
    let attributes = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        local_pref: Some(100),
        ..PathAttributes::default()
    };
    pack_announcements(
        Family::IPV4_UNICAST,
        NextHop::V4(Ipv4Addr::new(10, 1, 0, 1)),
        &attributes,
        &prefixes,
        &CodecOptions::FOUR_OCTET,
    )
    .unwrap()
    .iter()
    .map(
        |bytes| match Message::decode(bytes, &CodecOptions::FOUR_OCTET) {
            Ok(Message::Update(update)) => *update,
            other => panic!("not an UPDATE: {other:?}"),
        },
    )
    .collect()
}

fn reflector() -> Rib {
    let mut rib = Rib::new(RibConfig {
        local_as: AS,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        cluster_id: Some(Ipv4Addr::new(1, 1, 1, 1)),
    });
    for index in 0..=CLIENTS {
        let id = PeerId(index);
        let address = Ipv4Addr::new(10, 1, 0, 1 + index as u8);
        rib.add_peer(
            id,
            PeerConfig {
                address: IpAddr::V4(address),
                peer_as: AS,
                local_as: AS,
                route_reflector_client: true,
                next_hop_mode: NextHopMode::Auto,
                local_address_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
                local_address_v6: None,
                allowed_local_as: 0,
                interface: None,
                filters: Default::default(),
            },
        );
        rib.peer_established(
            id,
            PeerSession {
                router_id: address,
                families: vec![Family::IPV4_UNICAST],
                graceful_restart: None,
            },
        );
    }
    rib
}

fn accept(_: &PeerConfig, _: &IpNet, _: &mut Cow<'_, RouteAttributes>) -> bool {
    true
}

fn rib(criterion: &mut Criterion) {
    let updates = updates();
    let mut group = criterion.benchmark_group("bgp_rib_100k_prefixes");
    group.throughput(Throughput::Elements(u64::from(PREFIXES)));
    group.sample_size(10);
    group.bench_function("learn_from_one_client", |bencher| {
        bencher.iter_with_large_drop(|| {
            let mut rib = reflector();
            for update in &updates {
                rib.apply_update(PeerId(0), black_box(update), &accept);
            }
            rib
        })
    });
    group.bench_function("learn_and_reflect_to_10_clients_encoded", |bencher| {
        bencher.iter_with_large_drop(|| {
            let mut rib = reflector();
            for update in &updates {
                rib.apply_update(PeerId(0), update, &accept);
            }
            let mut messages = 0;
            for client in 1..=CLIENTS {
                let batch = rib.export(PeerId(client), &AcceptAll);
                messages += batch.encode(&CodecOptions::FOUR_OCTET).unwrap().len();
            }
            (rib, messages)
        })
    });
    group.finish();
}

criterion_group!(benches, rib);
criterion_main!(benches);
