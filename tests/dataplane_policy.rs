//! Network policy enforced by the nftables dataplane on a real kernel (issue 13 item 3): a
//! "node" namespace with pods behind `cali…` veths routed as Calico does, hand-built programs,
//! TCP connections that must pass or be dropped, incremental changes with an established
//! connection surviving, a resync that writes nothing, an interface missing from the dispatch
//! map dropped, overlapping CIDRs committed. nft only ever runs inside the test namespaces.

#[path = "support/netns_test.rs"]
mod netns_test;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::{require_programs, require_root};
mod dataplane_policy_support;
use dataplane_policy_support::*;

use std::collections::BTreeSet;

use starling::dataplane::policy::{ApplyKind, Nft, NftLibrary, PolicyDataplane};
use starling::netns;
use starling_policy::program::*;
use starling_policy::render::{synthetic, RenderConfig};

#[test]
fn policy_allows_and_denies_then_changes_incrementally_keeping_established_connections() {
    let test =
        "policy_allows_and_denies_then_changes_incrementally_keeping_established_connections";
    if !require_root(test) || !require_programs(test, PROGRAMS) {
        return;
    }
    let node = three_pods();
    let (a, b, c) = (node.pod(0), node.pod(1), node.pod(2));
    let (a_ns, b_ns) = (a.namespace.name(), b.namespace.name());
    // Without policy everything flows (the topology works).
    assert!(
        reachable(b_ns, &c.address, PORT),
        "no policy yet: B reaches C"
    );

    let mut program = program(&node, PORT);
    let mut dataplane = PolicyDataplane::new(RenderConfig::default(), None).unwrap();
    apply(&node, &mut dataplane, &program, &Changes::default());
    assert!(
        reachable(a_ns, &c.address, PORT),
        "A -> C allowed by allow-from-a"
    );
    assert!(
        !reachable(b_ns, &c.address, PORT),
        "B -> C: B is not in role == 'a'"
    );
    assert!(
        !reachable(a_ns, &c.address, PORT + 1),
        "A -> C on another port"
    );
    assert!(
        !reachable(a_ns, &b.address, PORT),
        "A -> B: default deny ingress"
    );
    assert!(
        reachable(c.namespace.name(), &a.address, PORT),
        "C -> A: A has no policy"
    );
    // The host reaches its pods whatever their policy (kubelet probes): OUTPUT is not policed.
    assert!(reachable(node.node.name(), &b.address, PORT), "host -> B");

    let mut established = connect(a_ns, &c.address, PORT).expect("A -> C connects");
    assert!(echoes(&mut established));

    // B joins role == 'a': one set element, nothing else.
    if let Some(SetMembers::Nets(nets)) = program.sets.get_mut(&(role_a(), Family::V4)) {
        nets.insert("10.244.0.2/32".parse().unwrap());
    }
    let changes = Changes {
        sets: BTreeSet::from([(role_a(), Family::V4)]),
        ..Changes::default()
    };
    let report = netns::run_in(node.node.name(), || dataplane.apply(&program, &changes))
        .unwrap()
        .unwrap();
    assert_eq!(report.kind, ApplyKind::Incremental);
    assert_eq!(report.objects, 1, "{report:?}");
    assert!(
        reachable(b_ns, &c.address, PORT),
        "B -> C once B is in the set"
    );
    assert!(
        echoes(&mut established),
        "A -> C survives an unrelated change"
    );

    // The policy moves to another port: new connections on the old one are dropped, the
    // established one lives on (conntrack accepts it before any policy).
    let moved = self::program(&node, PORT + 1);
    program.policies = moved.policies;
    let changes = Changes {
        policies: BTreeSet::from([policy("allow-from-a")]),
        ..Changes::default()
    };
    let report = netns::run_in(node.node.name(), || dataplane.apply(&program, &changes))
        .unwrap()
        .unwrap();
    assert_eq!(report.touched.chains_rewritten, 1, "{report:?}");
    assert_eq!(report.objects, 1, "{report:?}");
    assert!(
        !reachable(a_ns, &c.address, PORT),
        "old port closed for new connections"
    );
    assert!(reachable(a_ns, &c.address, PORT + 1), "new port open");
    assert!(
        echoes(&mut established),
        "established connection survives the policy edit"
    );

    // The kernel holds exactly what was rendered: a resync writes nothing.
    let report = netns::run_in(node.node.name(), || dataplane.resync(&program))
        .unwrap()
        .unwrap();
    assert_eq!(report.kind, ApplyKind::Resync);
    assert_eq!((report.script_bytes, report.objects), (0, 0), "{report:?}");
}

#[test]
fn an_interface_missing_from_the_dispatch_map_is_dropped_until_its_program_lands() {
    if !require_root(
        "an_interface_missing_from_the_dispatch_map_is_dropped_until_its_program_lands",
    ) || !require_programs(
        "an_interface_missing_from_the_dispatch_map_is_dropped_until_its_program_lands",
        PROGRAMS,
    ) {
        return;
    }
    let node = Node::build(&[
        ("caliaaaa0000001", "10.244.0.1"),
        ("calibbbb0000002", "10.244.0.2"),
        ("calicccc0000003", "10.244.0.3"),
        ("calidddd0000004", "10.244.0.4"),
    ]);
    let (a, d) = (node.pod(0), node.pod(3));
    let mut program = program(&node, PORT);
    let mut dataplane = PolicyDataplane::new(RenderConfig::default(), None).unwrap();
    apply(&node, &mut dataplane, &program, &Changes::default());
    assert!(
        !reachable(d.namespace.name(), &a.address, PORT),
        "from the unknown D"
    );
    assert!(
        !reachable(a.namespace.name(), &d.address, PORT),
        "to the unknown D"
    );

    // D's endpoint arrives: chains and map elements in one transaction, then it is open.
    let mut endpoint = program.endpoints["caliaaaa0000001"].clone();
    endpoint.interface = d.interface.clone();
    endpoint.key = "ns/d".into();
    endpoint.addresses = vec![d.address.parse().unwrap()];
    program.endpoints.insert(d.interface.clone(), endpoint);
    let changes = Changes {
        endpoints: BTreeSet::from([d.interface.clone()]),
        ..Changes::default()
    };
    apply(&node, &mut dataplane, &program, &changes);
    assert!(reachable(d.namespace.name(), &a.address, PORT));
    assert!(reachable(a.namespace.name(), &d.address, PORT));

    // Someone deletes D's map element: the resync puts back exactly that.
    node.nft("delete element ip starling to-wl { \"calidddd0000004\" }");
    assert!(
        !reachable(a.namespace.name(), &d.address, PORT),
        "closed without its element"
    );
    let report = netns::run_in(node.node.name(), || dataplane.resync(&program))
        .unwrap()
        .unwrap();
    assert_eq!(report.objects, 1, "{report:?}");
    assert_eq!(report.touched.map_elements_added, 1);
    assert!(reachable(a.namespace.name(), &d.address, PORT));
}

#[test]
fn overlapping_cidrs_commit_and_large_programs_load_and_resync_to_nothing() {
    if !require_root("overlapping_cidrs_commit_and_large_programs_load_and_resync_to_nothing")
        || !require_programs(
            "overlapping_cidrs_commit_and_large_programs_load_and_resync_to_nothing",
            PROGRAMS,
        )
    {
        return;
    }
    let node = three_pods();
    let mut program = program(&node, PORT);
    let nets = [
        "10.244.0.0/16",
        "10.244.0.1/32",
        "10.0.0.0/8",
        "10.244.7.0/24",
        "192.0.2.0/24",
    ];
    program.sets.insert(
        (role_a(), Family::V4),
        SetMembers::Nets(nets.iter().map(|n| n.parse().unwrap()).collect()),
    );
    let mut dataplane = PolicyDataplane::new(RenderConfig::default(), None).unwrap();
    apply(&node, &mut dataplane, &program, &Changes::default());
    let listed = node.nft("list table ip starling");
    assert!(
        listed.contains("10.0.0.0/8") && listed.contains("192.0.2.0/24"),
        "{listed}"
    );
    assert!(
        !listed.contains("10.244.7.0/24"),
        "subsumed member written: {listed}"
    );
    // B (10.244.0.2) is inside 10.0.0.0/8 now.
    assert!(reachable(
        node.pod(1).namespace.name(),
        &node.pod(2).address,
        PORT
    ));
    // An overlapping member added incrementally is no change at all.
    if let Some(SetMembers::Nets(nets)) = program.sets.get_mut(&(role_a(), Family::V4)) {
        nets.insert("10.9.0.0/16".parse().unwrap());
    }
    let changes = Changes {
        sets: BTreeSet::from([(role_a(), Family::V4)]),
        ..Changes::default()
    };
    let report = netns::run_in(node.node.name(), || dataplane.apply(&program, &changes))
        .unwrap()
        .unwrap();
    assert_eq!(report.script_bytes, 0, "{report:?}");

    // A synthetic node (200 endpoints, 400 policies) replaces it in one transaction, reads
    // back to no difference, and one more pod is a handful of objects.
    let (endpoints, policies) = (200, 400);
    let mut large = synthetic::large_program(endpoints, policies);
    let report = netns::run_in(node.node.name(), || dataplane.resync(&large))
        .unwrap()
        .unwrap();
    assert!(report.objects > 1000, "{report:?}");
    let report = netns::run_in(node.node.name(), || dataplane.resync(&large))
        .unwrap()
        .unwrap();
    assert_eq!(report.script_bytes, 0, "{report:?}");
    let changes = synthetic::add_endpoint(&mut large, endpoints, endpoints, policies);
    let report = netns::run_in(node.node.name(), || dataplane.apply(&large, &changes))
        .unwrap()
        .unwrap();
    // 4 chains, their 4 denied counters, 4 map elements, 4 set elements.
    assert_eq!(report.objects, 16, "{report:?}");
    let report = netns::run_in(node.node.name(), || dataplane.resync(&large))
        .unwrap()
        .unwrap();
    assert_eq!(report.script_bytes, 0, "{report:?}");
}

/// The in-process path (libnftables) commits in the calling thread's namespace, and a refused
/// transaction names its line and changes nothing.
#[test]
fn libnftables_commits_in_the_callers_namespace_and_names_a_refused_line() {
    let test = "libnftables_commits_in_the_callers_namespace_and_names_a_refused_line";
    if !require_root(test) || !require_programs(test, PROGRAMS) {
        return;
    }
    let mut library = NftLibrary::load().expect("libnftables.so.1 (package libnftables1)");
    let namespace = netns::create(&netns::unique_name("st-libnft")).unwrap();
    let table = format!("starling_libnft_{}", std::process::id());
    let good = format!("add table ip {table}\nadd set ip {table} s {{ type ipv4_addr; }}\n");
    netns::run_in(namespace.name(), || library.run(&good))
        .unwrap()
        .unwrap();
    let list = |namespace: Option<&str>| {
        let mut command = match namespace {
            Some(name) => {
                let mut command = std::process::Command::new("ip");
                command.args(["netns", "exec", name, "nft"]);
                command
            }
            None => std::process::Command::new("nft"),
        };
        let output = command
            .args(["list", "table", "ip", &table])
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (present, listed) = list(Some(namespace.name()));
    assert!(present && listed.contains("set s"), "{listed}");
    assert!(
        !list(None).0,
        "table {table} appeared in the root namespace"
    );

    let bad = format!(
        "add element ip {table} s {{ 10.0.0.1 }}\nadd element ip {table} missing {{ 10.0.0.2 }}\n"
    );
    let error = netns::run_in(namespace.name(), || library.run(&bad))
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!("line 2: add element ip {table} missing")),
        "{error}"
    );
    let (_, listed) = list(Some(namespace.name()));
    assert!(
        !listed.contains("10.0.0.1"),
        "half a refused transaction applied: {listed}"
    );
}
