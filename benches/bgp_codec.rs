//! Codec throughput: packing 100 000 IPv4 and IPv6 prefixes into UPDATEs, and decoding them
//! back (the work a speaker does per full table).

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use starling_bgp::codec::{
    pack_announcements, AsPath, CodecOptions, Community, Family, Message, NextHop, Origin,
    PathAttributes,
};
use starling_model::AsNumber;

const PREFIXES: usize = 100_000;

fn ipv4_prefixes() -> Vec<IpNet> {
    (0..PREFIXES as u32)
        .map(|index| {
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (index << 8)), 24).unwrap())
        })
        .collect()
}

fn ipv6_prefixes() -> Vec<IpNet> {
    (0..PREFIXES as u128)
        .map(|index| {
            let address =
                Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + (index << 64));
            IpNet::V6(Ipv6Net::new(address, 64).unwrap())
        })
        .collect()
}

fn attributes() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence([AsNumber(65001), AsNumber(65002)])),
        local_pref: Some(100),
        communities: vec![Community::new(64512, 100)],
        ..PathAttributes::default()
    }
}

fn codec(criterion: &mut Criterion) {
    let options = CodecOptions::FOUR_OCTET;
    let cases = [
        (
            "ipv4",
            Family::IPV4_UNICAST,
            NextHop::V4(Ipv4Addr::new(10, 0, 0, 1)),
            ipv4_prefixes(),
        ),
        (
            "ipv6",
            Family::IPV6_UNICAST,
            NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: None,
            },
            ipv6_prefixes(),
        ),
    ];
    let mut group = criterion.benchmark_group("bgp_codec_100k_prefixes");
    group.throughput(Throughput::Elements(PREFIXES as u64));
    group.sample_size(20);
    for (name, family, next_hop, prefixes) in cases {
        let attributes = attributes();
        group.bench_function(format!("encode_{name}"), |bencher| {
            bencher.iter(|| {
                pack_announcements(
                    family,
                    next_hop,
                    black_box(&attributes),
                    black_box(&prefixes),
                    &options,
                )
                .unwrap()
            })
        });
        let messages =
            pack_announcements(family, next_hop, &attributes, &prefixes, &options).unwrap();
        group.bench_function(format!("decode_{name}"), |bencher| {
            bencher.iter(|| {
                let mut count = 0;
                for bytes in &messages {
                    if let Ok(Message::Update(update)) = Message::decode(black_box(bytes), &options)
                    {
                        count +=
                            update.nlri.len() + update.attributes.multiprotocol_announced().len();
                    }
                }
                assert_eq!(count, PREFIXES);
                count
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
