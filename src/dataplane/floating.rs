//! Floating IPs in nftables (reference §4.5, §5.9; Felix's `cali-fip-dnat` / `cali-fip-snat`):
//! tables `ip starling-fip` and `ip6 starling-fip`, which Starling owns.
//!
//! Layout per family: map `floating-dnat` (floating IP → pod IP) used by one `dnat` rule in a
//! `prerouting` and an `output` nat chain (priority -100, so traffic from other hosts and from
//! the node itself is translated), and map `hairpin-snat` (pod IP . pod IP → floating IP) used
//! by one `snat` rule in a `postrouting` chain at priority 99, just before natOutgoing's
//! masquerade in `starling-nat` (Felix jumps to `cali-fip-snat` before `cali-nat-outgoing`).
//! The chains never change; only map elements do.
//!
//! Contract: [`script`] is pure: from the wanted NATs and what is installed it writes the
//! `nft -f -` transaction, or `None` when nothing differs. An installed table with the expected
//! chains and rules gets element additions and deletions only; a missing or unexpected one is
//! recreated whole; a family without floating IPs has no table. [`read`] lists what is
//! installed (`nft -j list table`), so a resync of a correct ruleset writes nothing. `nft` runs
//! as a child of the calling thread, hence in that thread's network namespace. No other table
//! is ever named.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use serde_json::Value;

use starling_calc::spec::FloatingIps;

pub const TABLE: &str = "starling-fip";
pub const DNAT_MAP: &str = "floating-dnat";
pub const SNAT_MAP: &str = "hairpin-snat";

#[derive(Debug, thiserror::Error)]
pub enum FloatingError {
    #[error("running nft: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("nft rejected the floating IP transaction: {stderr}")]
    Rejected { stderr: String },
    #[error("nft -j list table {family} {TABLE}: {reason}")]
    List {
        family: &'static str,
        reason: String,
    },
}

/// The two families, by their nft names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn nft(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    fn holds(self, address: &IpAddr) -> bool {
        address.is_ipv4() == (self == Family::V4)
    }
}

/// One family's table as installed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstalledTable {
    pub dnat: BTreeMap<IpAddr, IpAddr>,
    pub snat: BTreeMap<IpAddr, IpAddr>,
    /// Both maps, the three chains and one rule in each are there (else it is rebuilt).
    pub complete: bool,
}

/// What is installed in both families (`None`: no table).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Installed {
    pub v4: Option<InstalledTable>,
    pub v6: Option<InstalledTable>,
}

impl Installed {
    fn family(&self, family: Family) -> Option<&InstalledTable> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    /// What a successful transaction for `wanted` leaves behind.
    pub fn after(wanted: &FloatingIps) -> Installed {
        let table = |family: Family| {
            let wanted = of_family(wanted, family);
            (!wanted.dnat.is_empty()).then_some(InstalledTable {
                dnat: wanted.dnat,
                snat: wanted.snat,
                complete: true,
            })
        };
        Installed {
            v4: table(Family::V4),
            v6: table(Family::V6),
        }
    }
}

fn of_family(wanted: &FloatingIps, family: Family) -> FloatingIps {
    let pick = |map: &BTreeMap<IpAddr, IpAddr>| {
        map.iter()
            .filter(|(key, _)| family.holds(key))
            .map(|(key, value)| (*key, *value))
            .collect()
    };
    FloatingIps {
        dnat: pick(&wanted.dnat),
        snat: pick(&wanted.snat),
    }
}

fn elements<'a>(map: impl Iterator<Item = (String, &'a IpAddr)>) -> String {
    map.map(|(key, value)| format!("{key} : {value}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn hairpin_key(internal: &IpAddr) -> String {
    format!("{internal} . {internal}")
}

fn create_table(text: &mut String, family: Family, wanted: &FloatingIps) {
    let (name, kind, selector) = (family.nft(), family.address_type(), family.nft());
    // Declaring the table first makes the delete valid whether or not it exists.
    let _ = writeln!(text, "table {name} {TABLE}");
    let _ = writeln!(text, "delete table {name} {TABLE}");
    let _ = writeln!(text, "table {name} {TABLE} {{");
    let _ = writeln!(text, "  map {DNAT_MAP} {{");
    let _ = writeln!(text, "    type {kind} : {kind};");
    let dnat = elements(wanted.dnat.iter().map(|(k, v)| (k.to_string(), v)));
    let _ = writeln!(text, "    elements = {{ {dnat} }}");
    let _ = writeln!(text, "  }}");
    let _ = writeln!(text, "  map {SNAT_MAP} {{");
    let _ = writeln!(text, "    type {kind} . {kind} : {kind};");
    if !wanted.snat.is_empty() {
        let snat = elements(wanted.snat.iter().map(|(k, v)| (hairpin_key(k), v)));
        let _ = writeln!(text, "    elements = {{ {snat} }}");
    }
    let _ = writeln!(text, "  }}");
    for (chain, hook, priority) in [
        ("prerouting", "prerouting", -100),
        ("output", "output", -100),
    ] {
        let _ = writeln!(text, "  chain {chain} {{");
        let _ = writeln!(
            text,
            "    type nat hook {hook} priority {priority}; policy accept;"
        );
        let _ = writeln!(text, "    dnat to {selector} daddr map @{DNAT_MAP}");
        let _ = writeln!(text, "  }}");
    }
    let _ = writeln!(text, "  chain postrouting {{");
    let _ = writeln!(
        text,
        "    type nat hook postrouting priority 99; policy accept;"
    );
    let _ = writeln!(
        text,
        "    snat to {selector} saddr . {selector} daddr map @{SNAT_MAP}"
    );
    let _ = writeln!(text, "  }}");
    let _ = writeln!(text, "}}");
}

/// Element changes turning `installed` into `wanted` for one map.
fn diff_map(
    text: &mut String,
    family: Family,
    map: &str,
    installed: &BTreeMap<IpAddr, IpAddr>,
    wanted: &BTreeMap<IpAddr, IpAddr>,
    key: impl Fn(&IpAddr) -> String,
) {
    let name = family.nft();
    for (address, value) in installed {
        if wanted.get(address) != Some(value) {
            let _ = writeln!(
                text,
                "delete element {name} {TABLE} {map} {{ {} }}",
                key(address)
            );
        }
    }
    for (address, value) in wanted {
        if installed.get(address) != Some(value) {
            let _ = writeln!(
                text,
                "add element {name} {TABLE} {map} {{ {} : {value} }}",
                key(address)
            );
        }
    }
}

/// The transaction from `installed` to `wanted`, or `None` when they agree.
pub fn script(wanted: &FloatingIps, installed: &Installed) -> Option<String> {
    let mut text = String::new();
    for family in Family::BOTH {
        let wanted = of_family(wanted, family);
        match installed.family(family) {
            None if wanted.dnat.is_empty() => {}
            Some(_) if wanted.dnat.is_empty() => {
                let _ = writeln!(text, "delete table {} {TABLE}", family.nft());
            }
            Some(table) if table.complete => {
                diff_map(
                    &mut text,
                    family,
                    DNAT_MAP,
                    &table.dnat,
                    &wanted.dnat,
                    IpAddr::to_string,
                );
                diff_map(
                    &mut text,
                    family,
                    SNAT_MAP,
                    &table.snat,
                    &wanted.snat,
                    hairpin_key,
                );
            }
            _ => create_table(&mut text, family, &wanted),
        }
    }
    (!text.is_empty()).then_some(text)
}

fn address(value: &Value) -> Option<IpAddr> {
    value.as_str()?.parse().ok()
}

/// Parses `nft -j list table <family> starling-fip`.
pub fn parse(json: &str) -> Result<InstalledTable, String> {
    let document: Value = serde_json::from_str(json).map_err(|error| error.to_string())?;
    let objects = document["nftables"]
        .as_array()
        .ok_or("no \"nftables\" array")?;
    let mut table = InstalledTable::default();
    let mut maps = 0;
    let mut chains = Vec::new();
    let mut rules = Vec::new();
    for object in objects {
        if let Some(map) = object.get("map") {
            let elements = map["elem"].as_array().cloned().unwrap_or_default();
            let name = map["name"].as_str().unwrap_or_default();
            for element in &elements {
                let pair = element.as_array().filter(|pair| pair.len() == 2);
                let Some(pair) = pair else {
                    return Err(format!("map {name}: element {element} is not key : value"));
                };
                let value = address(&pair[1])
                    .ok_or_else(|| format!("map {name}: value {} is not an address", pair[1]))?;
                match name {
                    DNAT_MAP => {
                        let key = address(&pair[0]).ok_or_else(|| {
                            format!("map {name}: key {} is not an address", pair[0])
                        })?;
                        table.dnat.insert(key, value);
                    }
                    SNAT_MAP => {
                        let parts: Vec<Option<IpAddr>> = pair[0]["concat"]
                            .as_array()
                            .map(|parts| parts.iter().map(address).collect())
                            .unwrap_or_default();
                        match parts.as_slice() {
                            [Some(source), Some(destination)] if source == destination => {
                                table.snat.insert(*source, value);
                            }
                            // Not a key Starling writes: rebuild the table.
                            _ => return Ok(InstalledTable::default()),
                        }
                    }
                    _ => {}
                }
            }
            if matches!(name, DNAT_MAP | SNAT_MAP) {
                maps += 1;
            }
        }
        if let Some(chain) = object.get("chain") {
            chains.push(chain["name"].as_str().unwrap_or_default().to_string());
        }
        if let Some(rule) = object.get("rule") {
            rules.push(rule["chain"].as_str().unwrap_or_default().to_string());
        }
    }
    chains.sort();
    rules.sort();
    let expected = ["output", "postrouting", "prerouting"];
    table.complete = maps == 2 && chains == expected && rules == expected;
    Ok(table)
}

fn nft(args: &[&str], input: Option<&str>) -> Result<std::process::Output, std::io::Error> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        stdin.write_all(input.as_bytes())?;
    }
    child.wait_with_output()
}

/// What is installed now.
pub fn read() -> Result<Installed, FloatingError> {
    let mut installed = Installed::default();
    for family in Family::BOTH {
        let output = nft(&["-j", "list", "table", family.nft(), TABLE], None)?;
        let table = if output.status.success() {
            let text = String::from_utf8_lossy(&output.stdout);
            Some(parse(&text).map_err(|reason| FloatingError::List {
                family: family.nft(),
                reason,
            })?)
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if !stderr.contains("No such file or directory") {
                return Err(FloatingError::List {
                    family: family.nft(),
                    reason: stderr.trim().to_string(),
                });
            }
            None
        };
        match family {
            Family::V4 => installed.v4 = table,
            Family::V6 => installed.v6 = table,
        }
    }
    Ok(installed)
}

/// Writes what differs between `installed` and `wanted`; returns the number of script lines
/// written (0: nothing differed, nft not run).
pub fn apply(wanted: &FloatingIps, installed: &Installed) -> Result<usize, FloatingError> {
    let Some(text) = script(wanted, installed) else {
        return Ok(0);
    };
    let output = nft(&["-f", "-"], Some(&text))?;
    if output.status.success() {
        Ok(text.lines().count())
    } else {
        Err(FloatingError::Rejected {
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn wanted(pairs: &[(&str, &str)]) -> FloatingIps {
        starling_calc::floating::floating_ips(pairs.iter().map(|(internal, external)| {
            starling_model::IpNat {
                internal: ip(internal),
                external: ip(external),
            }
        }))
    }

    #[test]
    fn a_new_table_carries_both_maps_and_the_three_chains() {
        let wanted = wanted(&[("10.244.0.5", "10.244.200.1")]);
        let text = script(&wanted, &Installed::default()).unwrap();
        assert!(text.starts_with("table ip starling-fip\ndelete table ip starling-fip\n"));
        assert!(text.contains("elements = { 10.244.200.1 : 10.244.0.5 }"));
        assert!(text.contains("elements = { 10.244.0.5 . 10.244.0.5 : 10.244.200.1 }"));
        assert!(text.contains("type nat hook prerouting priority -100;"));
        assert!(text.contains("type nat hook output priority -100;"));
        assert!(text.contains("dnat to ip daddr map @floating-dnat"));
        assert!(text.contains("snat to ip saddr . ip daddr map @hairpin-snat"));
        // No IPv6 floating IP: no ip6 table, not even a delete.
        assert!(!text.contains("ip6"));
    }

    #[test]
    fn an_installed_table_changes_by_elements_and_a_correct_one_not_at_all() {
        let old = wanted(&[
            ("10.244.0.5", "10.244.200.1"),
            ("10.244.0.6", "10.244.200.2"),
        ]);
        let new = wanted(&[
            ("10.244.0.5", "10.244.200.1"),
            ("10.244.0.7", "10.244.200.2"),
        ]);
        let installed = Installed::after(&old);
        assert_eq!(script(&old, &installed), None);
        let text = script(&new, &installed).unwrap();
        assert_eq!(
            text,
            "delete element ip starling-fip floating-dnat { 10.244.200.2 }\n\
             add element ip starling-fip floating-dnat { 10.244.200.2 : 10.244.0.7 }\n\
             delete element ip starling-fip hairpin-snat { 10.244.0.6 . 10.244.0.6 }\n\
             add element ip starling-fip hairpin-snat { 10.244.0.7 . 10.244.0.7 : 10.244.200.2 }\n"
        );
        // The last floating IP of a family takes its table along.
        assert_eq!(
            script(&FloatingIps::default(), &installed).unwrap(),
            "delete table ip starling-fip\n"
        );
        // A damaged table is rebuilt.
        let damaged = Installed {
            v4: Some(InstalledTable {
                complete: false,
                ..installed.v4.clone().unwrap()
            }),
            v6: None,
        };
        assert!(script(&old, &damaged)
            .unwrap()
            .starts_with("table ip starling-fip\ndelete table ip starling-fip\n"));
    }

    #[test]
    fn ipv6_uses_the_ip6_table() {
        let wanted = wanted(&[("fd00::5", "fd00:200::1")]);
        let text = script(&wanted, &Installed::default()).unwrap();
        assert!(text.starts_with("table ip6 starling-fip\n"));
        assert!(text.contains("type ipv6_addr . ipv6_addr : ipv6_addr;"));
        assert!(text.contains("dnat to ip6 daddr map @floating-dnat"));
    }

    #[test]
    fn parses_what_nft_lists() {
        // `nft -j list table ip starling-fip` (nft 1.0.6) after the script above.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "ip", "name": "starling-fip", "handle": 2}},
          {"map": {"family": "ip", "name": "floating-dnat", "table": "starling-fip", "type": "ipv4_addr", "handle": 4, "map": "ipv4_addr", "elem": [["10.244.200.1", "10.244.0.5"]]}},
          {"map": {"family": "ip", "name": "hairpin-snat", "table": "starling-fip", "type": ["ipv4_addr", "ipv4_addr"], "handle": 5, "map": "ipv4_addr", "elem": [[{"concat": ["10.244.0.5", "10.244.0.5"]}, "10.244.200.1"]]}},
          {"chain": {"family": "ip", "table": "starling-fip", "name": "prerouting", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
          {"chain": {"family": "ip", "table": "starling-fip", "name": "output", "handle": 2, "type": "nat", "hook": "output", "prio": -100, "policy": "accept"}},
          {"chain": {"family": "ip", "table": "starling-fip", "name": "postrouting", "handle": 3, "type": "nat", "hook": "postrouting", "prio": 99, "policy": "accept"}},
          {"rule": {"family": "ip", "table": "starling-fip", "chain": "prerouting", "handle": 6, "expr": []}},
          {"rule": {"family": "ip", "table": "starling-fip", "chain": "output", "handle": 7, "expr": []}},
          {"rule": {"family": "ip", "table": "starling-fip", "chain": "postrouting", "handle": 8, "expr": []}}]}"#;
        let table = parse(json).unwrap();
        let expected = Installed::after(&wanted(&[("10.244.0.5", "10.244.200.1")]));
        assert_eq!(Some(table), expected.v4);
        // Without one of its rules the table is incomplete.
        let cut: String = json
            .lines()
            .filter(|line| !line.contains("\"chain\": \"prerouting\", \"handle\": 6"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!parse(&cut).unwrap().complete);
        assert!(parse("{}").is_err());
    }
}
