//! Synthetic programs at scale, for benchmarks and scale tests of the renderer (issue 13 asks
//! for 1 000 local endpoints and 2 000 policies): namespaces of 50 endpoints, each policy in one
//! namespace applying to a quarter of its endpoints with two ingress rules (TCP 80-81 from a
//! selector set, a named UDP port) and, for every other policy, one egress rule; every endpoint
//! ends with its namespace profile. Deterministic, so runs compare.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::program::{
    Action, Changes, EndpointProgram, Family, Pipeline, PolicyId, PolicyKind, PolicyProgram,
    PortRange, Program, Rule, RuleList, SetId, SetMembers, Side, TierDefault, TierStep,
};

const SELECTORS: usize = 50;
const PER_NAMESPACE: usize = 50;

fn namespaces(endpoints: usize) -> usize {
    endpoints.div_ceil(PER_NAMESPACE).max(1)
}

fn policy_id(index: usize, namespaces: usize) -> PolicyId {
    PolicyId {
        kind: PolicyKind::KubernetesNetworkPolicy,
        namespace: Some(format!("ns{}", index % namespaces)),
        name: format!("policy-{index}"),
    }
}

fn addresses(index: usize) -> (IpAddr, IpAddr) {
    let offset = u32::try_from(index + 1).unwrap_or(u32::MAX);
    (
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(offset))),
        IpAddr::V6(Ipv6Addr::from(
            0xfd00_0000_0000_0000_0000_0000_0000_0000u128 + u128::from(offset),
        )),
    )
}

fn selector_set(index: usize) -> SetId {
    SetId::Selector(format!("app == 'a{}'", index % SELECTORS))
}

fn named_port_set(index: usize) -> SetId {
    SetId::NamedPort {
        selector: format!("app == 'a{}'", index % SELECTORS),
        protocol: 17,
        name: "dns".into(),
    }
}

/// Endpoint `index` of a program with `policies` policies: its pipelines.
pub fn endpoint(index: usize, endpoints: usize, policies: usize) -> EndpointProgram {
    let namespaces = namespaces(endpoints);
    let namespace = index % namespaces;
    let slot = index / namespaces;
    let applying: Vec<usize> = (0..policies)
        .filter(|p| p % namespaces == namespace && (p / namespaces + slot) % 4 == 0)
        .collect();
    let tier = |list: Vec<usize>| {
        if list.is_empty() {
            vec![]
        } else {
            vec![TierStep {
                tier: "default".into(),
                default_action: TierDefault::Deny,
                policies: list.into_iter().map(|p| policy_id(p, namespaces)).collect(),
            }]
        }
    };
    let (v4, v6) = addresses(index);
    let profiles = vec![format!("kns.ns{namespace}")];
    EndpointProgram {
        key: format!("ns{namespace}/pod-{index}"),
        interface: format!("cali{index:011x}"),
        addresses: vec![v4, v6],
        ingress: Pipeline {
            tiers: tier(applying.clone()),
            profiles: profiles.clone(),
        },
        egress: Pipeline {
            tiers: tier(applying.into_iter().filter(|p| p % 2 == 0).collect()),
            profiles,
        },
    }
}

fn policy_rules(index: usize) -> PolicyProgram {
    let from_set = Side {
        set: Some(selector_set(index)),
        ..Side::default()
    };
    let web = Rule {
        index: 0,
        action: Action::Allow,
        protocol: Some(6),
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: from_set.clone(),
        destination: Side {
            ports: vec![PortRange {
                first: 80,
                last: 81,
            }],
            ..Side::default()
        },
    };
    let dns = Rule {
        index: 1,
        protocol: Some(17),
        destination: Side {
            named_ports: vec![named_port_set(index)],
            ..Side::default()
        },
        ..web.clone()
    };
    let out = Rule {
        index: 0,
        source: Side::default(),
        destination: from_set,
        ..web.clone()
    };
    let both = |rules: Vec<Rule>| RuleList {
        v4: rules.clone(),
        v6: rules,
    };
    PolicyProgram {
        ingress: both(vec![web, dns]),
        egress: if index % 2 == 0 {
            both(vec![out])
        } else {
            RuleList::default()
        },
    }
}

/// Adds the members of endpoint `index` to the selector and named-port sets it belongs to.
fn add_members(program: &mut Program, index: usize) -> Vec<(SetId, Family)> {
    let (v4, v6) = addresses(index);
    let mut touched = vec![];
    for (address, family) in [(v4, Family::V4), (v6, Family::V6)] {
        let nets = program
            .sets
            .entry((selector_set(index), family))
            .or_insert_with(|| SetMembers::Nets(BTreeSet::new()));
        if let SetMembers::Nets(nets) = nets {
            nets.insert(IpNet::from(address));
        }
        let ports = program
            .sets
            .entry((named_port_set(index), family))
            .or_insert_with(|| SetMembers::AddressPorts(BTreeSet::new()));
        if let SetMembers::AddressPorts(ports) = ports {
            ports.insert((address, 17, 53));
        }
        touched.push((selector_set(index), family));
        touched.push((named_port_set(index), family));
    }
    touched
}

/// A node with `endpoints` local endpoints and `policies` policies.
pub fn large_program(endpoints: usize, policies: usize) -> Program {
    let namespaces = namespaces(endpoints);
    let mut program = Program::default();
    for index in 0..endpoints {
        let endpoint = endpoint(index, endpoints, policies);
        program
            .endpoints
            .insert(endpoint.interface.clone(), endpoint);
        add_members(&mut program, index);
    }
    for index in 0..policies {
        program
            .policies
            .insert(policy_id(index, namespaces), policy_rules(index));
    }
    let allow_all = Rule {
        index: 0,
        action: Action::Allow,
        protocol: None,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: Side::default(),
        destination: Side::default(),
    };
    for namespace in 0..namespaces {
        let rules = RuleList {
            v4: vec![allow_all.clone()],
            v6: vec![allow_all.clone()],
        };
        program.profiles.insert(
            format!("kns.ns{namespace}"),
            PolicyProgram {
                ingress: rules.clone(),
                egress: rules,
            },
        );
    }
    program
}

/// One more pod: endpoint `index` (its pipelines laid out as in a program of `endpoints` and
/// `policies`) joins `program` and the sets it is a member of; returns the changed keys.
pub fn add_endpoint(
    program: &mut Program,
    index: usize,
    endpoints: usize,
    policies: usize,
) -> Changes {
    let endpoint = endpoint(index, endpoints, policies);
    let mut changes = Changes::default();
    changes.endpoints.insert(endpoint.interface.clone());
    program
        .endpoints
        .insert(endpoint.interface.clone(), endpoint);
    changes.sets.extend(add_members(program, index));
    changes
}
