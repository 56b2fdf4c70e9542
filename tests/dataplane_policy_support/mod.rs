//! The node of the real-kernel policy tests: a "node" namespace with pods behind `cali…` veths
//! routed as Calico does, echo servers in the pods, TCP probes, and a hand-built program
//! (A free, B default-denied, C allowing TCP from the set `role == 'a'`).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::netns_test::{ip, run};
use starling::dataplane::policy::PolicyDataplane;
use starling::netns::{self, NetnsGuard};
use starling_policy::program::*;

pub const PORT: u16 = 8080;

pub const PROGRAMS: &[&str] = &["ip", "nft", "sysctl"];

pub struct Pod {
    pub namespace: NetnsGuard,
    pub interface: String,
    pub address: String,
}

/// The node namespace (an eth0 veth with 192.168.50.1 so the host has a source address) and
/// its pods, each `cali…` veth with proxy ARP and a /32 route, as the CNI plugin sets them up.
pub struct Node {
    pub pods: Vec<Pod>,
    pub node: NetnsGuard,
}

impl Node {
    pub fn build(pods: &[(&str, &str)]) -> Node {
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

    pub fn pod(&self, index: usize) -> &Pod {
        &self.pods[index]
    }

    pub fn nft(&self, args: &str) -> String {
        let mut all = vec!["netns", "exec", self.node.name(), "nft"];
        all.extend(args.split_whitespace());
        run("ip", &all)
    }
}

pub fn sysctl(namespace: &str, setting: &str) {
    run(
        "ip",
        &["netns", "exec", namespace, "sysctl", "-qw", setting],
    );
}

/// An echo server on `port` inside `namespace` (the socket stays in the namespace it was made
/// in; the accepting threads need not).
pub fn serve(namespace: &str, port: u16) {
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
pub fn connect(namespace: &str, address: &str, port: u16) -> Option<TcpStream> {
    let target: SocketAddr = format!("{address}:{port}").parse().unwrap();
    netns::run_in(namespace, || {
        TcpStream::connect_timeout(&target, Duration::from_millis(1500)).ok()
    })
    .unwrap()
}

/// Whether `stream` still carries data both ways.
pub fn echoes(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut answer = [0u8; 4];
    stream.write_all(b"ping").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"ping"
}

pub fn reachable(namespace: &str, address: &str, port: u16) -> bool {
    connect(namespace, address, port).is_some_and(|mut stream| echoes(&mut stream))
}

pub fn policy(name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::KubernetesNetworkPolicy,
        namespace: Some("ns".into()),
        name: name.into(),
    }
}

pub fn allow() -> Rule {
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

pub fn v4(rules: Vec<Rule>) -> RuleList {
    RuleList {
        v4: rules,
        v6: vec![],
    }
}

pub fn role_a() -> SetId {
    SetId::Selector("role == 'a'".into())
}

/// A endpoint in no policy; B's ingress selected by `deny-b` (no rules: default deny); C's
/// ingress by `allow-from-a` (TCP `port` from the set `role == 'a'` = {A}). Profile allows.
pub fn program(node: &Node, port: u16) -> Program {
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

pub fn apply(node: &Node, dataplane: &mut PolicyDataplane, program: &Program, changes: &Changes) {
    let report = netns::run_in(node.node.name(), || dataplane.apply(program, changes))
        .unwrap()
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

pub fn three_pods() -> Node {
    Node::build(&[
        ("caliaaaa0000001", "10.244.0.1"),
        ("calibbbb0000002", "10.244.0.2"),
        ("calicccc0000003", "10.244.0.3"),
    ])
}
