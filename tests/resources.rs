//! Fixtures of real-looking Calico objects: each parses into the wire type, serialises back to
//! the same JSON (same field names, nothing lost or added), and converts into the domain type.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use starling::resources::node::{
    calico_node_from_k8s, calico_node_from_v3, k8s_annotation_changes, k8s_annotation_patch,
    update_v3_node,
};
use starling::resources::{
    BGPConfiguration, BGPPeer, CalicoNodeResource, FelixConfiguration, FromResource, IPPool,
    IPReservation,
};
use starling_model::bgp::BgpConfigLayer;
use starling_model::bgp::{PeerScope, ProgramClusterRoutes};
use starling_model::felix::FelixLayer;
use starling_model::felix::NatOutgoingExclusions;
use starling_model::wire::{IPPoolSpec, V3Object};
use starling_model::{
    AllowedUse, AsNumber, BgpConfig, BgpPeer, EncapMode, FelixConfig, IpPool, IpReservation,
    NextHopMode, PeerTarget,
};

/// A fixture as JSON, whether the file is YAML or JSON.
fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/resources")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    if name.ends_with(".json") {
        serde_json::from_str(&text).unwrap()
    } else {
        serde_saphyr::from_str(&text).unwrap()
    }
}

/// Parses the fixture into `T`, checks it serialises back to the same JSON, returns it.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let original = fixture(name);
    let parsed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|error| panic!("{name} does not parse: {error}"));
    let written = serde_json::to_value(&parsed).unwrap();
    assert_eq!(
        written,
        original,
        "{name} changed in a round trip:\nwritten  {}\noriginal {}",
        serde_json::to_string_pretty(&written).unwrap(),
        serde_json::to_string_pretty(&original).unwrap()
    );
    parsed
}

#[test]
fn ippool_with_modern_fields() {
    let resource: IPPool = round_trip("ippool-modern.yaml");
    let pool = IpPool::from_resource(&resource).unwrap();
    assert_eq!(pool.name, "rack0-ipv4");
    assert_eq!(pool.cidr.to_string(), "10.244.0.0/16");
    assert_eq!(pool.block_size, 26);
    assert_eq!(pool.vxlan_mode, EncapMode::CrossSubnet);
    assert_eq!(pool.ipip_mode, EncapMode::Never);
    assert!(pool.nat_outgoing);
    assert_eq!(pool.node_selector.to_string(), "rack == \"r0\"");
    assert_eq!(
        pool.allowed_uses,
        BTreeSet::from([AllowedUse::Workload, AllowedUse::Tunnel])
    );
    let labels = starling::resources::meta::effective_labels(&resource.metadata);
    assert_eq!(
        labels["tier"], "pods",
        "labels of projectcalico.org/metadata are merged"
    );
    assert_eq!(labels["rack"], "r0");
}

#[test]
fn ippool_with_legacy_fields() {
    let resource: IPPool = round_trip("ippool-legacy.json");
    assert_eq!(resource.spec.nat_outgoing_legacy, Some(true));
    let pool = IpPool::from_resource(&resource).unwrap();
    assert_eq!(pool.ipip_mode, EncapMode::CrossSubnet);
    assert_eq!(pool.vxlan_mode, EncapMode::Never);
    assert!(pool.nat_outgoing, "nat-outgoing maps to natOutgoing");
    assert_eq!(pool.allowed_uses, IpPool::default_allowed_uses());
}

#[test]
fn ipv6_pool() {
    let resource: IPPool = round_trip("ippool-v6.yaml");
    let pool = IpPool::from_resource(&resource).unwrap();
    assert!(!pool.is_ipv4());
    assert_eq!(pool.block_size, 122);
    assert!(!pool.nat_outgoing);
}

#[test]
fn etcd_ippool() {
    let resource: V3Object<IPPoolSpec> = round_trip("etcd-ippool.json");
    assert_eq!(resource.api_version, "projectcalico.org/v3");
    let pool = IpPool::from_v3(&resource).unwrap();
    assert_eq!(pool.vxlan_mode, EncapMode::Always);
    assert_eq!(pool.name, "default-ipv4-ippool");
}

#[test]
fn ip_reservation() {
    let resource: IPReservation = round_trip("ipreservation.yaml");
    let reservation = IpReservation::from_resource(&resource).unwrap();
    let cidrs: Vec<String> = reservation.cidrs.iter().map(ToString::to_string).collect();
    assert_eq!(
        cidrs,
        ["10.244.0.0/30", "10.244.7.254/32", "fd5e:7a1c:93b2::1/128"]
    );
    assert!(reservation.contains("10.244.0.3".parse().unwrap()));
    assert!(!reservation.contains("10.244.0.4".parse().unwrap()));
}

#[test]
fn bgp_configuration_with_communities() {
    let resource: BGPConfiguration = round_trip("bgpconfiguration.yaml");
    let config = BgpConfigLayer::from_resource(&resource).unwrap().config;
    assert!(!config.node_to_node_mesh_enabled);
    assert_eq!(config.as_number, AsNumber(64513));
    assert_eq!(config.listen_port, 1790);
    assert!(config.bind_to_node_ip);
    assert!(!config.service_load_balancer_aggregation);
    assert_eq!(config.service_cluster_ips.len(), 2);
    assert_eq!(
        config.communities[0],
        (
            "bgp-large-community".to_string(),
            "63400:300:100".to_string()
        )
    );
    assert_eq!(config.prefix_advertisements.len(), 2);
    assert_eq!(
        config.prefix_advertisements[0].communities,
        ["bgp-large-community", "64512:120"]
    );
    assert_eq!(config.ignored_interfaces, ["docker0", "kube-ipvs*"]);
    assert_eq!(config.program_cluster_routes, None::<ProgramClusterRoutes>);
}

#[test]
fn per_node_bgp_configuration_overrides_honoured_fields() {
    let global: BGPConfiguration = round_trip("bgpconfiguration.yaml");
    let node: BGPConfiguration = round_trip("bgpconfiguration-node.json");
    let global = BgpConfigLayer::from_resource(&global).unwrap();
    let node = BgpConfigLayer::from_resource(&node).unwrap();
    let node_only = &node.config;
    assert_eq!(node_only.log_severity_screen, "Debug");
    assert_eq!(
        node_only.node_mesh_max_restart_time,
        Some(Duration::from_secs(150))
    );
    let effective = BgpConfig::effective(Some(&global), Some(&node));
    assert_eq!(effective.listen_port, 1791);
    assert_eq!(effective.log_severity_screen, "Debug");
    // Mesh settings are not taken from node.<name>.
    assert_eq!(effective.node_mesh_max_restart_time, None);
    assert_eq!(effective.as_number, AsNumber(64513));
    assert_eq!(BgpConfig::effective(None, None), BgpConfig::default());
}

#[test]
fn global_bgp_peer() {
    let resource: BGPPeer = round_trip("bgppeer-global.yaml");
    let peer = BgpPeer::from_resource(&resource).unwrap();
    assert_eq!(peer.scope, PeerScope::Global);
    assert_eq!(
        peer.target,
        PeerTarget::Address {
            ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            port: None
        }
    );
    assert_eq!(peer.as_number, Some(AsNumber(65546)));
    assert_eq!(peer.keepalive_time, Some(Duration::from_secs(20)));
    assert_eq!(peer.max_restart_time, Some(Duration::from_secs(90)));
    let password = peer.password.unwrap();
    assert_eq!(
        (password.name.as_str(), password.key.as_str()),
        ("bgp-secrets", "tor-password")
    );
    assert_eq!(peer.filters, ["export-pods", "import-default"]);
    assert!(peer.source_use_node_ip);
}

#[test]
fn node_bgp_peer_with_ipv6_port() {
    let resource: BGPPeer = round_trip("bgppeer-node.json");
    let peer = BgpPeer::from_resource(&resource).unwrap();
    assert_eq!(peer.scope, PeerScope::Node("worker-3".into()));
    assert_eq!(
        peer.target,
        PeerTarget::Address {
            ip: "2001:db8::1".parse().unwrap(),
            port: Some(1179)
        }
    );
    assert_eq!(peer.local_as_number, Some(AsNumber(65020)));
    assert_eq!(peer.next_hop_mode, NextHopMode::SelfAddress);
    assert!(!peer.source_use_node_ip);
    assert_eq!(peer.ttl_security, Some(1));
    assert_eq!(peer.num_allowed_local_as_numbers, Some(2));
}

#[test]
fn selector_bgp_peer() {
    let resource: BGPPeer = round_trip("bgppeer-selector.yaml");
    let peer = BgpPeer::from_resource(&resource).unwrap();
    assert!(
        matches!(peer.scope, PeerScope::NodeSelector(ref s) if s.to_string() == "!has(route-reflector)")
    );
    assert!(
        matches!(peer.target, PeerTarget::Nodes(ref s) if s.to_string() == "has(route-reflector)")
    );
    assert_eq!(peer.as_number, None);
    assert!(peer.reverse_peering_manual);
}

#[test]
fn felix_configuration_keeps_unknown_fields() {
    let resource: FelixConfiguration = round_trip("felixconfiguration.yaml");
    assert!(resource.spec.other.contains_key("iptablesBackend"));
    assert!(resource.spec.other.contains_key("bpfLogLevel"));
    let layer = FelixLayer::from_resource(&resource).unwrap();
    let felix = FelixConfig::resolve(Some(&layer), None, &Default::default());
    assert_eq!(felix.health_port, 9199);
    assert_eq!(felix.health_host, "localhost");
    assert_eq!(felix.ipip_mtu, 1440);
    assert_eq!(felix.vxlan_mtu, 1410);
    assert_eq!(felix.vxlan_vni, 4097);
    assert_eq!(felix.vxlan_port, 8472);
    assert_eq!(felix.reporting_interval, Duration::ZERO);
    assert_eq!(felix.route_refresh_interval, Duration::from_secs(90));
    assert_eq!(felix.nat_port_range, Some((32768, 65535)));
    assert_eq!(
        felix.nat_outgoing_exclusions,
        NatOutgoingExclusions::IpPoolsAndHostIps
    );
    assert_eq!(felix.interface_prefixes, ["cali", "tap"]);
    assert!(felix.prometheus_metrics_enabled);
    assert_eq!(felix.prometheus_metrics_port, 9191);
    assert_eq!(
        felix.health_timeout_overrides["InternalDataplaneMainLoop"],
        Duration::from_secs(180)
    );
    assert_eq!(felix.route_table_ranges, [(65, 99)]);
}

#[test]
fn felix_layers_take_precedence_in_order() {
    let global: FelixConfiguration = round_trip("felixconfiguration.yaml");
    let node: FelixConfiguration = serde_json::from_value(serde_json::json!({
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "FelixConfiguration",
        "metadata": {"name": "node.worker-3"},
        "spec": {"healthPort": 9299, "vxlanMTU": 1350}
    }))
    .unwrap();
    let overrides = starling_model::FelixOverrides {
        health_port: Some(9399),
        health_enabled: Some(true),
        ..Default::default()
    };
    let global = FelixLayer::from_resource(&global).unwrap();
    let node = FelixLayer::from_resource(&node).unwrap();
    let felix = FelixConfig::resolve(Some(&global), Some(&node), &overrides);
    assert_eq!(felix.health_port, 9399, "environment beats resources");
    assert!(felix.health_enabled);
    assert_eq!(felix.vxlan_mtu, 1350, "node.<name> beats default");
    assert_eq!(felix.ipip_mtu, 1440, "default beats built-in");
    assert_eq!(felix.vxlan_mtu_v6, 0, "built-in default");
}

#[test]
fn kubernetes_node_annotations() {
    let k8s_node: k8s_openapi::api::core::v1::Node = round_trip("k8s-node.json");
    let node = calico_node_from_k8s(&k8s_node);
    assert_eq!(node.name, "worker-3");
    assert_eq!(node.ipv4_address.unwrap().to_string(), "10.0.1.13/24");
    assert_eq!(node.ipv6_address.unwrap().to_string(), "2001:db8:1::13/64");
    assert_eq!(
        node.ipv4_ipip_tunnel_addr,
        Some(Ipv4Addr::new(192, 168, 143, 64))
    );
    assert_eq!(
        node.ipv4_vxlan_tunnel_addr,
        Some(Ipv4Addr::new(192, 168, 143, 65))
    );
    assert_eq!(
        node.vxlan_tunnel_mac.unwrap().to_string(),
        "66:c2:1e:0f:71:a5"
    );
    assert_eq!(node.as_number, Some(AsNumber(65003)));
    assert!(node.is_route_reflector());
    assert_eq!(
        node.labels["rack"], "r1",
        "Kubernetes labels win over Calico labels"
    );
    assert_eq!(
        node.labels["route-reflector"], "true",
        "Calico labels are merged"
    );
    assert_eq!(
        node.internal_ips,
        [
            "10.0.1.13".parse::<IpAddr>().unwrap(),
            "2001:db8:1::13".parse().unwrap()
        ]
    );

    // Writing back: every field present is set, every empty one deleted.
    let changes = k8s_annotation_changes(&node);
    assert_eq!(
        changes["projectcalico.org/IPv4Address"].as_deref(),
        Some("10.0.1.13/24")
    );
    assert_eq!(
        changes["projectcalico.org/ASNumber"].as_deref(),
        Some("65003")
    );
    assert_eq!(changes["projectcalico.org/IPv6VXLANTunnelAddr"], None);
    let annotations = k8s_node.metadata.annotations.clone().unwrap();
    for (key, value) in &changes {
        assert_eq!(
            annotations.get(*key),
            value.as_ref(),
            "{key} differs after a round trip"
        );
    }
    let patch = k8s_annotation_patch(&node);
    assert_eq!(
        patch["metadata"]["annotations"]["projectcalico.org/VXLANTunnelMACAddrV6"],
        serde_json::Value::Null
    );
}

#[test]
fn invalid_node_annotations_are_ignored_one_by_one() {
    let mut k8s_node: k8s_openapi::api::core::v1::Node = round_trip("k8s-node.json");
    let annotations = k8s_node.metadata.annotations.as_mut().unwrap();
    annotations.insert(
        "projectcalico.org/IPv4Address".into(),
        "10.0.1.300/24".into(),
    );
    annotations.insert("projectcalico.org/ASNumber".into(), "not-a-number".into());
    annotations.insert("projectcalico.org/labels".into(), "{broken".into());
    let node = calico_node_from_k8s(&k8s_node);
    assert_eq!(node.ipv4_address, None);
    assert_eq!(node.as_number, None);
    assert_eq!(node.ipv6_address.unwrap().to_string(), "2001:db8:1::13/64");
    assert_eq!(node.labels["rack"], "r1");
    assert!(!node.labels.contains_key("route-reflector"));
}

#[test]
fn etcd_calico_node() {
    let resource: CalicoNodeResource = round_trip("etcd-node.json");
    let node = calico_node_from_v3(&resource);
    assert_eq!(node.name, "worker-4");
    assert_eq!(node.ipv4_address.unwrap().to_string(), "10.0.2.14/24");
    assert_eq!(node.as_number, Some(AsNumber(65004)));
    assert_eq!(
        node.ipv4_ipip_tunnel_addr,
        Some(Ipv4Addr::new(192, 168, 77, 0))
    );
    assert_eq!(
        node.ipv4_vxlan_tunnel_addr,
        Some(Ipv4Addr::new(192, 168, 77, 1))
    );
    assert_eq!(node.labels["rack"], "r2");
    assert_eq!(node.internal_ips, ["10.0.2.14".parse::<IpAddr>().unwrap()]);

    // Writing the same node back changes nothing; clearing a field removes it.
    let mut rewritten = resource.clone();
    update_v3_node(&mut rewritten, &node);
    assert_eq!(rewritten, resource);
    let mut cleared = node.clone();
    cleared.ipv4_vxlan_tunnel_addr = None;
    cleared.vxlan_tunnel_mac = None;
    update_v3_node(&mut rewritten, &cleared);
    let json = serde_json::to_value(&rewritten).unwrap();
    assert!(json["spec"].get("ipv4VXLANTunnelAddr").is_none());
    assert!(json["spec"].get("vxlanTunnelMACAddr").is_none());
    assert_eq!(json["spec"]["orchRefs"][0]["orchestrator"], "k8s");
}

#[test]
fn new_etcd_object_has_uid_and_timestamp_but_no_resource_version() {
    let created = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let object: V3Object<IPPoolSpec> = V3Object::new(
        "IPPool",
        "default-ipv4-ippool",
        IPPoolSpec {
            cidr: "192.168.0.0/16".into(),
            ..IPPoolSpec::default()
        },
        "uid-1".into(),
        created,
    );
    let json = serde_json::to_value(&object).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {
                "name": "default-ipv4-ippool",
                "uid": "uid-1",
                "creationTimestamp": "2026-01-02T03:04:05Z"
            },
            "spec": {"cidr": "192.168.0.0/16"}
        })
    );
    let mut read: V3Object<IPPoolSpec> = serde_json::from_value(serde_json::json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "p", "resourceVersion": "17", "generation": 3},
        "spec": {"cidr": "10.0.0.0/24"}
    }))
    .unwrap();
    read = read.without_server_fields();
    let json = serde_json::to_value(&read).unwrap();
    assert!(json["metadata"].get("resourceVersion").is_none());
    assert_eq!(json["metadata"]["generation"], 3);
}

#[test]
fn dotted_as_numbers_are_read_and_written_as_integers() {
    // Calico's clients accept "a.b" but store the integer (the CRD declares an int32).
    let spec: starling_model::wire::BGPPeerSpec =
        serde_json::from_value(serde_json::json!({"peerIP": "192.0.2.1", "asNumber": "1.10"}))
            .unwrap();
    assert_eq!(spec.as_number, Some(AsNumber(65546)));
    assert_eq!(serde_json::to_value(&spec).unwrap()["asNumber"], 65546);
}

#[test]
fn unknown_fields_are_tolerated() {
    let pool: IPPool = serde_json::from_value(serde_json::json!({
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "IPPool",
        "metadata": {"name": "future"},
        "spec": {"cidr": "10.1.0.0/16", "someFutureField": {"x": 1}},
        "status": {"conditions": [{"type": "Allocatable", "status": "True"}]}
    }))
    .unwrap();
    assert_eq!(IpPool::from_resource(&pool).unwrap().block_size, 26);
}

#[test]
fn a_node_without_calico_fields_deletes_every_annotation_and_bgp_section() {
    let empty = starling_model::CalicoNode {
        name: "bare".into(),
        ..Default::default()
    };
    let changes = k8s_annotation_changes(&empty);
    assert_eq!(changes.len(), 9);
    assert!(changes.values().all(Option::is_none));

    let mut annotations: std::collections::BTreeMap<String, String> = [
        (
            "projectcalico.org/IPv4Address".to_string(),
            "10.0.0.1/24".to_string(),
        ),
        ("unrelated".to_string(), "kept".to_string()),
    ]
    .into();
    starling::resources::node::apply_annotation_changes(&mut annotations, &changes);
    assert_eq!(annotations.keys().collect::<Vec<_>>(), ["unrelated"]);

    let mut resource: CalicoNodeResource = round_trip("etcd-node.json");
    update_v3_node(&mut resource, &empty);
    assert_eq!(
        resource.spec.bgp, None,
        "Calico leaves spec.bgp out when nothing is set"
    );
    assert_eq!(resource.metadata.labels, None);
    assert!(
        resource.spec.interfaces.is_some(),
        "unmodelled fields are kept"
    );
}
