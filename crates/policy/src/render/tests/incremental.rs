//! Transactions between two programs touch only what changed; resync writes nothing when the
//! kernel is right and exactly the difference when it is not.

use std::collections::BTreeSet;

use super::*;
use crate::render::names::set_name;
use crate::render::{synthetic, Element, RenderConfig, Renderer, SetKind, TableView, Touched};

fn started(program: &Program) -> Renderer {
    let mut renderer = Renderer::new(RenderConfig::default()).unwrap();
    renderer.rebuild(program);
    renderer
}

/// What the kernel would list after applying everything rendered so far.
fn installed(renderer: &Renderer) -> [TableView; 2] {
    [Family::V4, Family::V6].map(|family| {
        let mut view = renderer.table(family).clone();
        view.rules.clear();
        view
    })
}

fn set_changes(id: SetId) -> Changes {
    Changes {
        sets: BTreeSet::from([(id, Family::V4)]),
        ..Changes::default()
    }
}

fn nets_of<'a>(program: &'a mut Program, id: &SetId) -> &'a mut BTreeSet<IpNet> {
    match program.sets.get_mut(&(id.clone(), Family::V4)) {
        Some(SetMembers::Nets(nets)) => nets,
        other => panic!("{other:?}"),
    }
}

#[test]
fn nothing_changed_writes_nothing() {
    let program = three_pods();
    let mut renderer = started(&program);
    assert!(renderer.update(&program, &Changes::default()).is_empty());
    // Keys listed as changed but identical render identically: still nothing.
    let all = Changes {
        endpoints: program.endpoints.keys().cloned().collect(),
        policies: program.policies.keys().cloned().collect(),
        profiles: program.profiles.keys().cloned().collect(),
        sets: program.sets.keys().cloned().collect(),
    };
    let transaction = renderer.update(&program, &all);
    assert!(transaction.is_empty(), "{}", transaction.script);
}

#[test]
fn a_set_member_is_one_element_and_a_subsumed_one_is_none() {
    let mut program = three_pods();
    let mut renderer = started(&program);
    let id = selector("role == 'a'");
    let name = set_name(&id);
    nets_of(&mut program, &id).insert(net("10.0.1.0/24"));
    let transaction = renderer.update(&program, &set_changes(id.clone()));
    assert_eq!(
        transaction.script,
        format!("add table ip starling\nadd element ip starling {name} {{ 10.0.1.0/24 }}\n")
    );
    assert_eq!(transaction.touched.objects(), 1);
    // Inside the /24 already there: coalesced away, no commit needed.
    nets_of(&mut program, &id).insert(net("10.0.1.7/32"));
    assert!(renderer
        .update(&program, &set_changes(id.clone()))
        .is_empty());
    // A covering net replaces both members; deletions come before the addition.
    nets_of(&mut program, &id).insert(net("10.0.0.0/16"));
    let script = renderer.update(&program, &set_changes(id.clone())).script;
    let delete = position(&script, "delete element");
    let add = position(&script, "add element ip starling");
    assert!(delete < add, "{script}");
    assert!(script.contains(&format!(
        "delete element ip starling {name} {{ 10.0.0.1, 10.0.1.0/24 }}"
    )));
    assert!(script.contains(&format!("add element ip starling {name} {{ 10.0.0.0/16 }}")));
    assert_eq!(renderer.counts(Family::V4).set_elements, 1);
}

#[test]
fn a_changed_policy_rewrites_only_its_chains() {
    let mut program = three_pods();
    let mut renderer = started(&program);
    let id = knp("ns", "allow-from-a");
    let policy = program.policies.get_mut(&id).unwrap();
    policy.ingress.v4[0].protocol = Some(6);
    let changes = Changes {
        policies: BTreeSet::from([id]),
        ..Changes::default()
    };
    let transaction = renderer.update(&program, &changes);
    let script = &transaction.script;
    // v4 changed; v6 rules are the same and the chain stays.
    assert_eq!(
        lines_with(script, &["flush chain"]),
        ["flush chain ip starling pi-knp/ns/allow-from-a"]
    );
    assert_eq!(lines_with(script, &["add rule"]).len(), 2);
    assert!(
        !script.contains("tw-cali") && !script.contains("element"),
        "{script}"
    );
    assert_eq!(
        transaction.touched,
        Touched {
            chains_rewritten: 1,
            rules_written: 2,
            ..Touched::default()
        }
    );
}

#[test]
fn a_new_endpoint_gets_its_chain_before_its_map_element() {
    let mut program = three_pods();
    let mut renderer = started(&program);
    let d = endpoint("calidddd", "10.0.0.4", vec![knp("ns", "deny-b")]);
    program.endpoints.insert(d.interface.clone(), d);
    let changes = Changes {
        endpoints: BTreeSet::from(["calidddd".to_string()]),
        ..Changes::default()
    };
    let transaction = renderer.update(&program, &changes);
    let script = &transaction.script;
    for family in ["ip", "ip6"] {
        let declare = position(script, &format!("add chain {family} starling tw-calidddd"));
        let fill = position(script, &format!("add rule {family} starling tw-calidddd"));
        let map = position(
            script,
            &format!("add element {family} starling to-wl {{ \"calidddd\" : goto tw-calidddd }}"),
        );
        assert!(declare < fill && fill < map, "{script}");
    }
    // Its policy chain already exists (B uses it): not rewritten.
    assert!(!script.contains("chain ip starling pi-"), "{script}");
    // 2 chains, their 2 denied counters (created first) and 2 map elements per family.
    assert_eq!(transaction.touched.counters_created, 4, "{script}");
    assert_eq!(transaction.touched.objects(), 12, "{script}");
    let counter = position(script, "add counter ip starling tw-calidddd.drop");
    assert!(counter < position(script, "add rule ip starling tw-calidddd"));
}

#[test]
fn removing_the_last_user_removes_chains_and_sets_after_unreferencing_them() {
    let mut program = three_pods();
    let mut renderer = started(&program);
    let name = set_name(&selector("role == 'a'"));
    for interface in ["caliaaaa", "calicccc"] {
        program.endpoints.remove(interface);
    }
    program.policies.remove(&knp("ns", "allow-from-a"));
    let changes = Changes {
        endpoints: BTreeSet::from(["caliaaaa".to_string(), "calicccc".to_string()]),
        policies: BTreeSet::from([knp("ns", "allow-from-a")]),
        ..Changes::default()
    };
    let script = renderer.update(&program, &changes).script;
    for family in ["ip", "ip6"] {
        let t = format!("{family} starling");
        let unmap = position(
            &script,
            &format!("delete element {t} to-wl {{ \"caliaaaa\", \"calicccc\" }}"),
        );
        let flush_endpoint = position(&script, &format!("flush chain {t} tw-caliaaaa"));
        let flush_policy = position(&script, &format!("flush chain {t} pi-knp/ns/allow-from-a"));
        let delete_set = position(&script, &format!("delete set {t} {name}"));
        let delete_policy = position(&script, &format!("delete chain {t} pi-knp/ns/allow-from-a"));
        let delete_endpoint = position(&script, &format!("delete chain {t} tw-caliaaaa"));
        assert!(
            unmap < flush_endpoint && flush_endpoint < delete_endpoint,
            "{script}"
        );
        assert!(
            flush_policy < delete_set && delete_set < delete_policy,
            "{script}"
        );
    }
    // The profile is still used by B.
    assert!(!script.contains("kns.ns"), "{script}");
    assert!(renderer
        .table(Family::V4)
        .sets
        .keys()
        .all(|set| !set.starts_with("s-")));
}

#[test]
fn resync_of_a_correct_ruleset_is_empty_and_repairs_only_what_differs() {
    let program = three_pods();
    let renderer = started(&program);
    let mut kernel = installed(&renderer);
    assert!(renderer.resync(&kernel).is_empty());

    let name = set_name(&selector("role == 'a'"));
    let v4 = &mut kernel[0];
    // Someone edited a chain, a stale chain and set linger, an element went missing, another
    // appeared, a set holds something unreadable.
    v4.chains.get_mut("tw-calibbbb").unwrap().signature = None;
    v4.chains
        .insert("pi-stale".into(), v4.chains["pri-kns.ns"].clone());
    v4.sets.insert("s-stale".into(), v4.sets[&name].clone());
    v4.sets.get_mut(&name).unwrap().elements.clear();
    let map = v4.sets.get_mut("to-wl").unwrap();
    map.elements.insert(Element::Verdict(
        "calizzzz".into(),
        "goto tw-calizzzz".into(),
    ));
    let mut opaque = kernel[1].sets[&name].clone();
    opaque.opaque = true;
    opaque.elements.insert(Element::Opaque("{}".into()));
    kernel[1].sets.insert(name.clone(), opaque);

    let transaction = renderer.resync(&kernel);
    let script = &transaction.script;
    assert_eq!(
        lines_with(script, &["flush chain ip starling tw-calibbbb"]).len(),
        1
    );
    assert_eq!(
        lines_with(script, &["add rule ip starling tw-calibbbb"]).len(),
        6
    );
    assert!(script.contains("flush chain ip starling pi-stale\n"));
    assert!(script.contains("delete chain ip starling pi-stale\n"));
    assert!(script.contains("delete set ip starling s-stale\n"));
    assert!(script.contains(&format!("add element ip starling {name} {{ 10.0.0.1 }}")));
    assert!(script.contains("delete element ip starling to-wl { \"calizzzz\" }"));
    assert!(script.contains(&format!("flush set ip6 starling {name}\n")));
    assert_eq!(lines_with(script, &["add rule"]).len(), 6, "{script}");
    assert_eq!(transaction.touched.objects(), 6, "{script}");

    // An empty kernel gets everything, table first.
    let empty = [TableView::default(), TableView::default()];
    let full = renderer.resync(&empty).script;
    assert!(full.starts_with("add table ip starling\n"));
    assert_eq!(lines_with(&full, &["add chain"]).len(), 28);
}

#[test]
fn a_base_chain_on_the_wrong_hook_is_recreated() {
    let renderer = started(&three_pods());
    let mut kernel = installed(&renderer);
    let chain = kernel[0].chains.get_mut("forward-ingress").unwrap();
    chain.base.as_mut().unwrap().priority = -5;
    let script = renderer.resync(&kernel).script;
    let delete = position(&script, "delete chain ip starling forward-ingress");
    let add = position(
        &script,
        "add chain ip starling forward-ingress { type filter hook forward priority 1;",
    );
    assert!(delete < add);
    assert_eq!(lines_with(&script, &["add rule"]).len(), 3);
}

#[test]
fn one_pod_added_to_a_large_program_touches_a_handful_of_objects() {
    let (endpoints, policies) = (200, 400);
    let mut program = synthetic::large_program(endpoints, policies);
    let mut renderer = Renderer::new(RenderConfig::default()).unwrap();
    let full = renderer.rebuild(&program);
    assert!(full.warnings.is_empty(), "{:?}", full.warnings);
    let counts = renderer.counts(Family::V4);
    assert!(counts.chains > 400 && counts.sets == 100, "{counts:?}");
    let changes = synthetic::add_endpoint(&mut program, endpoints, endpoints, policies);
    let transaction = renderer.update(&program, &changes);
    // Per family: 2 endpoint chains with their 2 denied counters, 2 map elements, one element
    // in each of its 2 sets.
    assert_eq!(
        transaction.touched.chains_created, 4,
        "{}",
        transaction.script
    );
    assert_eq!(transaction.touched.map_elements_added, 4);
    assert_eq!(transaction.touched.set_elements_added, 4);
    assert_eq!(transaction.touched.counters_created, 4);
    assert_eq!(transaction.touched.objects(), 16);
    assert!(transaction.script.len() < full.script.len() / 100);
    // And the incremental state equals a fresh render of the new program.
    let mut fresh = Renderer::new(RenderConfig::default()).unwrap();
    fresh.rebuild(&program);
    for family in [Family::V4, Family::V6] {
        assert_eq!(renderer.table(family), fresh.table(family));
    }
    assert!(renderer.resync(&installed(&fresh)).is_empty());
    let named = renderer
        .table(Family::V4)
        .sets
        .values()
        .filter(|s| s.kind == SetKind::AddressPorts);
    assert_eq!(named.count(), 50);
}
