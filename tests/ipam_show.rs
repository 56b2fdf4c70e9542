//! `ipam show` computation and rendering (§4.6, §9.2).

use starling_ipam::block::Block;
use starling_ipam::show::{render_utilization, utilization};

mod ipam_support;
use ipam_support::{attributes, pool};

#[test]
fn utilisation_with_reservations_blocks_and_orphans() {
    let pools = vec![pool("default", "10.244.0.0/24", 28)];
    let mut block = Block::new(
        "10.244.0.16/28".parse().unwrap(),
        Some("host:a".into()),
        None,
        1,
    )
    .unwrap();
    block.assign(5, Some("h"), &attributes("a", "p"), &[]);
    let orphan = Block::new(
        "192.168.0.0/28".parse().unwrap(),
        Some("host:b".into()),
        None,
        1,
    )
    .unwrap();
    // 10.244.0.16/30 overlaps the block (4 addresses, all allocated already); 10.244.0.64/27 lies in
    // unclaimed space.
    let reserved = vec![
        "10.244.0.16/30".parse().unwrap(),
        "10.244.0.64/27".parse().unwrap(),
    ];
    let usage = utilization(&pools, &[block, orphan], &reserved);
    assert_eq!(usage.len(), 2, "pool row plus the orphan group");
    let pool_usage = usage[0].usage;
    assert_eq!(pool_usage.capacity, 256);
    assert_eq!(pool_usage.in_use, 5);
    assert_eq!(pool_usage.reserved, 36);
    // 11 free in the block (none reserved among the free ones) + 240 unblocked - 32 reserved there.
    assert_eq!(pool_usage.free, 11 + 240 - 32);
    let table = render_utilization(&usage, true);
    let expected = "\
+----------+----------------+-----------+------------+--------------+-----------+
| GROUPING |      CIDR      | IPS TOTAL | IPS IN USE | IPS RESERVED | IPS FREE  |
+----------+----------------+-----------+------------+--------------+-----------+
| IP Pool  | 10.244.0.0/24  |       256 | 5 (2%)     | 36 (14%)     | 219 (86%) |
| Block    | 10.244.0.16/28 |        16 | 5 (31%)    | 4 (25%)      | 11 (69%)  |
| Block    | 192.168.0.0/28 |        16 | 0 (0%)     | 0 (0%)       | 16 (100%) |
+----------+----------------+-----------+------------+--------------+-----------+
";
    assert_eq!(table, expected);
    let without_blocks = render_utilization(&usage, false);
    assert_eq!(without_blocks.lines().count(), 5, "{without_blocks}");
}

#[test]
fn large_pools_use_go_exponent_format() {
    let pools = vec![pool("big", "10.0.0.0/12", 26)];
    let usage = utilization(&pools, &[], &[]);
    let table = render_utilization(&usage, false);
    assert!(table.contains("| 1.0486e+06 |"), "{table}");
    assert!(table.contains("1.0486e+06 (100%)"), "{table}");
}
