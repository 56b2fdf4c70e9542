//! The daemon's pure computation: cluster state + local node + configuration → dataplane input,
//! desired state and BGP speaker configuration.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::json;
use starling::resources::FromResource;
use starling::resources::{BGPConfiguration, IPPool};
use starling_calc::compute::{compute, hashed_router_id, ComputeInput};
use starling_calc::desired;
use starling_calc::spec::veth_name;
use starling_calc::spec::HostInterface;
use starling_calc::spec::RouteClass;
use starling_calc::state::{ClusterState, Kind, LocalPod, Resource, SecretData, Update};
use starling_ipam::block::Block;
use starling_ipam::records::{Affinity, AffinityState};
use starling_model::bgp::BgpConfigLayer;
use starling_model::config::Config;
use starling_model::endpoint::IpNat;
use starling_model::felix::FelixLayer;
use starling_model::wire::IPPoolSpec;
use starling_model::{CalicoNode, IpPool};

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn config(extra: &[(&str, &str)]) -> Config {
    let mut variables: BTreeMap<String, String> = [("NODENAME", "node-a")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (key, value) in extra {
        variables.insert(key.to_string(), value.to_string());
    }
    Config::from_env(&variables).unwrap()
}

fn pool(name: &str, cidr: &str, vxlan: &str, ipip: &str) -> IpPool {
    IpPool::from_resource(&IPPool::new(
        name,
        IPPoolSpec {
            cidr: cidr.into(),
            vxlan_mode: Some(vxlan.into()),
            ipip_mode: Some(ipip.into()),
            ..Default::default()
        },
    ))
    .unwrap()
}

fn node(name: &str, address: &str) -> CalicoNode {
    CalicoNode {
        name: name.into(),
        ipv4_address: Some(address.parse().unwrap()),
        ..CalicoNode::default()
    }
}

fn attributes(node: &str, namespace: &str, pod: &str) -> BTreeMap<String, String> {
    [("node", node), ("namespace", namespace), ("pod", pod)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A state where every kind has been listed, holding `resources`.
fn state_with(resources: Vec<(String, Resource)>) -> ClusterState {
    let mut by_kind: BTreeMap<Kind, BTreeMap<String, Resource>> = Kind::ALL
        .iter()
        .map(|kind| (*kind, BTreeMap::new()))
        .collect();
    for (key, resource) in resources {
        by_kind
            .get_mut(&resource.kind())
            .unwrap()
            .insert(key, resource);
    }
    let mut state = ClusterState::new();
    for (kind, objects) in by_kind {
        state.apply(Update::Replace { kind, objects });
    }
    state
}

fn host_interfaces() -> Vec<HostInterface> {
    vec![HostInterface {
        name: "eth0".into(),
        addresses: vec![net("10.0.0.1/24")],
        mtu: 1500,
        oper_up: true,
    }]
}

#[test]
fn bgp_carries_ipip_and_no_encap_remote_blocks_but_not_vxlan() {
    let mut local = node("node-a", "10.0.0.1/24");
    local.ipv4_ipip_tunnel_addr = Some("10.244.0.1".parse().unwrap());
    local.ipv4_vxlan_tunnel_addr = Some("10.245.0.1".parse().unwrap());
    let mut remote = node("node-b", "10.1.0.2/24");
    remote.ipv4_vxlan_tunnel_addr = Some("10.245.1.1".parse().unwrap());
    let block = |cidr: &str| starling_calc::spec::BlockSummary {
        cidr: net(cidr),
        affinity: Some("node-b".into()),
        borrowed: vec![],
    };
    let mut input = starling_calc::spec::DataplaneInput {
        local_node: local,
        nodes: vec![remote],
        pools: vec![
            pool("ipip", "10.244.0.0/16", "Never", "Always"),
            pool("vxlan", "10.245.0.0/16", "Always", "Never"),
            pool("plain", "10.246.0.0/16", "Never", "Never"),
        ],
        blocks: vec![
            block("10.244.1.0/26"),
            block("10.245.1.0/26"),
            block("10.246.1.0/26"),
        ],
        host_interfaces: host_interfaces(),
        datastore_in_sync: true,
        ..Default::default()
    };
    let from_ipam = desired::compute(&input);
    for cidr in ["10.244.1.0/26", "10.245.1.0/26", "10.246.1.0/26"] {
        assert!(
            from_ipam.routes.contains_key(&net(cidr)),
            "{cidr} from IPAM"
        );
    }
    input.config.cluster_routes_from_bgp = true;
    let with_bgp = desired::compute(&input);
    assert_eq!(
        with_bgp.routes[&net("10.245.1.0/26")].class,
        RouteClass::RemoteBlockVxlan,
        "VXLAN pools stay IPAM-routed"
    );
    assert!(!with_bgp.routes.contains_key(&net("10.244.1.0/26")));
    assert!(!with_bgp.routes.contains_key(&net("10.246.1.0/26")));
}

#[test]
fn workloads_borrowed_addresses_and_originated_routes() {
    let mut own = Block::new(net("10.244.0.0/26"), Some("host:node-a".into()), None, 0).unwrap();
    own.assign_address(
        ip("10.244.0.5"),
        Some("h1"),
        &attributes("node-a", "web", "pod1"),
    )
    .unwrap();
    let mut foreign =
        Block::new(net("10.244.1.0/26"), Some("host:node-b".into()), None, 0).unwrap();
    foreign
        .assign_address(
            ip("10.244.1.7"),
            Some("h2"),
            &attributes("node-a", "web", "pod2"),
        )
        .unwrap();
    let affinity = Affinity::new("node-a", net("10.244.0.0/26"), AffinityState::Confirmed);
    let state = state_with(vec![
        (
            "pool".into(),
            Resource::IpPool(pool("pool", "10.244.0.0/16", "Never", "Always")),
        ),
        ("own".into(), Resource::IpamBlock(own)),
        ("foreign".into(), Resource::IpamBlock(foreign)),
        ("affinity".into(), Resource::BlockAffinity(affinity)),
        (
            "node-a".into(),
            Resource::Node(node("node-a", "10.0.0.1/24")),
        ),
        (
            "node-b".into(),
            Resource::Node(node("node-b", "10.0.0.2/24")),
        ),
        (
            "web/pod3".into(),
            Resource::Pod(LocalPod {
                namespace: "web".into(),
                name: "pod3".into(),
                addresses: vec![ip("10.244.0.9")],
                ip_nats: vec![IpNat {
                    internal: ip("10.244.0.9"),
                    external: ip("10.244.200.1"),
                }],
            }),
        ),
        (
            "default".into(),
            Resource::FelixConfiguration(Box::new(FelixLayer {
                floating_ips: Some(true),
                ..FelixLayer::default()
            })),
        ),
    ]);
    let config = config(&[]);
    let interfaces = host_interfaces();
    let computed = compute(&ComputeInput {
        state: &state,
        config: &config,
        node_name: "node-a",
        registered_node: None,
        host_interfaces: &interfaces,
        learned_routes: &[],
    });
    let workloads: BTreeMap<String, Vec<IpAddr>> = computed
        .dataplane
        .workloads
        .iter()
        .map(|w| (w.interface.clone(), w.addresses.clone()))
        .collect();
    assert_eq!(
        workloads[&veth_name("cali", "web", "pod1")],
        vec![ip("10.244.0.5")]
    );
    assert_eq!(
        workloads[&veth_name("cali", "web", "pod2")],
        vec![ip("10.244.1.7")]
    );
    assert_eq!(
        workloads[&veth_name("cali", "web", "pod3")],
        vec![ip("10.244.0.9")]
    );
    let foreign_summary = computed
        .dataplane
        .blocks
        .iter()
        .find(|b| b.cidr == net("10.244.1.0/26"))
        .unwrap();
    assert_eq!(
        foreign_summary.borrowed,
        vec![(ip("10.244.1.7"), "node-a".to_string())]
    );
    assert_eq!(
        computed.desired.routes[&net("10.244.0.0/26")].class,
        RouteClass::BlackholeLocalBlock
    );
    let speaker = computed.speaker.expect("bird backend with a node address");
    assert_eq!(
        speaker.originated,
        vec![
            net("10.244.0.0/26"),
            net("10.244.1.7/32"),
            net("10.244.200.1/32")
        ],
        "the confirmed local block, the borrowed workload address and pod3's floating IP"
    );
    // The borrowed /32 leaves through pod2's veth, the floating IP through pod3's (what export
    // `interface` rules match); the block is a blackhole route without one.
    assert_eq!(
        speaker.originated_interfaces,
        BTreeMap::from([
            (net("10.244.1.7/32"), veth_name("cali", "web", "pod2")),
            (net("10.244.200.1/32"), veth_name("cali", "web", "pod3")),
        ])
    );
    assert_eq!(speaker.graceful_restart_time.as_secs(), 120);
    assert!(speaker.sessions.contains_key("Mesh_10_0_0_2"));
}

#[test]
fn mesh_password_from_secret_and_hashed_router_id() {
    let bgp: BGPConfiguration = serde_json::from_value(json!({
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPConfiguration",
        "metadata": { "name": "default" },
        "spec": { "nodeMeshPassword": { "secretKeyRef": { "name": "bgp", "key": "mesh" } } },
    }))
    .unwrap();
    let state = state_with(vec![
        (
            "default".into(),
            Resource::BgpConfiguration(Box::new(BgpConfigLayer::from_resource(&bgp).unwrap())),
        ),
        (
            "bgp".into(),
            Resource::Secret(SecretData {
                data: [("mesh".to_string(), "s3cret".to_string())].into(),
            }),
        ),
        (
            "node-a".into(),
            Resource::Node(node("node-a", "10.0.0.1/24")),
        ),
        (
            "node-b".into(),
            Resource::Node(node("node-b", "10.0.0.2/24")),
        ),
    ]);
    let config = config(&[("CALICO_ROUTER_ID", "hash")]);
    let computed = compute(&ComputeInput {
        state: &state,
        config: &config,
        node_name: "node-a",
        registered_node: None,
        host_interfaces: &[],
        learned_routes: &[],
    });
    let speaker = computed.speaker.unwrap();
    assert_eq!(speaker.passwords["Mesh_10_0_0_2"], "s3cret");
    assert_eq!(speaker.router_id, hashed_router_id("node-a"));
    assert!(speaker.router_id.octets()[0] < 224);

    let vxlan = config_backend("vxlan");
    let without_bgp = compute(&ComputeInput {
        state: &state,
        config: &vxlan,
        node_name: "node-a",
        registered_node: None,
        host_interfaces: &[],
        learned_routes: &[],
    });
    assert!(without_bgp.speaker.is_none());
    assert!(!without_bgp.dataplane.config.cluster_routes_from_bgp);
}

fn config_backend(backend: &str) -> Config {
    config(&[("CALICO_NETWORKING_BACKEND", backend)])
}
