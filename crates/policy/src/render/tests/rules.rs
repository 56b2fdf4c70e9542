//! One rule in, nft rule texts out.

use std::collections::BTreeSet;

use super::*;
use crate::render::names::set_name;
use crate::render::rules::{render_rule, ChainKind};
use crate::render::RenderConfig;

fn render(rule: &Rule, family: Family, kind: ChainKind) -> (Vec<String>, BTreeSet<SetId>) {
    let mut out = vec![];
    let mut sets = BTreeSet::new();
    render_rule(
        rule,
        family,
        kind,
        &RenderConfig::default(),
        None,
        &mut out,
        &mut sets,
    );
    (out, sets)
}

fn v4(rule: &Rule) -> Vec<String> {
    render(rule, Family::V4, ChainKind::Policy).0
}

fn ports(list: &[(u16, u16)]) -> Vec<PortRange> {
    list.iter()
        .map(|&(first, last)| PortRange { first, last })
        .collect()
}

#[test]
fn actions_become_verdicts() {
    assert_eq!(v4(&rule(Action::Allow)), ["accept"]);
    assert_eq!(v4(&rule(Action::Deny)), ["drop"]);
    assert_eq!(
        v4(&rule(Action::Pass)),
        ["meta mark set meta mark | 0x00020000 return"]
    );
    let (profile, _) = render(&rule(Action::Pass), Family::V4, ChainKind::Profile);
    assert_eq!(profile, ["return"]);
    assert_eq!(v4(&rule(Action::Log)), ["log prefix \"calico-packet: \""]);
}

#[test]
fn criteria_are_and_ed_in_one_rule() {
    let mut r = rule(Action::Allow);
    r.protocol = Some(6);
    r.source.nets = vec![net("10.1.0.0/16"), net("10.0.0.0/8"), net("fd00::/8")];
    r.source.not_nets = vec![net("10.9.9.9/32")];
    r.source.set = Some(selector("a"));
    r.source.not_set = Some(selector("b"));
    r.destination.ports = ports(&[(80, 80), (8000, 8080)]);
    r.destination.not_ports = ports(&[(8001, 8001)]);
    let (a, b) = (set_name(&selector("a")), set_name(&selector("b")));
    let (texts, sets) = render(&r, Family::V4, ChainKind::Policy);
    assert_eq!(
        texts,
        [format!(
            "meta l4proto tcp ip saddr 10.0.0.0/8 ip saddr != 10.9.9.9/32 ip saddr @{a} \
             ip saddr != @{b} th dport != 8001 th dport {{ 80, 8000-8080 }} accept"
        )]
    );
    assert_eq!(sets, BTreeSet::from([selector("a"), selector("b")]));
    // In IPv6 only the v6 net remains, with ip6 keywords.
    let (texts, _) = render(&r, Family::V6, ChainKind::Policy);
    assert!(
        texts[0].starts_with("meta l4proto tcp ip6 saddr fd00::/8 ip6 saddr @"),
        "{texts:?}"
    );
}

#[test]
fn a_rule_whose_nets_are_all_of_the_other_family_is_left_out() {
    let mut r = rule(Action::Allow);
    r.destination.nets = vec![net("fd00::/64")];
    r.destination.set = Some(selector("unused"));
    let (texts, sets) = render(&r, Family::V4, ChainKind::Policy);
    assert!(texts.is_empty() && sets.is_empty(), "{texts:?} {sets:?}");
}

#[test]
fn protocol_and_icmp_matches() {
    let mut r = rule(Action::Deny);
    r.not_protocol = Some(17);
    assert_eq!(v4(&r), ["meta l4proto != udp drop"]);
    r.not_protocol = Some(99);
    assert_eq!(v4(&r), ["meta l4proto != 99 drop"]);
    let mut r = rule(Action::Allow);
    r.protocol = Some(1);
    r.icmp = Some(Icmp {
        icmp_type: 8,
        code: Some(0),
    });
    assert_eq!(v4(&r), ["meta l4proto icmp icmp type 8 icmp code 0 accept"]);
    let mut r = rule(Action::Allow);
    r.protocol = Some(58);
    r.not_icmp = Some(Icmp {
        icmp_type: 128,
        code: Some(0),
    });
    let (texts, _) = render(&r, Family::V6, ChainKind::Policy);
    // Not (type 128 and code 0), which two separate negations would get wrong.
    assert_eq!(
        texts,
        ["meta l4proto icmpv6 icmpv6 type . icmpv6 code != { 128 . 0 } accept"]
    );
    r.not_icmp = Some(Icmp {
        icmp_type: 128,
        code: None,
    });
    let (texts, _) = render(&r, Family::V6, ChainKind::Policy);
    assert_eq!(texts, ["meta l4proto icmpv6 icmpv6 type != 128 accept"]);
}

#[test]
fn ports_or_named_ports_become_one_rule_each() {
    let mut r = rule(Action::Allow);
    r.protocol = Some(6);
    r.destination.ports = ports(&[(80, 81)]);
    let http = SetId::NamedPort {
        selector: "app == 'web'".into(),
        protocol: 6,
        name: "http".into(),
    };
    r.destination.named_ports = vec![http.clone()];
    r.source.not_named_ports = vec![http.clone()];
    let n = set_name(&http);
    let (texts, sets) = render(&r, Family::V4, ChainKind::Policy);
    let common = format!("meta l4proto tcp ip saddr . meta l4proto . th sport != @{n}");
    assert_eq!(
        texts,
        [
            format!("{common} th dport 80-81 accept"),
            format!("{common} ip daddr . meta l4proto . th dport @{n} accept"),
        ]
    );
    assert_eq!(sets, BTreeSet::from([http]));
}

#[test]
fn both_sides_alternatives_multiply() {
    let mut r = rule(Action::Deny);
    r.protocol = Some(17);
    r.source.ports = ports(&[(53, 53)]);
    r.source.named_ports = vec![SetId::NamedPort {
        selector: "s".into(),
        protocol: 17,
        name: "dns".into(),
    }];
    r.destination.ports = ports(&[(1000, 2000)]);
    r.destination.named_ports = vec![SetId::NamedPort {
        selector: "d".into(),
        protocol: 17,
        name: "dns".into(),
    }];
    let texts = v4(&r);
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert!(texts.iter().all(|t| t.ends_with(" drop")));
}

#[test]
fn a_log_rule_with_alternatives_logs_once() {
    let mut r = rule(Action::Log);
    r.protocol = Some(6);
    r.destination.ports = ports(&[(22, 22)]);
    r.destination.named_ports = vec![SetId::NamedPort {
        selector: "d".into(),
        protocol: 6,
        name: "ssh".into(),
    }];
    let texts = v4(&r);
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[0], "meta mark set meta mark & 0xfff7ffff");
    assert!(texts[1].ends_with("th dport 22 meta mark set meta mark | 0x00080000"));
    assert!(texts[2].ends_with("meta mark set meta mark | 0x00080000"));
    assert_eq!(
        texts[3],
        "meta mark & 0x00080000 == 0x00080000 meta mark set meta mark & 0xfff7ffff \
         log prefix \"calico-packet: \""
    );
    assert_eq!(texts.iter().filter(|t| t.contains("log prefix")).count(), 1);
}
