//! Policy counters on a real kernel (issue 13 item 5): the named nft counters of the allowing
//! rule, the profile and an endpoint's own drops grow by exactly what the pods sent (counted
//! independently by an output-hook counter inside each sending pod), the Prometheus series
//! follow them, a policy edit keeps them, removing a policy removes its series, and an idle
//! resync after all that traffic still writes nothing; the nfnetlink counter dump reads what
//! `nft -j list counters` lists. nft only runs in the test namespaces.

#[path = "support/netns_test.rs"]
mod netns_test;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::{require_programs, require_root};
mod dataplane_policy_support;
use dataplane_policy_support::*;

use std::collections::BTreeSet;

use netns_test::run;
use prometheus::core::Collector;
use prometheus::Registry;
use starling::dataplane::policy::{
    netlink, ApplyKind, CounterReport, PolicyDataplane, PolicyNftMetrics,
};
use starling::netns;
use starling_policy::program::*;
use starling_policy::render::installed::parse_counters;
use starling_policy::render::{nft_family, synthetic, RenderConfig};

/// A counter in `namespace` of the TCP SYNs it sends to `port` (its own table, in the pod).
fn count_syns(namespace: &str, port: u16) {
    let nft = |command: &str| run("ip", &["netns", "exec", namespace, "nft", command]);
    nft("add table inet probe");
    nft("add counter inet probe syns");
    nft("add chain inet probe out { type filter hook output priority 0; }");
    nft(&format!(
        "add rule inet probe out tcp dport {port} tcp flags & (syn | ack) == syn counter name syns"
    ));
}

/// (packets, bytes) of the pod's SYN counter.
fn syns(namespace: &str) -> (u64, u64) {
    let json = run(
        "ip",
        &[
            "netns", "exec", namespace, "nft", "-j", "list", "counter", "inet", "probe", "syns",
        ],
    );
    let root: serde_json::Value = serde_json::from_str(&json).unwrap();
    let counter = root["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|object| object.get("counter"))
        .unwrap_or_else(|| panic!("no counter in {json}"));
    (
        counter["packets"].as_u64().unwrap(),
        counter["bytes"].as_u64().unwrap(),
    )
}

const ALLOW_FROM_A: [&str; 5] = ["default", "knp/ns/allow-from-a", "0", "ingress", "allow"];
const PROFILE_EGRESS: [&str; 5] = ["", "kns.ns", "0", "egress", "allow"];

struct Readings {
    allowed: (u64, u64),
    profile: u64,
    denied_c: u64,
    syns_a: (u64, u64),
    syns_b: (u64, u64),
}

fn readings(metrics: &PolicyNftMetrics, node: &Node) -> Readings {
    let rule = |labels: [&str; 5]| metrics.rule_packets_total.with_label_values(&labels).get();
    Readings {
        allowed: (
            rule(ALLOW_FROM_A),
            metrics
                .rule_bytes_total
                .with_label_values(&ALLOW_FROM_A)
                .get(),
        ),
        profile: rule(PROFILE_EGRESS),
        denied_c: metrics
            .denied_packets_total
            .with_label_values(&["ns/calicccc0000003", "ingress"])
            .get(),
        syns_a: syns(node.pod(0).namespace.name()),
        syns_b: syns(node.pod(1).namespace.name()),
    }
}

fn refresh(node: &Node, dataplane: &mut PolicyDataplane) -> CounterReport {
    let report = netns::run_in(node.node.name(), || dataplane.refresh_counters())
        .unwrap()
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(report.unknown, 0, "{report:?}");
    report
}

#[test]
fn counters_count_what_was_allowed_and_denied_and_an_idle_resync_writes_nothing() {
    let test = "counters_count_what_was_allowed_and_denied_and_an_idle_resync_writes_nothing";
    if !require_root(test) || !require_programs(test, PROGRAMS) {
        return;
    }
    let node = three_pods();
    let (a, b, c) = (node.pod(0), node.pod(1), node.pod(2));
    let (a_ns, b_ns) = (a.namespace.name(), b.namespace.name());
    count_syns(a_ns, PORT);
    count_syns(b_ns, PORT);
    let metrics = PolicyNftMetrics::new(&Registry::new());
    let mut dataplane =
        PolicyDataplane::new(RenderConfig::default(), Some(metrics.clone())).unwrap();
    let mut program = program(&node, PORT);
    apply(&node, &mut dataplane, &program, &Changes::default());
    let first = refresh(&node, &mut dataplane);
    // Per family: 6 endpoint chains, the profile's 2 rules; v4 also allow-from-a's rule.
    assert_eq!(first.counters, 17, "{first:?}");
    let before = readings(&metrics, &node);

    for _ in 0..3 {
        assert!(reachable(a_ns, &c.address, PORT), "A -> C allowed");
    }
    for _ in 0..2 {
        assert!(!reachable(b_ns, &c.address, PORT), "B -> C denied");
    }
    let report = refresh(&node, &mut dataplane);
    let after = readings(&metrics, &node);
    let sent_a = (
        after.syns_a.0 - before.syns_a.0,
        after.syns_a.1 - before.syns_a.1,
    );
    let sent_b = after.syns_b.0 - before.syns_b.0;
    assert!(sent_a.0 >= 3 && sent_b >= 2, "{sent_a:?} {sent_b}");
    // Only a connection's first packet meets the policy (conntrack accepts the rest).
    assert_eq!(
        (
            after.allowed.0 - before.allowed.0,
            after.allowed.1 - before.allowed.1
        ),
        sent_a,
        "allow-from-a rule 0 counted A's SYNs, packets and bytes"
    );
    assert_eq!(
        after.denied_c - before.denied_c,
        sent_b,
        "C's ingress dropped every SYN of B (tier default deny)"
    );
    assert_eq!(
        after.profile - before.profile,
        sent_a.0 + sent_b,
        "both left their pods through the namespace profile"
    );
    assert!(report.packets >= 2 * sent_a.0 + 2 * sent_b, "{report:?}");

    // The netlink dump reads what nft lists, values and handles included; a namespace without
    // Starling's table has no counters.
    for family in [Family::V4, Family::V6] {
        let listed = node.nft(&format!(
            "-j list counters table {} starling",
            nft_family(family)
        ));
        let mut from_nft = parse_counters(&listed, family).unwrap();
        let mut dumped = netns::run_in(node.node.name(), || netlink::dump_counters(family))
            .unwrap()
            .unwrap();
        from_nft.sort_by(|x, y| x.name.cmp(&y.name));
        dumped.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(dumped, from_nft, "{family:?}");
        let elsewhere = netns::run_in(a_ns, || netlink::dump_counters(family)).unwrap();
        assert_eq!(elsewhere.unwrap(), []);
    }

    // Counter values are no difference: the resync after all that traffic writes nothing.
    let resync = netns::run_in(node.node.name(), || dataplane.resync(&program))
        .unwrap()
        .unwrap();
    assert_eq!(resync.kind, ApplyKind::Resync);
    assert_eq!((resync.script_bytes, resync.objects), (0, 0), "{resync:?}");

    // The policy moves to another port: one chain rewritten, the counter (a separate object)
    // keeps its value, so the metric does not jump.
    program.policies = self::program(&node, PORT + 1).policies;
    let changes = Changes {
        policies: BTreeSet::from([policy("allow-from-a")]),
        ..Changes::default()
    };
    let edit = netns::run_in(node.node.name(), || dataplane.apply(&program, &changes))
        .unwrap()
        .unwrap();
    assert_eq!(edit.objects, 1, "{edit:?}");
    let report = refresh(&node, &mut dataplane);
    assert_eq!(report.packets, 0, "nothing sent, nothing added: {report:?}");
    assert_eq!(readings(&metrics, &node).allowed, after.allowed);

    // C drops the policy: its counter goes with its chain, and so does the series.
    let endpoint = program.endpoints.get_mut(&c.interface).unwrap();
    endpoint.ingress.tiers.clear();
    let changes = Changes {
        endpoints: BTreeSet::from([c.interface.clone()]),
        ..Changes::default()
    };
    let removal = netns::run_in(node.node.name(), || dataplane.apply(&program, &changes))
        .unwrap()
        .unwrap();
    assert_eq!(removal.touched.counters_deleted, 1, "{removal:?}");
    let report = refresh(&node, &mut dataplane);
    assert_eq!(report.removed_series, 1, "{report:?}");
    let listed = node.nft("list counters table ip starling");
    assert!(!listed.contains("allow-from-a"), "{listed}");
    assert!(reachable(b_ns, &c.address, PORT), "B -> C with no policy");
    let resync = netns::run_in(node.node.name(), || dataplane.resync(&program))
        .unwrap()
        .unwrap();
    assert_eq!(resync.script_bytes, 0, "{resync:?}");
}

#[test]
fn every_counter_of_a_synthetic_node_is_read_and_named() {
    let test = "every_counter_of_a_synthetic_node_is_read_and_named";
    if !require_root(test) || !require_programs(test, PROGRAMS) {
        return;
    }
    let node = netns::create(&netns::unique_name("st-pol-scale")).unwrap();
    let (endpoints, policies) = (200, 400);
    let mut program = synthetic::large_program(endpoints, policies);
    let metrics = PolicyNftMetrics::new(&Registry::new());
    let mut dataplane =
        PolicyDataplane::new(RenderConfig::default(), Some(metrics.clone())).unwrap();
    netns::run_in(node.name(), || {
        dataplane.apply(&program, &Changes::default())
    })
    .unwrap()
    .unwrap();
    let rendered: usize = [Family::V4, Family::V6]
        .into_iter()
        .map(|family| dataplane.renderer().counts(family).counters)
        .sum();
    let report = netns::run_in(node.name(), || dataplane.refresh_counters())
        .unwrap()
        .unwrap();
    assert!(rendered > 2 * 2 * endpoints, "{rendered}");
    assert_eq!(
        (report.counters, report.unknown),
        (rendered, 0),
        "{report:?}"
    );
    let denied = metrics.denied_packets_total.collect()[0].get_metric().len();
    assert_eq!(
        denied,
        2 * endpoints,
        "one series per endpoint and direction"
    );

    // One more pod: its counters are read at once, nothing else moves.
    let changes = synthetic::add_endpoint(&mut program, endpoints, endpoints, policies);
    netns::run_in(node.name(), || dataplane.apply(&program, &changes))
        .unwrap()
        .unwrap();
    let report = netns::run_in(node.name(), || dataplane.refresh_counters())
        .unwrap()
        .unwrap();
    assert_eq!((report.counters, report.unknown), (rendered + 4, 0));
    assert_eq!(
        metrics.denied_packets_total.collect()[0].get_metric().len(),
        2 * endpoints + 2
    );
}
