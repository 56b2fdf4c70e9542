//! Named counters: on which rules, named how, meaning what; created before and deleted after
//! the rules naming them; never a difference by themselves in an idle update or resync.

use std::collections::BTreeSet;

use super::*;
use crate::render::names::Owner;
use crate::render::{CounterUse, RenderConfig, Renderer, TableView, Touched};

fn started(program: &Program) -> Renderer {
    let mut renderer = Renderer::new(RenderConfig::default()).unwrap();
    renderer.rebuild(program);
    renderer
}

fn installed(renderer: &Renderer) -> [TableView; 2] {
    [Family::V4, Family::V6].map(|family| {
        let mut view = renderer.table(family).clone();
        view.rules.clear();
        view.counter_uses.clear();
        view
    })
}

fn policy_changes(id: &PolicyId) -> Changes {
    Changes {
        policies: BTreeSet::from([id.clone()]),
        ..Changes::default()
    }
}

fn indexed(index: usize, action: Action) -> Rule {
    Rule {
        index,
        ..rule(action)
    }
}

#[test]
fn every_action_counts_on_its_rules_counter_in_policies_and_profiles() {
    let pass = "meta mark set meta mark | 0x00020000 return";
    let log = "log prefix \"calico-packet: \"";
    // (owner chain, action, rule text after the match, counter)
    let cases = [
        (
            "pi-knp/ns/allow-from-a",
            Action::Allow,
            "accept",
            "r0.allow",
        ),
        ("pi-knp/ns/allow-from-a", Action::Deny, "drop", "r0.deny"),
        ("pi-knp/ns/allow-from-a", Action::Pass, pass, "r0.pass"),
        ("pi-knp/ns/allow-from-a", Action::Log, log, "r0.log"),
        ("pri-kns.ns", Action::Allow, "accept", "r0.allow"),
        ("pri-kns.ns", Action::Deny, "drop", "r0.deny"),
        // A Pass in a profile only leaves the profile.
        ("pri-kns.ns", Action::Pass, "return", "r0.pass"),
        ("pri-kns.ns", Action::Log, log, "r0.log"),
    ];
    for (chain, action, verdict, suffix) in cases {
        let mut program = three_pods();
        let owner = if chain.starts_with("pri-") {
            program.profiles.get_mut("kns.ns").unwrap().ingress = both(vec![rule(action)]);
            Owner::Profile("kns.ns".into())
        } else {
            let id = knp("ns", "allow-from-a");
            program.policies.get_mut(&id).unwrap().ingress = both(vec![rule(action)]);
            Owner::Policy(id)
        };
        let renderer = started(&program);
        for family in [Family::V4, Family::V6] {
            let table = renderer.table(family);
            let counter = format!("{chain}.{suffix}");
            assert_eq!(
                table.rules[chain][0],
                format!("counter name \"{counter}\" {verdict}"),
                "{chain} {action:?} {family:?}"
            );
            assert_eq!(
                table.counter_uses[&counter],
                CounterUse::Rule {
                    owner: owner.clone(),
                    direction: Direction::Ingress,
                    index: 0,
                    action,
                },
                "{chain} {action:?} {family:?}"
            );
            assert_eq!(table.counters_of(chain), std::slice::from_ref(&counter));
        }
    }
}

#[test]
fn endpoint_drops_count_per_endpoint_and_direction() {
    let renderer = started(&three_pods());
    let table = renderer.table(Family::V6);
    for (chain, endpoint, direction) in [
        ("tw-calibbbb", "ns/calibbbb", Direction::Ingress),
        ("fw-calibbbb", "ns/calibbbb", Direction::Egress),
        ("tw-caliaaaa", "ns/caliaaaa", Direction::Ingress),
    ] {
        let counter = format!("{chain}.drop");
        assert_eq!(
            table.counter_uses[&counter],
            CounterUse::Denied {
                endpoint: endpoint.into(),
                direction
            }
        );
        let naming: Vec<&String> = table.rules[chain]
            .iter()
            .filter(|rule| rule.contains(&format!("counter name \"{counter}\" drop")))
            .collect();
        // Ingress: the tier default and the final drop; egress (no tier): the final drop.
        let expected = if direction == Direction::Ingress {
            2
        } else {
            1
        };
        assert_eq!(naming.len(), expected, "{chain}: {:?}", table.rules[chain]);
    }
    // 6 endpoint chains, one rule of allow-from-a, one of each profile direction.
    assert_eq!(renderer.counts(Family::V4).counters, 9);
    // Static chains count nothing.
    assert!(table.counters_of("to-wl-dispatch").is_empty());
}

#[test]
fn alternatives_share_the_counter_and_a_log_counts_once() {
    let id = knp("ns", "allow-from-a");
    let chain = "pi-knp/ns/allow-from-a";
    for (action, naming) in [(Action::Allow, 2), (Action::Log, 1)] {
        let mut program = three_pods();
        let mut r = indexed(3, action);
        r.protocol = Some(6);
        r.destination.ports = vec![PortRange {
            first: 22,
            last: 22,
        }];
        r.destination.named_ports = vec![SetId::NamedPort {
            selector: "d".into(),
            protocol: 6,
            name: "ssh".into(),
        }];
        program.policies.get_mut(&id).unwrap().ingress = both(vec![r]);
        let renderer = started(&program);
        let rules = &renderer.table(Family::V4).rules[chain];
        let counter = format!("counter name \"{chain}.r3.{}\"", names_action(action));
        let count = rules.iter().filter(|rule| rule.contains(&counter)).count();
        assert_eq!(count, naming, "{action:?}: {rules:?}");
        if action == Action::Log {
            assert!(
                rules[3].contains(&format!("{counter} log prefix")),
                "{rules:?}"
            );
        }
    }
}

fn names_action(action: Action) -> &'static str {
    crate::render::names::action_name(action)
}

#[test]
fn a_rule_of_the_other_family_has_no_counter_there() {
    let mut program = three_pods();
    let id = knp("ns", "allow-from-a");
    let mut v6_only = indexed(1, Action::Deny);
    v6_only.source.nets = vec![net("fd00::/64")];
    program.policies.get_mut(&id).unwrap().ingress = both(vec![indexed(0, Action::Allow), v6_only]);
    let renderer = started(&program);
    let chain = "pi-knp/ns/allow-from-a";
    assert_eq!(
        renderer.table(Family::V4).counters_of(chain),
        [format!("{chain}.r0.allow")]
    );
    assert_eq!(
        renderer.table(Family::V6).counters_of(chain),
        [format!("{chain}.r0.allow"), format!("{chain}.r1.deny")]
    );
}

#[test]
fn policy_edits_create_counters_before_and_delete_them_after_their_rules() {
    let mut program = three_pods();
    let mut renderer = started(&program);
    let id = knp("ns", "allow-from-a");
    let chain = "pi-knp/ns/allow-from-a";
    let allow = format!("{chain}.r0.allow");

    // Same rule, other criteria: the chain is rewritten, its counter (and value) stays.
    program.policies.get_mut(&id).unwrap().ingress.v4[0].protocol = Some(6);
    let transaction = renderer.update(&program, &policy_changes(&id));
    assert!(
        !transaction.script.contains("counter ip"),
        "{}",
        transaction.script
    );
    assert_eq!(transaction.touched.objects(), 1);

    // A second rule: its counter is created before the chain is refilled.
    let policy = program.policies.get_mut(&id).unwrap();
    policy.ingress.v4.push(indexed(1, Action::Deny));
    let transaction = renderer.update(&program, &policy_changes(&id));
    let script = &transaction.script;
    let create = position(script, &format!("add counter ip starling {chain}.r1.deny"));
    assert!(create < position(script, "flush chain ip starling pi-knp/ns/allow-from-a"));
    assert_eq!(
        transaction.touched,
        Touched {
            chains_rewritten: 1,
            counters_created: 1,
            rules_written: 3,
            ..Touched::default()
        }
    );

    // Rule 0 turns into a Deny: a new counter, the old one deleted once unreferenced.
    program.policies.get_mut(&id).unwrap().ingress.v4[0].action = Action::Deny;
    let script = renderer.update(&program, &policy_changes(&id)).script;
    let create = position(&script, &format!("add counter ip starling {chain}.r0.deny"));
    let fill = position(&script, "add rule ip starling pi-knp/ns/allow-from-a");
    let delete = position(&script, &format!("delete counter ip starling {allow}"));
    assert!(create < fill && fill < delete, "{script}");

    // The policy's last user goes: its counters go after the chain is flushed, before it is
    // deleted; the v6 counter too.
    for interface in ["caliaaaa", "calicccc"] {
        program.endpoints.remove(interface);
    }
    let changes = Changes {
        endpoints: BTreeSet::from(["caliaaaa".to_string(), "calicccc".to_string()]),
        ..Changes::default()
    };
    let transaction = renderer.update(&program, &changes);
    let script = &transaction.script;
    for family in ["ip", "ip6"] {
        let t = format!("{family} starling");
        let flush = position(script, &format!("flush chain {t} {chain}"));
        let delete = position(script, &format!("delete counter {t} {chain}.r0."));
        let gone = position(script, &format!("delete chain {t} {chain}"));
        assert!(flush < delete && delete < gone, "{script}");
        assert!(script.contains(&format!("delete counter {t} tw-caliaaaa.drop\n")));
    }
    // v4: 2 rule + 4 endpoint counters; v6: 1 rule + 4 endpoint counters.
    assert_eq!(transaction.touched.counters_deleted, 11, "{script}");
    assert!(renderer
        .table(Family::V4)
        .counter_uses
        .keys()
        .all(|name| !name.starts_with(chain)));
}

#[test]
fn resync_compares_counter_names_only() {
    let mut program = three_pods();
    let renderer = started(&program);
    let mut kernel = installed(&renderer);
    assert!(renderer.resync(&kernel).is_empty());

    // A counter gone missing is recreated, a stray one deleted; nothing else is written.
    kernel[0].counters.remove("tw-calibbbb.drop");
    kernel[1].counters.insert("pi-stale.r0.allow".into());
    let transaction = renderer.resync(&kernel);
    assert_eq!(
        transaction.script,
        "add table ip starling\nadd counter ip starling tw-calibbbb.drop\n\
         add table ip6 starling\ndelete counter ip6 starling pi-stale.r0.allow\n"
    );
    assert_eq!(transaction.touched.objects(), 2);

    // An endpoint renamed on the same interface: the counter means another endpoint now,
    // while the kernel needs nothing.
    let mut renderer = started(&program);
    program.endpoints.get_mut("calibbbb").unwrap().key = "ns/renamed".into();
    let changes = Changes {
        endpoints: BTreeSet::from(["calibbbb".to_string()]),
        ..Changes::default()
    };
    assert!(renderer.update(&program, &changes).is_empty());
    assert_eq!(
        renderer.table(Family::V4).counter_uses["tw-calibbbb.drop"],
        CounterUse::Denied {
            endpoint: "ns/renamed".into(),
            direction: Direction::Ingress
        }
    );
}

#[test]
fn policy_tiers_name_the_tier_of_each_rendered_policy() {
    let mut program = three_pods();
    let a = program.endpoints.get_mut("caliaaaa").unwrap();
    a.egress.tiers = vec![TierStep {
        tier: "security".into(),
        default_action: TierDefault::Pass,
        policies: vec![knp("ns", "audit")],
    }];
    let tiers = started(&program).policy_tiers();
    assert_eq!(tiers[&knp("ns", "allow-from-a")], "default");
    assert_eq!(tiers[&knp("ns", "audit")], "security");
    assert_eq!(tiers.len(), 3);
}
