//! `ipam show` (reference §4.6, §9.2): utilisation per pool and block, borrowed addresses and the
//! owner of one address, rendered like calicoctl (Go `%.5g` numbers, ASCII box tables).
//! Computation and rendering are pure; the caller reads the datastore.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::block::{address_to_u128, Block};
use starling_model::IpPool;

/// Counts of one row. `reserved` counts every reserved address (allocated or not), so
/// in-use + reserved + free may exceed the capacity, as in Calico.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub capacity: u128,
    pub in_use: u128,
    pub reserved: u128,
    pub free: u128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockUsage {
    pub cidr: IpNet,
    pub usage: Usage,
}

/// One pool (or, with `pool: None`, the blocks overlapping no pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    pub pool: Option<(String, IpNet)>,
    pub usage: Usage,
    pub blocks: Vec<BlockUsage>,
}

fn size(net: &IpNet) -> u128 {
    let bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(bits).unwrap_or(u128::MAX)
}

/// Number of addresses of `net` inside any of `reserved` (which may overlap each other).
fn reserved_in(net: &IpNet, reserved: &[IpNet]) -> u128 {
    let (start, end) = (
        address_to_u128(net.network()),
        address_to_u128(net.broadcast()),
    );
    let mut pieces: Vec<(u128, u128)> = reserved
        .iter()
        .filter(|r| r.network().is_ipv4() == net.network().is_ipv4())
        .map(|r| {
            (
                address_to_u128(r.network()).max(start),
                address_to_u128(r.broadcast()).min(end),
            )
        })
        .filter(|(s, e)| s <= e)
        .collect();
    pieces.sort();
    let mut total = 0u128;
    let mut covered_to: Option<u128> = None;
    for (s, e) in pieces {
        let s = match covered_to {
            Some(c) if s <= c => c.saturating_add(1),
            _ => s,
        };
        if s <= e {
            total = total.saturating_add(e - s + 1);
        }
        covered_to = Some(covered_to.map_or(e, |c| c.max(e)));
    }
    total
}

fn block_usage(block: &Block, reserved: &[IpNet]) -> BlockUsage {
    let capacity = size(&block.cidr);
    BlockUsage {
        cidr: block.cidr,
        usage: Usage {
            capacity,
            in_use: capacity.saturating_sub(block.unallocated.len() as u128),
            reserved: reserved_in(&block.cidr, reserved),
            free: block.free_unreserved(reserved) as u128,
        },
    }
}

/// Utilisation of every pool (disabled ones included), then the orphaned blocks if any.
pub fn utilization(pools: &[IpPool], blocks: &[Block], reserved: &[IpNet]) -> Vec<PoolUsage> {
    let mut sorted_pools: Vec<&IpPool> = pools.iter().collect();
    sorted_pools.sort_by(|a, b| a.name.cmp(&b.name));
    let mut sorted_blocks: Vec<&Block> = blocks.iter().collect();
    sorted_blocks.sort_by_key(|b| b.cidr);
    let mut rows = Vec::new();
    for pool in sorted_pools {
        let members: Vec<BlockUsage> = sorted_blocks
            .iter()
            .filter(|b| pool.cidr.contains(&b.cidr))
            .map(|b| block_usage(b, reserved))
            .collect();
        let capacity = size(&pool.cidr);
        let in_use: u128 = members.iter().map(|b| b.usage.in_use).sum();
        let blocked: u128 = members.iter().map(|b| b.usage.capacity).sum();
        let blocked_reserved: u128 = members.iter().map(|b| reserved_in(&b.cidr, reserved)).sum();
        let pool_reserved = reserved_in(&pool.cidr, reserved);
        let unblocked_free = capacity
            .saturating_sub(blocked)
            .saturating_sub(pool_reserved.saturating_sub(blocked_reserved));
        let free = members.iter().map(|b| b.usage.free).sum::<u128>() + unblocked_free;
        rows.push(PoolUsage {
            pool: Some((pool.name.clone(), pool.cidr)),
            usage: Usage {
                capacity,
                in_use,
                reserved: pool_reserved,
                free,
            },
            blocks: members,
        });
    }
    let orphans: Vec<BlockUsage> = sorted_blocks
        .iter()
        .filter(|b| !pools.iter().any(|p| p.cidr.contains(&b.cidr)))
        .map(|b| block_usage(b, reserved))
        .collect();
    if !orphans.is_empty() {
        rows.push(PoolUsage {
            pool: None,
            usage: Usage::default(),
            blocks: orphans,
        });
    }
    rows
}

/// Go's `%.5g`.
pub fn go_g5(value: f64) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let scientific = format!("{value:.4e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..5).contains(&exponent) {
        let mantissa = trim_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let decimals = (4 - exponent).max(0) as usize;
    trim_zeros(&format!("{value:.decimals$}")).to_string()
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

fn with_percentage(count: u128, capacity: u128) -> String {
    let percent = if capacity == 0 {
        0.0
    } else {
        100.0 * count as f64 / capacity as f64
    };
    format!("{} ({:.0}%)", go_g5(count as f64), percent)
}

/// A calicoctl-style ASCII table: centred headers; columns in `right` are right-aligned.
pub fn render_table(headers: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let mut out = rule.clone();
    for (i, header) in headers.iter().enumerate() {
        let gap = widths[i] - header.len();
        let left = gap / 2;
        out += &format!(
            "| {}{}{} ",
            " ".repeat(left),
            header,
            " ".repeat(gap - left)
        );
    }
    out += "|\n";
    out += &rule;
    for row in rows {
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            if right.contains(&i) {
                out += &format!("| {cell:>width$} ");
            } else {
                out += &format!("| {cell:<width$} ");
            }
        }
        out += "|\n";
    }
    out += &rule;
    out
}

/// The utilisation table (with `--show-blocks`, block rows follow their pool).
pub fn render_utilization(usage: &[PoolUsage], show_blocks: bool) -> String {
    let row = |kind: &str, cidr: String, u: &Usage| {
        vec![
            kind.to_string(),
            cidr,
            go_g5(u.capacity as f64),
            with_percentage(u.in_use, u.capacity),
            with_percentage(u.reserved, u.capacity),
            with_percentage(u.free, u.capacity),
        ]
    };
    let mut rows = Vec::new();
    for pool in usage {
        if let Some((_, cidr)) = &pool.pool {
            rows.push(row("IP Pool", cidr.to_string(), &pool.usage));
        }
        if show_blocks {
            for block in &pool.blocks {
                rows.push(row("Block", block.cidr.to_string(), &block.usage));
            }
        }
    }
    render_table(
        &[
            "GROUPING",
            "CIDR",
            "IPS TOTAL",
            "IPS IN USE",
            "IPS RESERVED",
            "IPS FREE",
        ],
        &rows,
        &[2],
    )
}

/// `--show-borrowed`: addresses whose `node` attribute differs from the block's owner.
pub fn render_borrowed(blocks: &[Block]) -> String {
    let mut rows = Vec::new();
    let mut unclassified = 0;
    let mut sorted: Vec<&Block> = blocks.iter().collect();
    sorted.sort_by_key(|b| b.cidr);
    for block in sorted {
        let owner = block
            .affinity
            .as_deref()
            .map(|a| a.split_once(':').map_or(a, |(_, host)| host))
            .unwrap_or("")
            .to_string();
        for (address, attribute) in block.allocated() {
            let attrs = &attribute.secondary;
            let Some(borrower) = attrs.get("node") else {
                unclassified += 1;
                continue;
            };
            if *borrower == owner {
                continue;
            }
            let namespace = attrs.get("namespace").cloned().unwrap_or_default();
            let (kind, to) = if let Some(vmi) = attrs.get("vmi-name") {
                ("vmi".to_string(), format!("{namespace}/{vmi}"))
            } else if let Some(pod) = attrs.get("pod") {
                ("pod".to_string(), format!("{namespace}/{pod}"))
            } else {
                (
                    attrs.get("type").cloned().unwrap_or_default(),
                    String::new(),
                )
            };
            rows.push(vec![
                address.to_string(),
                borrower.clone(),
                block.cidr.to_string(),
                owner.clone(),
                kind,
                to,
            ]);
        }
    }
    let mut out = render_table(
        &[
            "IP",
            "BORROWING-NODE",
            "BLOCK",
            "BLOCK OWNER",
            "TYPE",
            "ALLOCATED-TO",
        ],
        &rows,
        &[],
    );
    if unclassified > 0 {
        out += &format!("\nNote: found {unclassified} IP allocations without an explicit node association. Unable to determine if they are borrowed.\n");
    }
    out
}

/// `--ip ADDR`: who holds the address.
pub fn render_address(blocks: &[Block], address: IpAddr) -> String {
    let attribute = blocks
        .iter()
        .find(|b| b.cidr.contains(&address))
        .and_then(|b| b.attribute_of(address));
    let Some(attribute) = attribute else {
        return format!("{address} is not assigned\n");
    };
    let mut out = format!("IP {address} is in use\n");
    out += &format!(
        "Handle ID: {}\n",
        attribute.handle_id.as_deref().unwrap_or("<none>")
    );
    let section = |title: &str, attrs: &BTreeMap<String, String>| {
        let mut text = format!("{title}:\n");
        for (key, value) in attrs {
            text += &format!("  {key}: {value}\n");
        }
        text
    };
    if attribute.secondary.is_empty() {
        out += "No Active Owner attributes defined\n";
    } else {
        out += &section("Active Owner Attributes", &attribute.secondary);
    }
    if !attribute.alternate_owner_attrs.is_empty() {
        out += &section(
            "Alternate Owner Attributes",
            &attribute.alternate_owner_attrs,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_percent_g_five() {
        assert_eq!(go_g5(65536.0), "65536");
        assert_eq!(go_g5(1048576.0), "1.0486e+06");
        assert_eq!(go_g5(100000.0), "1e+05");
        assert_eq!(go_g5(64.0), "64");
        assert_eq!(go_g5(7.0), "7");
        assert_eq!(go_g5(99999.0), "99999");
        assert_eq!(go_g5(0.0), "0");
        assert_eq!(go_g5(1.5), "1.5");
        assert_eq!(go_g5(16777216.0), "1.6777e+07");
    }

    #[test]
    fn table_matches_calicoctl_layout() {
        let table = render_table(
            &["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"],
            &[vec![
                "IP Pool".into(),
                "10.244.0.0/16".into(),
                "65536".into(),
                "7 (0%)".into(),
                "65529 (100%)".into(),
            ]],
            &[2],
        );
        let expected = "\
+----------+---------------+-----------+------------+--------------+
| GROUPING |     CIDR      | IPS TOTAL | IPS IN USE |   IPS FREE   |
+----------+---------------+-----------+------------+--------------+
| IP Pool  | 10.244.0.0/16 |     65536 | 7 (0%)     | 65529 (100%) |
+----------+---------------+-----------+------------+--------------+
";
        assert_eq!(table, expected);
    }
}
