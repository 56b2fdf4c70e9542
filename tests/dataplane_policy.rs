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

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use netns_test::{ip, run};
use starling::dataplane::policy::{ApplyKind, PolicyDataplane};
use starling::netns::{self, NetnsGuard};
use starling_policy::program::*;
use starling_policy::render::{synthetic, RenderConfig};

const PORT: u16 = 8080;

const PROGRAMS: &[&str] = &["ip", "nft", "sysctl"];

struct Pod {
    namespace: NetnsGuard,
    interface: String,
    address: String,
}

/// The node namespace (an eth0 veth with 192.168.50.1 so the host has a source address) and
/// its pods, each `cali…` veth with proxy ARP and a /32 route, as the CNI plugin sets them up.
struct Node {
    pods: Vec<Pod>,
    node: NetnsGuard,
}

impl Node {
    fn build(pods: &[(&str, &str)]) -> Node {
        let node = netns::create(&netns::unique_name("st-pol-node")).unwrap();
        let n = node.name().to_string();
        ip(&n, "link set lo up");
        ip(&n, "link add eth0 type veth peer name eth0peer");
        ip(&n, "link set eth0peer up");
        ip(&n, "addr add 192.168.50.1/24 dev eth0");
        ip(&n, "link set eth0 up");
        // Proxy ARP answers for 169.254.1.1 only when the node has a route to it.
        ip(&n, "route add default via 192.168.50.254 dev eth0");
        sysctl(&n, "net.ipv4.ip_forward=1");
        let mut built = vec![];
        for (interface, address) in pods {
            let pod = netns::create(&netns::unique_name("st-pol-pod")).unwrap();
            let p = pod.name();
            ip(
                &n,
                &format!("link add {interface} type veth peer name eth0 netns {p}"),
            );
            ip(
                &n,
                &format!("link set {interface} address ee:ee:ee:ee:ee:ee up"),
            );
            sysctl(&n, &format!("net.ipv4.conf.{interface}.proxy_arp=1"));
            sysctl(&n, &format!("net.ipv4.neigh.{interface}.proxy_delay=0"));
            ip(&n, &format!("route add {address}/32 dev {interface}"));
            ip(p, "link set lo up");
            ip(p, &format!("addr add {address}/32 dev eth0"));
            ip(p, "link set eth0 up");
            ip(p, "route add 169.254.1.1 dev eth0 scope link");
            ip(p, "route add default via 169.254.1.1 dev eth0");
            serve(p, PORT);
            serve(p, PORT + 1);
            built.push(Pod {
                namespace: pod,
                interface: interface.to_string(),
                address: address.to_string(),
            });
        }
        Node { pods: built, node }
    }

    fn pod(&self, index: usize) -> &Pod {
        &self.pods[index]
    }

    fn nft(&self, args: &str) -> String {
        let mut all = vec!["netns", "exec", self.node.name(), "nft"];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }
}

fn sysctl(namespace: &str, setting: &str) {
    run(
        "ip",
        &["netns", "exec", namespace, "sysctl", "-qw", setting],
    );
}

/// An echo server on `port` inside `namespace` (the socket stays in the namespace it was made
/// in; the accepting threads need not).
fn serve(namespace: &str, port: u16) {
    let listener = netns::run_in(namespace, || TcpListener::bind(("0.0.0.0", port)))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buffer = [0u8; 64];
                while let Ok(read) = stream.read(&mut buffer) {
                    if read == 0 || stream.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// A connection from `namespace` to `address:port`, or `None` when its SYN goes unanswered.
fn connect(namespace: &str, address: &str, port: u16) -> Option<TcpStream> {
    let target: SocketAddr = format!("{address}:{port}").parse().unwrap();
    netns::run_in(namespace, || {
        TcpStream::connect_timeout(&target, Duration::from_millis(1500)).ok()
    })
    .unwrap()
}

/// Whether `stream` still carries data both ways.
fn echoes(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut answer = [0u8; 4];
    stream.write_all(b"ping").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"ping"
}

fn reachable(namespace: &str, address: &str, port: u16) -> bool {
    connect(namespace, address, port).is_some_and(|mut stream| echoes(&mut stream))
}

fn policy(name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::KubernetesNetworkPolicy,
        namespace: Some("ns".into()),
        name: name.into(),
    }
}

fn allow() -> Rule {
    Rule {
        index: 0,
        action: Action::Allow,
        protocol: None,
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: Side::default(),
        destination: Side::default(),
    }
}

fn v4(rules: Vec<Rule>) -> RuleList {
    RuleList {
        v4: rules,
        v6: vec![],
    }
}

fn role_a() -> SetId {
    SetId::Selector("role == 'a'".into())
}

/// A endpoint in no policy; B's ingress selected by `deny-b` (no rules: default deny); C's
/// ingress by `allow-from-a` (TCP `port` from the set `role == 'a'` = {A}). Profile allows.
fn program(node: &Node, port: u16) -> Program {
    let mut program = Program::default();
    let ingress = [vec![], vec![policy("deny-b")], vec![policy("allow-from-a")]];
    for (pod, policies) in node.pods.iter().zip(ingress) {
        let tiers = if policies.is_empty() {
            vec![]
        } else {
            vec![TierStep {
                tier: "default".into(),
                default_action: TierDefault::Deny,
                policies,
            }]
        };
        let profiles = vec!["kns.ns".to_string()];
        program.endpoints.insert(
            pod.interface.clone(),
            EndpointProgram {
                key: format!("ns/{}", pod.interface),
                interface: pod.interface.clone(),
                addresses: vec![pod.address.parse().unwrap()],
                ingress: Pipeline {
                    tiers,
                    profiles: profiles.clone(),
                },
                egress: Pipeline {
                    tiers: vec![],
                    profiles,
                },
            },
        );
    }
    let mut from_a = allow();
    from_a.protocol = Some(6);
    from_a.source.set = Some(role_a());
    from_a.destination.ports = vec![PortRange {
        first: port,
        last: port,
    }];
    program.policies.insert(
        policy("allow-from-a"),
        PolicyProgram {
            ingress: v4(vec![from_a]),
            egress: RuleList::default(),
        },
    );
    program
        .policies
        .insert(policy("deny-b"), PolicyProgram::default());
    let everything = RuleList {
        v4: vec![allow()],
        v6: vec![allow()],
    };
    program.profiles.insert(
        "kns.ns".into(),
        PolicyProgram {
            ingress: everything.clone(),
            egress: everything,
        },
    );
    let a: std::net::IpAddr = node.pod(0).address.parse().unwrap();
    program.sets.insert(
        (role_a(), Family::V4),
        SetMembers::Nets(BTreeSet::from([ipnet::IpNet::from(a)])),
    );
    program
}

fn apply(node: &Node, dataplane: &mut PolicyDataplane, program: &Program, changes: &Changes) {
    let report = netns::run_in(node.node.name(), || dataplane.apply(program, changes))
        .unwrap()
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

fn three_pods() -> Node {
    Node::build(&[
        ("caliaaaa0000001", "10.244.0.1"),
        ("calibbbb0000002", "10.244.0.2"),
        ("calicccc0000003", "10.244.0.3"),
    ])
}

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
    assert_eq!(report.objects, 12, "{report:?}");
    let report = netns::run_in(node.node.name(), || dataplane.resync(&large))
        .unwrap()
        .unwrap();
    assert_eq!(report.script_bytes, 0, "{report:?}");
}
