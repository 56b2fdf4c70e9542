//! One compiled rule as nft rule texts (without the `add rule <table> <chain>` head).
//!
//! Every criterion of a rule is one nft match expression (AND). The OR inside a side's ports
//! and named ports cannot be one expression (numeric ports are a set of ports, each named port
//! a set of address . protocol . port), so a rule becomes one nft rule per combination of the
//! source's and the destination's alternatives, each with the same verdict: the first that
//! matches decides, as the single rule would have. A Log rule cannot repeat its log that way
//! (two alternatives matching would log twice), so its alternatives set the scratch mark and
//! one last rule logs once when the mark is set.

use std::collections::BTreeSet;

use ipnet::IpNet;

use crate::program::{Action, Family, Icmp, PortRange, Rule, SetId, Side};

use super::names::set_name;
use super::sets::coalesce;
use super::RenderConfig;

/// Whether the rules belong to a policy (Pass leaves the tier) or a profile (Pass only leaves
/// the profile: profiles have no tiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChainKind {
    Policy,
    Profile,
}

pub(crate) fn mark(value: u32) -> String {
    format!("0x{value:08x}")
}

fn protocol_name(protocol: u8) -> String {
    match protocol {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        other => other.to_string(),
    }
}

fn port_text(range: &PortRange) -> String {
    let (first, last) = if range.first <= range.last {
        (range.first, range.last)
    } else {
        (range.last, range.first)
    };
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// `x` or `{ x, y }`.
fn one_or_set(items: Vec<String>) -> String {
    if items.len() == 1 {
        items.into_iter().next().unwrap_or_default()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

fn address_keyword(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

fn icmp_keyword(family: Family) -> &'static str {
    match family {
        Family::V4 => "icmp",
        Family::V6 => "icmpv6",
    }
}

fn icmp_match(icmp: &Icmp, family: Family, negated: bool) -> String {
    let keyword = icmp_keyword(family);
    match (icmp.code, negated) {
        (None, false) => format!("{keyword} type {}", icmp.icmp_type),
        (None, true) => format!("{keyword} type != {}", icmp.icmp_type),
        (Some(code), false) => format!("{keyword} type {} {keyword} code {code}", icmp.icmp_type),
        // Not (type and code): one concatenated comparison, not two negations.
        (Some(code), true) => format!(
            "{keyword} type . {keyword} code != {{ {} . {code} }}",
            icmp.icmp_type
        ),
    }
}

/// The side's AND part goes to `common`; returns its OR alternatives (`None` = no port
/// criterion), or nothing when the side cannot match in this family.
fn side(
    side: &Side,
    family: Family,
    source: bool,
    common: &mut Vec<String>,
    sets: &mut BTreeSet<SetId>,
) -> Option<Vec<Option<String>>> {
    let ip = address_keyword(family);
    let (address, port) = if source {
        ("saddr", "th sport")
    } else {
        ("daddr", "th dport")
    };
    let own = |nets: &[IpNet]| -> Vec<String> {
        let mine: Vec<&IpNet> = nets
            .iter()
            .filter(|net| Family::of_net(net) == family)
            .collect();
        coalesce(mine).iter().map(ToString::to_string).collect()
    };
    if !side.nets.is_empty() {
        let nets = own(&side.nets);
        if nets.is_empty() {
            return None; // only nets of the other family: never matches here
        }
        common.push(format!("{ip} {address} {}", one_or_set(nets)));
    }
    let not_nets = own(&side.not_nets);
    if !not_nets.is_empty() {
        common.push(format!("{ip} {address} != {}", one_or_set(not_nets)));
    }
    if let Some(set) = &side.set {
        common.push(format!("{ip} {address} @{}", set_name(set)));
        sets.insert(set.clone());
    }
    if let Some(set) = &side.not_set {
        common.push(format!("{ip} {address} != @{}", set_name(set)));
        sets.insert(set.clone());
    }
    if !side.not_ports.is_empty() {
        let ports = side.not_ports.iter().map(port_text).collect();
        common.push(format!("{port} != {}", one_or_set(ports)));
    }
    let tuple = format!("{ip} {address} . meta l4proto . {port}");
    for set in &side.not_named_ports {
        common.push(format!("{tuple} != @{}", set_name(set)));
        sets.insert(set.clone());
    }
    let mut alternatives = vec![];
    if !side.ports.is_empty() {
        let ports = side.ports.iter().map(port_text).collect();
        alternatives.push(Some(format!("{port} {}", one_or_set(ports))));
    }
    for set in &side.named_ports {
        alternatives.push(Some(format!("{tuple} @{}", set_name(set))));
        sets.insert(set.clone());
    }
    if alternatives.is_empty() {
        alternatives.push(None);
    }
    Some(alternatives)
}

fn verdict(action: Action, kind: ChainKind, config: &RenderConfig) -> String {
    match (action, kind) {
        (Action::Allow, _) => "accept".into(),
        (Action::Deny, _) => "drop".into(),
        (Action::Pass, ChainKind::Policy) => format!(
            "meta mark set meta mark | {} return",
            mark(config.pass_mark)
        ),
        (Action::Pass, ChainKind::Profile) => "return".into(),
        (Action::Log, _) => format!("log prefix \"{}\"", config.log_prefix),
    }
}

/// Appends the nft rules of `rule` to `out` and the sets it reads to `sets`; with `counter`,
/// every rule taking the verdict names that counter (a packet matches at most one of them).
pub(crate) fn render_rule(
    rule: &Rule,
    family: Family,
    kind: ChainKind,
    config: &RenderConfig,
    counter: Option<&str>,
    out: &mut Vec<String>,
    sets: &mut BTreeSet<SetId>,
) {
    let mut common = vec![];
    if let Some(protocol) = rule.protocol {
        common.push(format!("meta l4proto {}", protocol_name(protocol)));
    }
    if let Some(protocol) = rule.not_protocol {
        common.push(format!("meta l4proto != {}", protocol_name(protocol)));
    }
    if let Some(icmp) = &rule.icmp {
        common.push(icmp_match(icmp, family, false));
    }
    if let Some(icmp) = &rule.not_icmp {
        common.push(icmp_match(icmp, family, true));
    }
    let mut rule_sets = BTreeSet::new();
    let Some(sources) = side(&rule.source, family, true, &mut common, &mut rule_sets) else {
        return;
    };
    let Some(destinations) = side(
        &rule.destination,
        family,
        false,
        &mut common,
        &mut rule_sets,
    ) else {
        return;
    };
    sets.extend(rule_sets);
    let mut matches = vec![];
    for source in &sources {
        for destination in &destinations {
            let parts: Vec<&str> = common
                .iter()
                .map(String::as_str)
                .chain(source.as_deref())
                .chain(destination.as_deref())
                .collect();
            matches.push(parts.join(" "));
        }
    }
    let verdict = match counter {
        Some(name) => format!(
            "counter name \"{name}\" {}",
            verdict(rule.action, kind, config)
        ),
        None => verdict(rule.action, kind, config),
    };
    let join = |matched: &str, tail: &str| {
        if matched.is_empty() {
            tail.to_string()
        } else {
            format!("{matched} {tail}")
        }
    };
    if rule.action == Action::Log && matches.len() > 1 {
        let scratch = mark(config.scratch_mark);
        let clear = mark(!config.scratch_mark);
        out.push(format!("meta mark set meta mark & {clear}"));
        for matched in &matches {
            out.push(join(
                matched,
                &format!("meta mark set meta mark | {scratch}"),
            ));
        }
        out.push(format!(
            "meta mark & {scratch} == {scratch} meta mark set meta mark & {clear} {verdict}"
        ));
    } else {
        for matched in &matches {
            out.push(join(matched, &verdict));
        }
    }
}
