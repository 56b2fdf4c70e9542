//! The speaker's memory per learned route: live heap bytes a [`Rib`] holds for PREFIXES IPv4
//! /24s learned from one iBGP peer, counted by a global allocator (exact and repeatable, unlike
//! RSS). The routes arrive as the 100 000-prefix receiver benchmark sends them: UPDATEs of 500
//! prefixes, each UPDATE with its own (equal) attribute set. Also reported: the same after a
//! second peer sends the same table (two candidates per prefix, as in a route-reflector pair).
//!
//! Run: `cargo bench -p starling-bgp --bench rib_memory [-- PREFIXES]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};

use ipnet::{IpNet, Ipv4Net};
use starling_bgp::codec::{AsPath, Family, Origin, PathAttributes, Update};
use starling_bgp::rib::{PeerConfig, PeerId, PeerSession, Rib, RibConfig, RouteAttributes};
use starling_model::{AsNumber, NextHopMode};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PER_UPDATE: usize = 500;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn peer(rib: &mut Rib, index: u8) -> PeerId {
    let id = PeerId(u32::from(index));
    rib.add_peer(
        id,
        PeerConfig {
            address: IpAddr::V4(Ipv4Addr::new(172, 16, 0, index)),
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
        id,
        PeerSession {
            router_id: Ipv4Addr::new(172, 16, 0, index),
            families: vec![Family::IPV4_UNICAST],
            graceful_restart: None,
        },
    );
    id
}

fn learn(rib: &mut Rib, id: PeerId, prefixes: u32, next_hop: Ipv4Addr) {
    let accept = |_: &PeerConfig, _: &IpNet, _: &mut Cow<'_, RouteAttributes>| true;
    let all: Vec<Ipv4Net> = (0..prefixes)
        .map(|index| Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (index << 8)), 24).unwrap())
        .collect();
    for chunk in all.chunks(PER_UPDATE) {
        let update = Update {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::default()),
                next_hop: Some(next_hop),
                local_pref: Some(100),
                ..PathAttributes::default()
            },
            nlri: chunk.to_vec(),
            ..Update::default()
        };
        rib.apply_update(id, &update, &accept);
    }
}

fn main() {
    let prefixes: u32 = std::env::args()
        .skip(1)
        .find_map(|argument| argument.parse().ok())
        .unwrap_or(100_000);
    let mut rib = Rib::new(RibConfig {
        local_as: AsNumber(64512),
        router_id: Ipv4Addr::new(172, 16, 0, 1),
        cluster_id: None,
    });
    let first = peer(&mut rib, 2);
    let second = peer(&mut rib, 3);
    let empty = live();
    learn(&mut rib, first, prefixes, Ipv4Addr::new(172, 16, 0, 2));
    let one = live();
    learn(&mut rib, second, prefixes, Ipv4Addr::new(172, 16, 0, 3));
    let two = live();
    let per_route = (one - empty) as f64 / f64::from(prefixes);
    let per_second = (two - one) as f64 / f64::from(prefixes);
    println!(
        "rib memory, {prefixes} prefixes: one peer {:.0} B/route ({:.1} MiB); \
         a second peer's copy of each +{:.0} B/route",
        per_route,
        (one - empty) as f64 / (1024.0 * 1024.0),
        per_second
    );
    assert_eq!(rib.accepted_count(first), prefixes as usize);
}
