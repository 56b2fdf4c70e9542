//! Table tests of the rendering, without a kernel: rules, chains, the full layout, incremental
//! transactions and resync.

mod counters;
mod incremental;
mod layout;
mod rules;

use std::collections::BTreeSet;

use ipnet::IpNet;

use crate::program::*;

pub(super) fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

pub(super) fn rule(action: Action) -> Rule {
    Rule {
        index: 0,
        action,
        protocol: None,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: Side::default(),
        destination: Side::default(),
    }
}

pub(super) fn knp(namespace: &str, name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::KubernetesNetworkPolicy,
        namespace: Some(namespace.into()),
        name: name.into(),
    }
}

pub(super) fn both(rules: Vec<Rule>) -> RuleList {
    RuleList {
        v4: rules.clone(),
        v6: rules,
    }
}

pub(super) fn endpoint(interface: &str, address: &str, ingress: Vec<PolicyId>) -> EndpointProgram {
    let tiers = if ingress.is_empty() {
        vec![]
    } else {
        vec![TierStep {
            tier: "default".into(),
            default_action: TierDefault::Deny,
            policies: ingress,
        }]
    };
    EndpointProgram {
        key: format!("ns/{interface}"),
        interface: interface.into(),
        addresses: vec![address.parse().unwrap()],
        ingress: Pipeline {
            tiers,
            profiles: vec!["kns.ns".into()],
        },
        egress: Pipeline {
            tiers: vec![],
            profiles: vec!["kns.ns".into()],
        },
    }
}

pub(super) fn selector(text: &str) -> SetId {
    SetId::Selector(text.into())
}

/// Three endpoints; B's ingress selected by `deny-b` (no rules: default deny); A and C have
/// `allow-from-a` on ingress, reading the set `role == 'a'` = {A}.
pub(super) fn three_pods() -> Program {
    let mut program = Program::default();
    let allow_from_a = knp("ns", "allow-from-a");
    let deny_b = knp("ns", "deny-b");
    for endpoint in [
        endpoint("caliaaaa", "10.0.0.1", vec![allow_from_a.clone()]),
        endpoint("calibbbb", "10.0.0.2", vec![deny_b.clone()]),
        endpoint("calicccc", "10.0.0.3", vec![allow_from_a.clone()]),
    ] {
        program
            .endpoints
            .insert(endpoint.interface.clone(), endpoint);
    }
    let mut allow = rule(Action::Allow);
    allow.source.set = Some(selector("role == 'a'"));
    program.policies.insert(
        allow_from_a,
        PolicyProgram {
            ingress: both(vec![allow]),
            egress: RuleList::default(),
        },
    );
    program.policies.insert(deny_b, PolicyProgram::default());
    program.profiles.insert(
        "kns.ns".into(),
        PolicyProgram {
            ingress: both(vec![rule(Action::Allow)]),
            egress: both(vec![rule(Action::Allow)]),
        },
    );
    program.sets.insert(
        (selector("role == 'a'"), Family::V4),
        SetMembers::Nets(BTreeSet::from([net("10.0.0.1/32")])),
    );
    program
        .sets
        .insert((selector("role == 'a'"), Family::V6), SetMembers::Empty);
    program
}

/// Lines of `script` containing every one of `needles`.
pub(super) fn lines_with<'a>(script: &'a str, needles: &[&str]) -> Vec<&'a str> {
    script
        .lines()
        .filter(|line| needles.iter().all(|needle| line.contains(needle)))
        .collect()
}

/// Index of the first line containing `needle` (panics naming it when absent).
pub(super) fn position(script: &str, needle: &str) -> usize {
    script
        .lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{script}"))
}
