//! The compiler is incremental: after any sequence of changes its program equals the program
//! compiled from scratch from the final inputs, and each change reports exactly the program
//! entries that differ.

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::IpAddr;

use common::{pod, Cluster};
use serde_json::{json, Value};
use starling_policy::compile::{Compiler, Endpoint, NamedPort};
use starling_policy::program::{Changes, Family, Program, SetId, SetMembers};
use starling_policy::{k8s, validate};

/// The keys whose entries differ between two programs.
fn diff(old: &Program, new: &Program) -> Changes {
    fn keys<K: Ord + Clone, V: PartialEq>(old: &BTreeMap<K, V>, new: &BTreeMap<K, V>) -> Vec<K> {
        old.keys()
            .chain(new.keys())
            .filter(|key| old.get(*key) != new.get(*key))
            .cloned()
            .collect()
    }
    Changes {
        endpoints: keys(&old.endpoints, &new.endpoints).into_iter().collect(),
        policies: keys(&old.policies, &new.policies).into_iter().collect(),
        profiles: keys(&old.profiles, &new.profiles).into_iter().collect(),
        sets: keys(&old.sets, &new.sets).into_iter().collect(),
    }
}

fn missing<T: Ord + Clone + Debug>(
    needed: &std::collections::BTreeSet<T>,
    got: &std::collections::BTreeSet<T>,
) -> Vec<T> {
    needed.difference(got).cloned().collect()
}

/// A small deterministic generator (no external crate; the sequence is fixed per seed).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const SELECTORS: [&str; 6] = [
    "app == 'a'",
    "app in {'a', 'b'}",
    "has(role)",
    "role == 'db' && app != 'c'",
    "all()",
    "pcns.team == 'red'",
];

fn random_endpoint(random: &mut Random) -> Endpoint {
    let namespace = *random.pick(&["x", "y"]);
    let name = format!("p{}", random.below(6));
    let mut labels = Vec::new();
    let app = *random.pick(&["a", "b", "c"]);
    labels.push(("app", app));
    if random.chance(50) {
        labels.push(("role", *random.pick(&["db", "web"])));
    }
    // A small address pool, so endpoints sometimes share an address.
    let mut addresses: Vec<IpAddr> =
        vec![format!("10.1.0.{}", random.below(8)).parse().expect("v4")];
    if random.chance(40) {
        addresses.push(format!("fd00::{}", random.below(8)).parse().expect("v6"));
    }
    let node = *random.pick(&["node1", "node1", "node2"]);
    let mut endpoint = pod(namespace, &name, node, addresses, &labels);
    endpoint.named_ports = [("http", 6, 80), ("http", 6, 8080), ("dns", 17, 53)]
        .into_iter()
        .filter(|_| random.chance(50))
        .map(|(name, protocol, port)| NamedPort {
            name: name.to_string(),
            protocol,
            port,
        })
        .collect();
    if random.chance(10) {
        endpoint.interface = "calishared".to_string();
    }
    if random.chance(10) {
        endpoint.profiles.reverse();
    }
    endpoint
}

fn random_rule(random: &mut Random) -> Value {
    let mut rule = json!({"action": *random.pick(&["Allow", "Deny", "Pass", "Log"])});
    match random.below(6) {
        0 => rule["source"] = json!({"selector": *random.pick(&SELECTORS)}),
        1 => {
            rule["source"] = json!({"notSelector": *random.pick(&SELECTORS), "namespaceSelector": "team == 'blue'"})
        }
        2 => {
            rule["protocol"] = json!("TCP");
            rule["destination"] =
                json!({"ports": ["http", 443], "selector": *random.pick(&SELECTORS)});
        }
        3 => {
            rule["source"] =
                json!({"nets": [*random.pick(&["10.1.0.0/30", "fd00::/126", "10.1.0.4/31"])]})
        }
        4 => {
            rule["protocol"] = json!("UDP");
            rule["source"] = json!({"notPorts": ["dns"]});
        }
        _ => {}
    }
    rule
}

fn random_policy(random: &mut Random) -> validate::Policy {
    let name = format!("pol{}", random.below(5));
    let rules: Vec<Value> = (0..random.below(3)).map(|_| random_rule(random)).collect();
    let egress: Vec<Value> = (0..random.below(2)).map(|_| random_rule(random)).collect();
    let mut spec =
        json!({"selector": *random.pick(&SELECTORS), "ingress": rules, "egress": egress});
    if random.chance(60) {
        spec["order"] = json!(random.below(3) * 10);
    }
    if random.chance(40) {
        spec["tier"] = json!(*random.pick(&["t1", "t2", "default"]));
    }
    match random.below(3) {
        0 => validate::network_policy_json(&json!({"metadata": {"name": name, "namespace": "x"}, "spec": spec})),
        1 => validate::global_network_policy_json(&json!({"metadata": {"name": name}, "spec": spec})),
        _ => k8s::network_policy_json(&json!({"metadata": {"name": name, "namespace": "y"}, "spec": {
            "podSelector": {"matchLabels": {"app": *random.pick(&["a", "b"])}},
            "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "role", "operator": "Exists"}]}}],
                         "ports": [{"port": "http"}, {"port": 81, "protocol": "UDP"}]}]}})),
    }
    .expect("generated policies are valid")
}

fn step(compiler: &mut Compiler, random: &mut Random, endpoints: &mut Vec<String>) {
    match random.below(10) {
        0..=3 => {
            let endpoint = random_endpoint(random);
            endpoints.push(endpoint.key.clone());
            compiler.upsert_endpoint(endpoint);
        }
        4 if !endpoints.is_empty() => {
            let key = random.pick(endpoints).clone();
            compiler.remove_endpoint(&key);
        }
        5 | 6 => compiler.upsert_policy(random_policy(random)),
        7 => {
            let policy = random_policy(random);
            compiler.remove_policy(&policy.id);
        }
        8 => {
            let name = *random.pick(&["t1", "t2", "default"]);
            if random.chance(25) {
                compiler.remove_tier(name);
            } else {
                let mut spec = json!({"defaultAction": *random.pick(&["Deny", "Pass"])});
                if random.chance(70) {
                    spec["order"] = json!(random.below(3) * 100);
                }
                compiler.upsert_tier(
                    validate::tier_json(&json!({"metadata": {"name": name}, "spec": spec}))
                        .expect("tier"),
                );
            }
        }
        _ => {
            let namespace = *random.pick(&["x", "y"]);
            if random.chance(20) {
                compiler.remove_profile(&format!("kns.{namespace}"));
            } else {
                let team = *random.pick(&["red", "blue"]);
                compiler.upsert_profile(k8s::namespace_profile(&common::namespace_object(
                    namespace,
                    &[("team", team)],
                )));
            }
        }
    }
}

#[test]
fn incremental_program_equals_the_program_from_scratch() {
    for seed in 1..=40u64 {
        let mut random = Random(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut compiler = Compiler::new("node1");
        let mut endpoints = Vec::new();
        let mut previous = Program::default();
        for operation in 0..150 {
            step(&mut compiler, &mut random, &mut endpoints);
            let changes = compiler.take_changes();
            let program = compiler.program().clone();
            let actual = diff(&previous, &program);
            let context = format!("seed {seed}, operation {operation}");
            assert_eq!(
                missing(&actual.endpoints, &changes.endpoints),
                Vec::<String>::new(),
                "{context}: endpoints"
            );
            assert_eq!(
                missing(&actual.policies, &changes.policies),
                vec![],
                "{context}: policies"
            );
            assert_eq!(
                missing(&actual.profiles, &changes.profiles),
                Vec::<String>::new(),
                "{context}: profiles"
            );
            assert_eq!(
                missing(&actual.sets, &changes.sets),
                vec![],
                "{context}: sets"
            );
            // Nothing reported that did not change (sets: the renderer diffs members anyway).
            assert_eq!(
                actual.endpoints, changes.endpoints,
                "{context}: spurious endpoints"
            );
            assert_eq!(
                actual.policies, changes.policies,
                "{context}: spurious policies"
            );
            assert_eq!(
                actual.profiles, changes.profiles,
                "{context}: spurious profiles"
            );
            assert_eq!(actual.sets, changes.sets, "{context}: spurious sets");
            if operation % 10 == 9 {
                assert_eq!(
                    program,
                    compiler.recompile(),
                    "{context}: incremental != from scratch"
                );
            }
            previous = program;
        }
        assert_eq!(previous, compiler.recompile(), "seed {seed}: final program");
        assert!(
            !previous.endpoints.is_empty(),
            "seed {seed}: the generator must exercise local endpoints"
        );
    }
}

fn conformance_with_policies() -> Cluster {
    let mut cluster = Cluster::conformance();
    cluster.knp("x", "web", json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": "serve-80-tcp"}]}]}));
    cluster.knp(
        "y",
        "all",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    );
    cluster.compiler.take_changes();
    cluster
}

#[test]
fn adding_a_local_endpoint_touches_its_own_entry_and_the_sets_it_joins() {
    let mut cluster = conformance_with_policies();
    let endpoint = pod(
        "x",
        "d",
        common::NODE,
        vec!["10.0.1.9".parse().expect("v4")],
        &[("pod", "b")],
    );
    cluster.compiler.upsert_endpoint(endpoint);
    let changes = cluster.compiler.take_changes();
    assert_eq!(
        changes.endpoints.into_iter().collect::<Vec<_>>(),
        ["calixd"]
    );
    assert!(changes.policies.is_empty() && changes.profiles.is_empty());
    let selector = "projectcalico.org/namespace == \"x\" && projectcalico.org/orchestrator == \"k8s\" && pod == \"b\"";
    let joined = SetId::Selector(selector.to_string());
    // y's "every namespace" peer, x/web's peer and x/web's named port (over all endpoints).
    let every_pod = SetId::Selector(
        "has(projectcalico.org/namespace) && projectcalico.org/orchestrator == \"k8s\"".to_string(),
    );
    let named = SetId::NamedPort {
        selector: "all()".to_string(),
        protocol: 6,
        name: "serve-80-tcp".to_string(),
    };
    assert_eq!(
        changes.sets.into_iter().collect::<Vec<_>>(),
        [
            (every_pod, Family::V4),
            (joined.clone(), Family::V4),
            (named, Family::V4)
        ]
    );
    let SetMembers::Nets(members) = &cluster.compiler.program().sets[&(joined, Family::V4)] else {
        panic!("selector sets hold addresses");
    };
    assert!(members.contains(&"10.0.1.9/32".parse().expect("net")));
    // The pod is isolated by nothing; its pipeline is its profiles.
    let program = &cluster.compiler.program().endpoints["calixd"];
    assert!(program.ingress.tiers.is_empty());
    assert_eq!(program.ingress.profiles, ["kns.x", "ksa.x.default"]);
}

#[test]
fn a_remote_endpoint_touches_only_sets() {
    let mut cluster = conformance_with_policies();
    let mut endpoint = pod(
        "x",
        "r",
        "node2",
        vec!["10.9.0.1".parse().expect("v4")],
        &[("pod", "b")],
    );
    cluster.compiler.upsert_endpoint(endpoint.clone());
    let changes = cluster.compiler.take_changes();
    assert!(
        changes.endpoints.is_empty() && changes.policies.is_empty() && changes.profiles.is_empty()
    );
    assert_eq!(changes.sets.len(), 3, "{:?}", changes.sets);
    assert!(changes
        .sets
        .iter()
        .any(|(id, _)| matches!(id, SetId::NamedPort { name, .. } if name == "serve-80-tcp")));
    // A label change that joins no set touches nothing.
    endpoint
        .labels
        .insert("unrelated".to_string(), "1".to_string());
    cluster.compiler.upsert_endpoint(endpoint.clone());
    assert!(cluster.compiler.take_changes().is_empty());
    // Leaving the sets again.
    endpoint.labels.insert("pod".to_string(), "c".to_string());
    cluster.compiler.upsert_endpoint(endpoint);
    let changes = cluster.compiler.take_changes();
    // It stays in y's "every pod" set and keeps its named port.
    assert!(
        changes.endpoints.is_empty() && changes.sets.len() == 1,
        "{changes:?}"
    );
}

#[test]
fn a_policy_edit_touches_the_policy_and_the_endpoints_it_moves() {
    let mut cluster = conformance_with_policies();
    // Same selector, new rule: only the policy (and the sets of the new rule).
    cluster.knp("x", "web", json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 81}]}]}));
    let changes = cluster.compiler.take_changes();
    assert!(changes.endpoints.is_empty(), "{changes:?}");
    assert_eq!(
        changes
            .policies
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["knp/x/web"]
    );
    // The named-port sets are gone, the selector set stays.
    assert!(
        changes
            .sets
            .iter()
            .all(|(id, _)| matches!(id, SetId::NamedPort { .. })),
        "{changes:?}"
    );
    // A new selector moves the policy from x/a to x/c.
    cluster.knp("x", "web", json!({"podSelector": {"matchLabels": {"pod": "c"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 81}]}]}));
    let changes = cluster.compiler.take_changes();
    assert_eq!(
        changes.endpoints.into_iter().collect::<Vec<_>>(),
        ["calixa", "calixc"]
    );
    assert!(changes.policies.is_empty() && changes.sets.is_empty());
}

#[test]
fn namespace_label_changes_reach_endpoints_through_the_profile() {
    let mut cluster = Cluster::conformance();
    cluster.knp(
        "x",
        "from-team",
        json!({"podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}}}]}]}),
    );
    assert!(!cluster.reachable("y/a", "x/a", "TCP/80"));
    cluster.compiler.take_changes();
    cluster
        .compiler
        .upsert_profile(k8s::namespace_profile(&common::namespace_object(
            "y",
            &[("ns", "y"), ("team", "red")],
        )));
    assert!(cluster.reachable("y/a", "x/a", "TCP/80"));
    assert!(!cluster.reachable("z/a", "x/a", "TCP/80"));
    let changes = cluster.compiler.take_changes();
    // The profile's own rules did not change; its label reached y's pods, which joined a set.
    assert!(
        changes.profiles.is_empty() && changes.endpoints.is_empty() && changes.policies.is_empty()
    );
    assert!(!changes.sets.is_empty());
    assert_eq!(cluster.compiler.program(), &cluster.compiler.recompile());
}
