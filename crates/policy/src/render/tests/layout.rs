//! The full ruleset of a small program: base chains, dispatch, endpoint and policy chains,
//! sets, maps, and the order of the commands.

use super::*;
use crate::render::names::set_name;
use crate::render::{RenderConfig, Renderer};

fn full(program: &Program) -> (Renderer, String) {
    let mut renderer = Renderer::new(RenderConfig::default()).unwrap();
    let transaction = renderer.rebuild(program);
    assert!(
        transaction.warnings.is_empty(),
        "{:?}",
        transaction.warnings
    );
    (renderer, transaction.script)
}

#[test]
fn forward_path_is_two_base_chains_with_conntrack_first_and_closed_dispatch() {
    let (_, script) = full(&three_pods());
    for family in ["ip", "ip6"] {
        let t = format!("{family} starling");
        assert!(script.contains(&format!(
            "add chain {t} forward-egress {{ type filter hook forward priority 0; policy accept; }}"
        )));
        assert!(script.contains(&format!(
            "add chain {t} forward-ingress {{ type filter hook forward priority 1; policy accept; }}"
        )));
        let egress = lines_with(&script, &[&format!("add rule {t} forward-egress ")]);
        assert_eq!(
            egress[0],
            format!("add rule {t} forward-egress ct state established,related accept")
        );
        assert_eq!(
            egress[1],
            format!("add rule {t} forward-egress iifname \"cali*\" goto from-wl-dispatch")
        );
        assert!(egress[2].starts_with(&format!(
            "add rule {t} forward-egress accept comment \"starling h="
        )));
        let dispatch = lines_with(&script, &[&format!("add rule {t} to-wl-dispatch ")]);
        assert_eq!(dispatch.len(), 3);
        assert!(dispatch[0].ends_with("ct state invalid drop"));
        assert!(dispatch[1].ends_with("oifname vmap @to-wl"));
        assert!(dispatch[2].contains("to-wl-dispatch drop comment \"starling h="));
        assert!(script.contains(&format!("add map {t} to-wl {{ type ifname : verdict; }}")));
        assert!(script.contains(&format!(
            "add element {t} to-wl {{ \"caliaaaa\" : goto tw-caliaaaa, \"calibbbb\" : goto tw-calibbbb, \"calicccc\" : goto tw-calicccc }}"
        )));
    }
    // Nothing hooks output: the host reaches its own pods (kubelet probes) unpoliced.
    assert!(!script.contains("hook output") && !script.contains("hook input"));
}

#[test]
fn endpoint_chain_runs_tiers_then_profiles_then_drops() {
    let (renderer, _) = full(&three_pods());
    let rules = &renderer.table(Family::V4).rules["tw-calibbbb"];
    assert_eq!(rules[0], "meta mark set meta mark & 0xfffdffff");
    assert_eq!(rules[1], "jump pi-knp/ns/deny-b");
    // Tier default and final drop count on the endpoint's one denied counter.
    assert_eq!(
        rules[2],
        "meta mark & 0x00020000 == 0x00000000 counter name \"tw-calibbbb.drop\" drop"
    );
    assert_eq!(rules[3], "meta mark set meta mark & 0xfffdffff");
    assert_eq!(rules[4], "jump pri-kns.ns");
    assert!(
        rules[5].starts_with("counter name \"tw-calibbbb.drop\" drop comment \"starling h="),
        "{rules:?}"
    );
    assert!(rules[5].ends_with(" n=6\""), "{rules:?}");
    // Egress has no tier: the profile, then drop.
    let egress = &renderer.table(Family::V4).rules["fw-calibbbb"];
    assert_eq!(egress[0], "jump pro-kns.ns");
    assert_eq!(egress.len(), 2);
}

#[test]
fn later_policies_of_a_tier_run_only_while_nothing_passed_and_pass_tiers_do_not_drop() {
    let mut program = three_pods();
    let a = program.endpoints.get_mut("caliaaaa").unwrap();
    a.ingress.tiers = vec![
        TierStep {
            tier: "security".into(),
            default_action: TierDefault::Pass,
            policies: vec![knp("ns", "p1"), knp("ns", "p2")],
        },
        TierStep {
            tier: "default".into(),
            default_action: TierDefault::Deny,
            policies: vec![knp("ns", "p3")],
        },
    ];
    let (renderer, script) = full(&program);
    let rules = &renderer.table(Family::V4).rules["tw-caliaaaa"];
    assert_eq!(
        rules[..7],
        [
            "meta mark set meta mark & 0xfffdffff",
            "jump pi-knp/ns/p1",
            "meta mark & 0x00020000 == 0x00000000 jump pi-knp/ns/p2",
            "meta mark set meta mark & 0xfffdffff",
            "jump pi-knp/ns/p3",
            "meta mark & 0x00020000 == 0x00000000 counter name \"tw-caliaaaa.drop\" drop",
            "meta mark set meta mark & 0xfffdffff",
        ]
    );
    // Policies missing from the program still get (empty) chains: the jump must resolve.
    assert!(script.contains("add chain ip starling pi-knp/ns/p2\n"));
}

#[test]
fn policy_chains_only_for_referenced_directions_and_sets_only_when_read() {
    let (renderer, script) = full(&three_pods());
    let v4 = renderer.table(Family::V4);
    let allow = &v4.rules["pi-knp/ns/allow-from-a"];
    let a = set_name(&selector("role == 'a'"));
    assert_eq!(
        allow[0],
        format!("ip saddr @{a} counter name \"pi-knp/ns/allow-from-a.r0.allow\" accept")
    );
    assert!(allow[1].starts_with("return comment"));
    assert!(!v4.chains.contains_key("po-knp/ns/allow-from-a"));
    assert!(v4.chains.contains_key("pri-kns.ns") && v4.chains.contains_key("pro-kns.ns"));
    assert!(script.contains(&format!(
        "add set ip starling {a} {{ type ipv4_addr; flags interval; }}\nadd element ip starling {a} {{ 10.0.0.1 }}"
    )));
    // The v6 set exists (the v6 chain reads it) and is empty.
    assert!(script.contains(&format!(
        "add set ip6 starling {a} {{ type ipv6_addr; flags interval; }}"
    )));
    assert!(!script.contains(&format!("add element ip6 starling {a}")));
    let counts = renderer.counts(Family::V4);
    assert_eq!(counts.sets, 1);
    assert_eq!(counts.set_elements, 1);
    assert_eq!(counts.map_elements, 6);
    // 4 static + 6 endpoint + 2 policy + 2 profile chains.
    assert_eq!(counts.chains, 14);
    assert_eq!(
        counts.rules,
        renderer
            .table(Family::V4)
            .rules
            .values()
            .map(Vec::len)
            .sum::<usize>()
    );
}

#[test]
fn commands_come_in_reference_order() {
    let (_, script) = full(&three_pods());
    let a = set_name(&selector("role == 'a'"));
    let set = position(&script, &format!("add set ip starling {a}"));
    let declare_policy = position(&script, "add chain ip starling pi-knp/ns/allow-from-a");
    let declare_endpoint = position(&script, "add chain ip starling tw-caliaaaa");
    let fill_policy = position(&script, "add rule ip starling pi-knp/ns/allow-from-a");
    let fill_endpoint = position(&script, "add rule ip starling tw-caliaaaa jump");
    let map = position(&script, "add element ip starling to-wl");
    assert!(
        set < declare_policy && declare_policy < fill_endpoint && declare_endpoint < fill_policy
    );
    assert!(fill_endpoint < map && fill_policy < map);
    assert!(script.starts_with("add table ip starling\n"));
    assert!(position(&script, "add table ip6 starling") > map);
}

#[test]
fn an_interface_nft_cannot_name_stays_closed_with_a_warning() {
    let mut program = three_pods();
    let odd = endpoint("cali\"x", "10.0.0.9", vec![]);
    program.endpoints.insert(odd.interface.clone(), odd);
    let mut renderer = Renderer::new(RenderConfig::default()).unwrap();
    let transaction = renderer.rebuild(&program);
    assert_eq!(transaction.warnings.len(), 1, "{:?}", transaction.warnings);
    assert!(transaction.warnings[0].contains("cali\\\"x"));
    assert!(!transaction.script.contains("cali\"x"));
}

#[test]
fn config_is_validated_and_used() {
    let bad = RenderConfig {
        interface_prefixes: vec!["ca li".into()],
        ..RenderConfig::default()
    };
    assert!(Renderer::new(bad).is_err());
    let marks = RenderConfig {
        pass_mark: 0x3,
        ..RenderConfig::default()
    };
    assert!(Renderer::new(marks).is_err());
    let two = RenderConfig {
        interface_prefixes: vec!["cali".into(), "tap".into()],
        priority: 10,
        ..RenderConfig::default()
    };
    let mut renderer = Renderer::new(two).unwrap();
    let script = renderer.rebuild(&three_pods()).script;
    assert!(!script.contains("forward-ingress iifname"));
    assert!(script
        .contains("add rule ip starling forward-ingress oifname \"tap*\" goto to-wl-dispatch"));
    assert!(script.contains("hook forward priority 11;"));
}
