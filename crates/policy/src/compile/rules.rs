//! Checked rules → program rules, one list per family, and the sets they reference.
//!
//! A rule goes to a family unless its `ipVersion` says otherwise, its protocol is the other
//! family's ICMP, or one of its CIDR lists is non-empty but holds no CIDR of that family
//! (Felix's `FilterRuleToIPVersion`: filtering must never turn a rule into "match all").
//! Selectors become [`SetId::Selector`] sets named by their canonical text; named ports become
//! [`SetId::NamedPort`] sets over the side's selector (`all()` when it has none), on the side
//! whose endpoints define the name.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use starling_selector::Selector;

use crate::program::{self, Family, PolicyProgram, RuleList, SetId, Side};
use crate::validate::{self, Entity, Port, PROTOCOL_ICMP, PROTOCOL_ICMPV6};

/// A compiled policy or profile with the sets it needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compiled {
    pub program: PolicyProgram,
    pub sets: BTreeSet<(SetId, Family)>,
    /// The selector of every referenced set, by canonical text.
    pub selectors: BTreeMap<String, Selector>,
}

pub const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

/// The selector text a set stands for.
pub fn set_selector(id: &SetId) -> &str {
    match id {
        SetId::Selector(text) => text,
        SetId::NamedPort { selector, .. } => selector,
    }
}

/// Compiles both directions; a direction the policy does not govern stays empty (its rules
/// can never run, so they must not pull sets in).
pub fn compile(ingress: Option<&[validate::Rule]>, egress: Option<&[validate::Rule]>) -> Compiled {
    let mut compiled = Compiled::default();
    if let Some(rules) = ingress {
        compiled.program.ingress = rule_list(rules, &mut compiled);
    }
    if let Some(rules) = egress {
        compiled.program.egress = rule_list(rules, &mut compiled);
    }
    compiled
}

fn rule_list(rules: &[validate::Rule], compiled: &mut Compiled) -> RuleList {
    let mut list = RuleList::default();
    for (index, rule) in rules.iter().enumerate() {
        for family in FAMILIES {
            if let Some(compiled_rule) = rule_for(index, rule, family, compiled) {
                match family {
                    Family::V4 => list.v4.push(compiled_rule),
                    Family::V6 => list.v6.push(compiled_rule),
                }
            }
        }
    }
    list
}

/// The CIDRs of one family; `None` when a non-empty list has none of them.
fn family_nets(nets: &[IpNet], family: Family) -> Option<Vec<IpNet>> {
    let kept: Vec<IpNet> = nets
        .iter()
        .filter(|net| Family::of_net(net) == family)
        .copied()
        .collect();
    (nets.is_empty() || !kept.is_empty()).then_some(kept)
}

fn rule_for(
    index: usize,
    rule: &validate::Rule,
    family: Family,
    compiled: &mut Compiled,
) -> Option<program::Rule> {
    if rule.ip_version.is_some_and(|version| version != family) {
        return None;
    }
    match (rule.protocol, family) {
        (Some(PROTOCOL_ICMP), Family::V6) | (Some(PROTOCOL_ICMPV6), Family::V4) => return None,
        _ => {}
    }
    // Every CIDR list is filtered before any set is taken, so a dropped rule uses none.
    let source_nets = (
        family_nets(&rule.source.nets, family)?,
        family_nets(&rule.source.not_nets, family)?,
    );
    let destination_nets = (
        family_nets(&rule.destination.nets, family)?,
        family_nets(&rule.destination.not_nets, family)?,
    );
    let source = side(&rule.source, source_nets, rule.protocol, family, compiled);
    let destination = side(
        &rule.destination,
        destination_nets,
        rule.protocol,
        family,
        compiled,
    );
    Some(program::Rule {
        index,
        action: rule.action,
        protocol: rule.protocol,
        not_protocol: rule.not_protocol,
        icmp: rule.icmp,
        not_icmp: rule.not_icmp,
        source,
        destination,
    })
}

fn side(
    entity: &Entity,
    (nets, not_nets): (Vec<IpNet>, Vec<IpNet>),
    protocol: Option<u8>,
    family: Family,
    compiled: &mut Compiled,
) -> Side {
    let mut use_set = |selector: &Selector, make: &dyn Fn(String) -> SetId| {
        let text = selector.to_string();
        let id = make(text.clone());
        compiled
            .selectors
            .entry(text)
            .or_insert_with(|| selector.clone());
        compiled.sets.insert((id.clone(), family));
        id
    };
    let set = entity
        .selector
        .as_ref()
        .map(|selector| use_set(selector, &SetId::Selector));
    let not_set = entity
        .not_selector
        .as_ref()
        .map(|selector| use_set(selector, &SetId::Selector));
    let all = Selector::all();
    let named_selector = entity.selector.as_ref().unwrap_or(&all);
    let mut split = |ports: &[Port]| {
        let mut ranges = Vec::new();
        let mut named = Vec::new();
        for port in ports {
            match port {
                Port::Range(range) => ranges.push(*range),
                Port::Named(name) => {
                    // Validation guarantees a protocol with ports wherever ports are used.
                    if let Some(protocol) = protocol {
                        named.push(use_set(named_selector, &|selector| SetId::NamedPort {
                            selector,
                            protocol,
                            name: name.clone(),
                        }));
                    }
                }
            }
        }
        (ranges, named)
    };
    let (ports, named_ports) = split(&entity.ports);
    let (not_ports, not_named_ports) = split(&entity.not_ports);
    Side {
        nets,
        not_nets,
        set,
        not_set,
        ports,
        named_ports,
        not_ports,
        not_named_ports,
    }
}
