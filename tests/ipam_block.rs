//! Block math: unit cases and property tests (allocate/release round trip, no ordinal handed out
//! twice, reserved addresses never handed out automatically).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use starling_ipam::block::{Block, BlockError};

mod ipam_support;
use ipam_support::t0;

fn attributes(pod: &str) -> BTreeMap<String, String> {
    [("pod".to_string(), pod.to_string())].into_iter().collect()
}

fn block(cidr: &str) -> Block {
    Block::new(cidr.parse().unwrap(), Some("host:a".into()), Some(t0()), 7).unwrap()
}

#[test]
fn assigns_from_the_front_and_releases_to_the_back() {
    let mut b = block("10.0.0.0/29");
    let got = b.assign(2, Some("h1"), &attributes("p1"), &[]);
    assert_eq!(
        got,
        vec![
            "10.0.0.0".parse::<IpAddr>().unwrap(),
            "10.0.0.1".parse().unwrap()
        ]
    );
    assert_eq!(b.unallocated, vec![2, 3, 4, 5, 6, 7]);
    assert_eq!(b.allocations[0], Some(0));
    assert_eq!(
        b.allocations[1],
        Some(0),
        "one shared attribute per (handle, attrs)"
    );
    assert_eq!(b.attributes.len(), 1);
    assert_eq!(b.sequence_number_for_allocation.get(&0), Some(&7));
    b.release(&["10.0.0.0".parse().unwrap()]);
    assert_eq!(b.unallocated, vec![2, 3, 4, 5, 6, 7, 0]);
    assert!(b.invariant_problems(t0()).is_empty());
}

#[test]
fn attributes_are_compacted_on_release() {
    let mut b = block("10.0.0.0/29");
    b.assign(1, Some("h1"), &attributes("p1"), &[]);
    b.assign(1, Some("h2"), &attributes("p2"), &[]);
    b.assign(1, Some("h3"), &attributes("p3"), &[]);
    assert_eq!(b.attributes.len(), 3);
    b.release(&["10.0.0.1".parse().unwrap()]);
    assert_eq!(b.attributes.len(), 2);
    assert_eq!(
        b.allocations[2],
        Some(1),
        "index renumbered after the removed attribute"
    );
    assert_eq!(b.attributes[1].handle_id.as_deref(), Some("h3"));
    assert!(b.invariant_problems(t0()).is_empty());
}

#[test]
fn reserved_addresses_stay_in_place() {
    let mut b = block("10.0.0.0/29");
    let reserved: Vec<IpNet> = vec!["10.0.0.0/31".parse().unwrap()];
    let got = b.assign(1, Some("h"), &attributes("p"), &reserved);
    assert_eq!(got, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(b.unallocated, vec![0, 1, 3, 4, 5, 6, 7]);
    assert_eq!(b.free_unreserved(&reserved), 5);
}

#[test]
fn specific_address_reports_its_owner() {
    let mut b = block("10.0.0.0/29");
    b.assign_address("10.0.0.5".parse().unwrap(), Some("h1"), &attributes("p1"))
        .unwrap();
    let error = b
        .assign_address("10.0.0.5".parse().unwrap(), Some("h2"), &attributes("p2"))
        .unwrap_err();
    match error {
        BlockError::AlreadyAllocated {
            handle, attributes, ..
        } => {
            assert_eq!(handle.as_deref(), Some("h1"));
            assert_eq!(attributes.get("pod").map(String::as_str), Some("p1"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(b
        .assign_address("10.0.1.5".parse().unwrap(), Some("h2"), &attributes("p2"))
        .is_err());
}

#[test]
fn invariant_checker_finds_each_problem() {
    let mut b = block("10.0.0.0/30");
    b.assign(1, Some("h"), &attributes("p"), &[]);
    b.allocations[1] = Some(5); // dangling index, and ordinal 1 both free and allocated
    b.attributes.push(Default::default()); // unreferenced attribute
    b.unallocated.push(2); // duplicate
    let problems = b.invariant_problems(t0()).join("\n");
    assert!(
        problems.contains("points to missing attribute 5"),
        "{problems}"
    );
    assert!(
        problems.contains("attribute 1 is not referenced"),
        "{problems}"
    );
    assert!(problems.contains("listed twice"), "{problems}");
    assert!(
        problems.contains("both allocated and unallocated"),
        "{problems}"
    );
}

#[test]
fn ipv6_blocks() {
    let mut b = block("fd00:1::/122");
    assert_eq!(b.size(), 64);
    let got = b.assign(2, Some("h"), &attributes("p"), &[]);
    assert_eq!(got[1], "fd00:1::1".parse::<IpAddr>().unwrap());
    assert!(Block::new("fd00::/64".parse().unwrap(), None, None, 0).is_err());
}

#[derive(Debug, Clone)]
enum Step {
    Assign { count: usize, owner: u8 },
    Release { picks: Vec<usize> },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1usize..6, 0u8..4).prop_map(|(count, owner)| Step::Assign { count, owner }),
        prop::collection::vec(0usize..64, 1..6).prop_map(|picks| Step::Release { picks }),
    ]
}

proptest! {
    /// Any interleaving of assignments and releases: no address is held twice, reserved addresses
    /// never appear, and the invariants hold after every step.
    #[test]
    fn never_hands_out_an_address_twice(steps in prop::collection::vec(step(), 1..40), reserve_first in 0usize..4) {
        let mut b = block("10.1.0.0/26");
        let reserved: Vec<IpNet> = (0..reserve_first)
            .map(|i| format!("10.1.0.{}/32", i * 7).parse().unwrap())
            .collect();
        let mut held: BTreeSet<IpAddr> = BTreeSet::new();
        for step in steps {
            match step {
                Step::Assign { count, owner } => {
                    let got = b.assign(count, Some(&format!("h{owner}")), &attributes("p"), &reserved);
                    prop_assert!(got.len() <= count);
                    for address in got {
                        prop_assert!(!reserved.iter().any(|r| r.contains(&address)), "reserved {address} handed out");
                        prop_assert!(held.insert(address), "{address} handed out twice");
                    }
                }
                Step::Release { picks } => {
                    let list: Vec<IpAddr> = held.iter().copied().collect();
                    if list.is_empty() { continue; }
                    let chosen: Vec<IpAddr> = picks.iter().map(|i| list[i % list.len()]).collect();
                    let released = b.release(&chosen);
                    for (address, _) in released {
                        prop_assert!(held.remove(&address));
                    }
                }
            }
            prop_assert!(b.invariant_problems(t0()).is_empty(), "{:?}", b.invariant_problems(t0()));
            prop_assert_eq!(b.allocated_count(), held.len());
        }
    }

    /// Allocating everything then releasing everything returns the block to its initial state:
    /// compared exactly are cidr, affinity, claim time, allocations (all null), attributes (empty),
    /// sequenceNumberForAllocation (empty); `unallocated` is compared as a set (releases append to
    /// the back, so its order is the release order), and exactly when released in allocation order.
    #[test]
    fn allocate_all_then_release_all_round_trips(owners in prop::collection::vec(0u8..5, 1..70), shuffle_seed in any::<u64>(), in_order in any::<bool>()) {
        let initial = block("10.2.0.0/26");
        let mut b = initial.clone();
        let mut handed = Vec::new();
        for owner in owners.iter().cycle().take(64) {
            handed.extend(b.assign(1, Some(&format!("h{owner}")), &attributes("p"), &[]));
        }
        prop_assert_eq!(handed.len(), 64);
        prop_assert_eq!(b.assign(1, Some("x"), &attributes("p"), &[]).len(), 0, "full block hands out nothing");
        let mut order = handed.clone();
        if !in_order {
            let mut state = shuffle_seed | 1;
            for i in (1..order.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
        }
        for address in &order {
            prop_assert_eq!(b.release(&[*address]).len(), 1);
        }
        prop_assert_eq!(&b.allocations, &initial.allocations);
        prop_assert!(b.attributes.is_empty());
        prop_assert!(b.sequence_number_for_allocation.is_empty());
        prop_assert_eq!(b.cidr, initial.cidr);
        prop_assert_eq!(&b.affinity, &initial.affinity);
        let as_set: BTreeSet<usize> = b.unallocated.iter().copied().collect();
        prop_assert_eq!(as_set.len(), 64);
        prop_assert_eq!(as_set, initial.unallocated.iter().copied().collect::<BTreeSet<_>>());
        if in_order {
            prop_assert_eq!(&b, &initial);
        }
    }
}

proptest! {
    /// The reservation cover is exact (same address set as the items) and minimal (no two CIDRs
    /// of the cover are mergeable siblings, none overlap).
    #[test]
    fn reservation_cover_is_exact_and_minimal(ranges in prop::collection::vec((0u32..256, 0u32..64), 1..6)) {
        use starling_ipam::reserve::cidr_cover;
        let items: Vec<String> = ranges
            .iter()
            .map(|(start, length)| {
                let end = (start + length).min(255);
                format!("10.9.0.{start}-10.9.0.{end}")
            })
            .collect();
        let cover = cidr_cover(&items).unwrap();
        let mut wanted = BTreeSet::new();
        for (start, length) in &ranges {
            for last in *start..=(start + length).min(255) {
                wanted.insert(last);
            }
        }
        let mut covered = BTreeSet::new();
        for net in &cover {
            for host in net.hosts().chain([net.network(), net.broadcast()]) {
                if let IpAddr::V4(v4) = host {
                    covered.insert(u32::from(v4.octets()[3]));
                }
            }
        }
        let total: u128 = cover.iter().map(|n| 1u128 << (32 - n.prefix_len())).sum();
        prop_assert_eq!(total as usize, wanted.len(), "no overlaps");
        prop_assert_eq!(covered, wanted);
        for (i, a) in cover.iter().enumerate() {
            for b in cover.iter().skip(i + 1) {
                let mergeable = a.prefix_len() == b.prefix_len()
                    && a.supernet().is_some()
                    && a.supernet() == b.supernet();
                prop_assert!(!mergeable, "{} and {} should have been merged", a, b);
            }
        }
    }
}
