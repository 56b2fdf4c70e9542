//! natOutgoing (reference §5.9) in nftables tables Starling owns: `ip starling-nat` and
//! `ip6 starling-nat`.
//!
//! Contract: [`ruleset`] is pure. [`apply`] hands the whole ruleset to one `nft -f -`
//! transaction that creates, deletes and recreates our tables, so the kernel switches from the
//! old rules to the new ones atomically; no other table is ever named. Traffic whose source is
//! in a natOutgoing pool and whose destination is in no pool is masqueraded. `nft` runs as a
//! child of the calling thread, hence in that thread's network namespace.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use starling_calc::spec::NatSets;

pub const TABLE: &str = "starling-nat";

#[derive(Debug, thiserror::Error)]
pub enum NatError {
    #[error("running nft: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("nft rejected the natOutgoing ruleset: {stderr}")]
    Rejected { stderr: String },
}

fn family_table<T: std::fmt::Display>(
    text: &mut String,
    family: &str,
    address_type: &str,
    selector: &str,
    masquerade: &std::collections::BTreeSet<T>,
    all_pools: &std::collections::BTreeSet<T>,
) {
    // Declaring the table first makes the delete valid whether or not it exists.
    let _ = writeln!(text, "table {family} {TABLE}");
    let _ = writeln!(text, "delete table {family} {TABLE}");
    if masquerade.is_empty() {
        return;
    }
    let elements = |set: &std::collections::BTreeSet<T>| {
        set.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(text, "table {family} {TABLE} {{");
    let _ = writeln!(text, "  set masquerade-pools {{");
    let _ = writeln!(text, "    type {address_type}; flags interval;");
    let _ = writeln!(text, "    elements = {{ {} }}", elements(masquerade));
    let _ = writeln!(text, "  }}");
    let _ = writeln!(text, "  set all-pools {{");
    let _ = writeln!(text, "    type {address_type}; flags interval;");
    if !all_pools.is_empty() {
        let _ = writeln!(text, "    elements = {{ {} }}", elements(all_pools));
    }
    let _ = writeln!(text, "  }}");
    let _ = writeln!(text, "  chain postrouting {{");
    let _ = writeln!(
        text,
        "    type nat hook postrouting priority srcnat; policy accept;"
    );
    let _ = writeln!(
        text,
        "    {selector} saddr @masquerade-pools {selector} daddr != @all-pools counter masquerade fully-random"
    );
    let _ = writeln!(text, "  }}");
    let _ = writeln!(text, "}}");
}

/// The complete `nft -f` input for these sets.
pub fn ruleset(sets: &NatSets) -> String {
    let mut text = String::new();
    family_table(
        &mut text,
        "ip",
        "ipv4_addr",
        "ip",
        &sets.masquerade_v4,
        &sets.all_pools_v4,
    );
    family_table(
        &mut text,
        "ip6",
        "ipv6_addr",
        "ip6",
        &sets.masquerade_v6,
        &sets.all_pools_v6,
    );
    text
}

/// Replaces Starling's NAT tables in one transaction.
pub fn apply(sets: &NatSets) -> Result<(), NatError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(ruleset(sets).as_bytes())?;
    }
    let output = child.wait_with_output()?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NatError::Rejected {
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_masquerades_pool_sources_to_non_pool_destinations() {
        let mut sets = NatSets::default();
        sets.masquerade_v4.insert("10.244.0.0/16".parse().unwrap());
        sets.all_pools_v4.insert("10.244.0.0/16".parse().unwrap());
        sets.all_pools_v4.insert("10.96.0.0/16".parse().unwrap());
        let text = ruleset(&sets);
        assert!(text.starts_with("table ip starling-nat\ndelete table ip starling-nat\n"));
        assert!(text.contains("elements = { 10.244.0.0/16 }"));
        assert!(
            text.contains("elements = { 10.96.0.0/16, 10.244.0.0/16 }")
                || text.contains("elements = { 10.244.0.0/16, 10.96.0.0/16 }")
        );
        assert!(
            text.contains("ip saddr @masquerade-pools ip daddr != @all-pools counter masquerade")
        );
        // No v6 natOutgoing pool: the v6 table is only removed.
        assert!(text.ends_with("table ip6 starling-nat\ndelete table ip6 starling-nat\n"));
    }
}
