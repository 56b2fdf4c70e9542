//! A table of invalid Calico resources: each must be rejected with an error that names the
//! resource kind, the object and the offending field.

use serde_json::{json, Value};
use starling_model::validate::bgp::{validate_bgp_configuration, validate_bgp_peer};
use starling_model::validate::felix::validate_felix_configuration;
use starling_model::validate::ippool::validate_ip_pool;
use starling_model::validate::reservation::validate_ip_reservation;
use starling_model::ValidationError;

fn parse<T: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> T {
    serde_json::from_value(spec)
        .unwrap_or_else(|error| panic!("{kind} {name}: spec does not parse: {error}"))
}

fn validate(kind: &str, name: &str, spec: Value) -> Result<(), ValidationError> {
    match kind {
        "IPPool" => validate_ip_pool(name, &parse(kind, name, spec), false).map(drop),
        "BGPPeer" => validate_bgp_peer(name, &parse(kind, name, spec)).map(drop),
        "BGPConfiguration" => validate_bgp_configuration(name, &parse(kind, name, spec)).map(drop),
        "IPReservation" => validate_ip_reservation(name, &parse(kind, name, spec)).map(drop),
        "FelixConfiguration" => {
            validate_felix_configuration(name, &parse(kind, name, spec)).map(drop)
        }
        other => panic!("no validator for {other}"),
    }
}

/// (kind, object name, spec, field the error must name)
fn invalid_resources() -> Vec<(&'static str, &'static str, Value, &'static str)> {
    vec![
        // IPPool (§1.1)
        // Selectors that do not parse (§10) are rejected with the field that holds them.
        (
            "IPPool",
            "bad-node-selector",
            json!({"cidr": "10.1.0.0/16", "nodeSelector": "rack =="}),
            "spec.nodeSelector",
        ),
        (
            "IPPool",
            "bad-namespace-selector",
            json!({"cidr": "10.1.0.0/16", "namespaceSelector": "team in {'a'"}),
            "spec.namespaceSelector",
        ),
        (
            "BGPPeer",
            "bad-peer-selector",
            json!({"peerSelector": "has(rr"}),
            "spec.peerSelector",
        ),
        (
            "BGPPeer",
            "bad-bgp-node-selector",
            json!({"nodeSelector": "a = 'b'", "peerIP": "192.0.2.1", "asNumber": 65000}),
            "spec.nodeSelector",
        ),
        (
            "IPPool",
            "not-a-cidr",
            json!({"cidr": "10.0.0.0"}),
            "spec.cidr",
        ),
        (
            "IPPool",
            "garbage-cidr",
            json!({"cidr": "ten/8"}),
            "spec.cidr",
        ),
        (
            "IPPool",
            "host-bits",
            json!({"cidr": "10.0.0.1/16"}),
            "spec.cidr",
        ),
        (
            "IPPool",
            "link-local",
            json!({"cidr": "169.254.0.0/16"}),
            "spec.cidr",
        ),
        (
            "IPPool",
            "covers-link-local",
            json!({"cidr": "169.0.0.0/8", "blockSize": 26}),
            "spec.cidr",
        ),
        (
            "IPPool",
            "v6-link-local",
            json!({"cidr": "fe80::/64"}),
            "spec.cidr",
        ),
        (
            "IPPool",
            "rack0",
            json!({"cidr": "10.0.0.0/16", "blockSize": 33}),
            "spec.blockSize",
        ),
        (
            "IPPool",
            "block-too-big",
            json!({"cidr": "10.0.0.0/16", "blockSize": 19}),
            "spec.blockSize",
        ),
        (
            "IPPool",
            "negative-block",
            json!({"cidr": "10.0.0.0/16", "blockSize": -1}),
            "spec.blockSize",
        ),
        (
            "IPPool",
            "v6-block-small",
            json!({"cidr": "fd00::/48", "blockSize": 115}),
            "spec.blockSize",
        ),
        (
            "IPPool",
            "v6-block-large",
            json!({"cidr": "fd00::/48", "blockSize": 129}),
            "spec.blockSize",
        ),
        (
            "IPPool",
            "smaller-than-block",
            json!({"cidr": "10.0.0.0/28"}),
            "spec.cidr",
        ),
        (
            "IPPool",
            "bad-ipip",
            json!({"cidr": "10.0.0.0/16", "ipipMode": "Sometimes"}),
            "spec.ipipMode",
        ),
        (
            "IPPool",
            "lowercase-vxlan",
            json!({"cidr": "10.0.0.0/16", "vxlanMode": "always"}),
            "spec.vxlanMode",
        ),
        (
            "IPPool",
            "ipip-on-v6",
            json!({"cidr": "fd00::/48", "ipipMode": "Always"}),
            "spec.ipipMode",
        ),
        (
            "IPPool",
            "both-encaps",
            json!({"cidr": "10.0.0.0/16", "ipipMode": "Always", "vxlanMode": "CrossSubnet"}),
            "spec.vxlanMode",
        ),
        (
            "IPPool",
            "legacy-bad-mode",
            json!({"cidr": "10.0.0.0/16", "ipip": {"enabled": true, "mode": "sometimes"}}),
            "spec.ipip.mode",
        ),
        (
            "IPPool",
            "legacy-ipip-and-vxlan",
            json!({"cidr": "10.0.0.0/16", "ipip": {"enabled": true}, "vxlanMode": "Always"}),
            "spec.vxlanMode",
        ),
        (
            "IPPool",
            "unknown-use",
            json!({"cidr": "10.0.0.0/16", "allowedUses": ["Workload", "Foo"]}),
            "spec.allowedUses[1]",
        ),
        (
            "IPPool",
            "empty-use",
            json!({"cidr": "10.0.0.0/16", "allowedUses": [""]}),
            "spec.allowedUses[0]",
        ),
        (
            "IPPool",
            "lb-with-workload",
            json!({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer", "Workload"]}),
            "spec.allowedUses",
        ),
        (
            "IPPool",
            "lb-with-vxlan",
            json!({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "vxlanMode": "Always"}),
            "spec.vxlanMode",
        ),
        (
            "IPPool",
            "lb-with-ipip",
            json!({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "ipipMode": "Always"}),
            "spec.ipipMode",
        ),
        (
            "IPPool",
            "lb-with-node-selector",
            json!({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "nodeSelector": "rack == 'a'"}),
            "spec.nodeSelector",
        ),
        (
            "IPPool",
            "lb-no-export",
            json!({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "disableBGPExport": true}),
            "spec.disableBGPExport",
        ),
        (
            "IPPool",
            "global-nodes",
            json!({"cidr": "10.0.0.0/16", "nodeSelector": "global()"}),
            "spec.nodeSelector",
        ),
        (
            "IPPool",
            "global-namespaces",
            json!({"cidr": "10.0.0.0/16", "namespaceSelector": "global()", "allowedUses": ["Workload"]}),
            "spec.namespaceSelector",
        ),
        (
            "IPPool",
            "namespaced-tunnel",
            json!({"cidr": "10.0.0.0/16", "namespaceSelector": "team == 'a'", "allowedUses": ["Workload", "Tunnel"]}),
            "spec.namespaceSelector",
        ),
        (
            "IPPool",
            "bad-assignment",
            json!({"cidr": "10.0.0.0/16", "assignmentMode": "Sometimes"}),
            "spec.assignmentMode",
        ),
        // BGPPeer (§1.8)
        (
            "BGPPeer",
            "node-and-selector",
            json!({"node": "a", "nodeSelector": "all()", "peerIP": "192.0.2.1", "asNumber": 65000}),
            "spec.nodeSelector",
        ),
        (
            "BGPPeer",
            "ip-and-selector",
            json!({"peerIP": "192.0.2.1", "peerSelector": "all()"}),
            "spec.peerSelector",
        ),
        (
            "BGPPeer",
            "no-target",
            json!({"asNumber": 65000}),
            "spec.peerIP",
        ),
        (
            "BGPPeer",
            "selector-with-as",
            json!({"peerSelector": "has(rr)", "asNumber": 65000}),
            "spec.asNumber",
        ),
        (
            "BGPPeer",
            "workloads-with-ip",
            json!({"localWorkloadSelector": "app == 'bgp'", "peerIP": "192.0.2.1", "asNumber": 65000}),
            "spec.peerIP",
        ),
        (
            "BGPPeer",
            "workloads-with-selector",
            json!({"localWorkloadSelector": "app == 'bgp'", "peerSelector": "all()", "asNumber": 65000}),
            "spec.peerSelector",
        ),
        (
            "BGPPeer",
            "workloads-without-as",
            json!({"localWorkloadSelector": "app == 'bgp'"}),
            "spec.asNumber",
        ),
        (
            "BGPPeer",
            "reachable-without-ip",
            json!({"peerSelector": "all()", "reachableBy": "10.0.0.1"}),
            "spec.reachableBy",
        ),
        (
            "BGPPeer",
            "reachable-by-name",
            json!({"peerIP": "192.0.2.1", "asNumber": 65000, "reachableBy": "gateway"}),
            "spec.reachableBy",
        ),
        (
            "BGPPeer",
            "both-next-hop",
            json!({"peerIP": "192.0.2.1", "asNumber": 65000, "keepOriginalNextHop": true, "nextHopMode": "Self"}),
            "spec.nextHopMode",
        ),
        (
            "BGPPeer",
            "bad-ip",
            json!({"peerIP": "300.1.1.1", "asNumber": 65000}),
            "spec.peerIP",
        ),
        (
            "BGPPeer",
            "v6-brackets-no-port",
            json!({"peerIP": "[2001:db8::1]", "asNumber": 65000}),
            "spec.peerIP",
        ),
        (
            "BGPPeer",
            "port-zero",
            json!({"peerIP": "192.0.2.1:0", "asNumber": 65000}),
            "spec.peerIP",
        ),
        (
            "BGPPeer",
            "port-too-big",
            json!({"peerIP": "192.0.2.1:70000", "asNumber": 65000}),
            "spec.peerIP",
        ),
        (
            "BGPPeer",
            "bad-next-hop",
            json!({"peerIP": "192.0.2.1", "asNumber": 65000, "nextHopMode": "Other"}),
            "spec.nextHopMode",
        ),
        (
            "BGPPeer",
            "bad-source",
            json!({"peerIP": "192.0.2.1", "asNumber": 65000, "sourceAddress": "Host"}),
            "spec.sourceAddress",
        ),
        (
            "BGPPeer",
            "unitless-keepalive",
            json!({"peerIP": "192.0.2.1", "asNumber": 65000, "keepaliveTime": "20"}),
            "spec.keepaliveTime",
        ),
        (
            "BGPPeer",
            "negative-restart",
            json!({"peerIP": "192.0.2.1", "asNumber": 65000, "maxRestartTime": "-1s"}),
            "spec.maxRestartTime",
        ),
        (
            "BGPPeer",
            "ttl-too-big",
            json!({"peerIP": "192.0.2.1", "asNumber": 65000, "ttlSecurity": 256}),
            "spec.ttlSecurity",
        ),
        (
            "BGPPeer",
            "bad-reverse",
            json!({"peerSelector": "all()", "reversePeering": "Sometimes"}),
            "spec.reversePeering",
        ),
        (
            "BGPPeer",
            "password-without-key",
            json!({"peerIP": "192.0.2.1", "asNumber": 65000, "password": {"secretKeyRef": {"name": "s", "key": ""}}}),
            "spec.password.secretKeyRef.key",
        ),
        (
            "BGPPeer",
            "password-without-name",
            json!({"peerIP": "192.0.2.1", "asNumber": 65000, "password": {"secretKeyRef": {"key": "k"}}}),
            "spec.password.secretKeyRef.name",
        ),
        // BGPConfiguration (§1.7)
        (
            "BGPConfiguration",
            "default",
            json!({"listenPort": 0}),
            "spec.listenPort",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"listenPort": 70000}),
            "spec.listenPort",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"logSeverityScreen": "Verbose"}),
            "spec.logSeverityScreen",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"communities": [{"name": "c", "value": "65536:1"}]}),
            "spec.communities[0].value",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"communities": [{"name": "c", "value": "1:2:3:4"}]}),
            "spec.communities[0].value",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"communities": [{"name": "", "value": "1:2"}]}),
            "spec.communities[0].name",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"communities": [{"name": "c", "value": "1:2"}, {"name": "c", "value": "1:3"}]}),
            "spec.communities[1].name",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"communities": [{"name": "c", "value": "1:2"}],
                   "prefixAdvertisements": [{"cidr": "10.0.0.0/8", "communities": ["c", "undefined"]}]}),
            "spec.prefixAdvertisements[0].communities[1]",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"prefixAdvertisements": [{"cidr": "bad", "communities": []}]}),
            "spec.prefixAdvertisements[0].cidr",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"serviceClusterIPs": [{"cidr": "10.96.0.0/12"}, {"cidr": "10.96.0.0/33"}]}),
            "spec.serviceClusterIPs[1].cidr",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"serviceLoadBalancerIPs": [{"cidr": "nope"}]}),
            "spec.serviceLoadBalancerIPs[0].cidr",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"nodeToNodeMeshEnabled": false, "nodeMeshPassword": {"secretKeyRef": {"name": "s", "key": "k"}}}),
            "spec.nodeMeshPassword",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"nodeToNodeMeshEnabled": false, "nodeMeshMaxRestartTime": "120s"}),
            "spec.nodeMeshMaxRestartTime",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"nodeMeshMaxRestartTime": "2 minutes"}),
            "spec.nodeMeshMaxRestartTime",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"bindMode": "All"}),
            "spec.bindMode",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"localWorkloadPeeringIPV4": "fe80::1"}),
            "spec.localWorkloadPeeringIPV4",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"programClusterRoutes": "Maybe"}),
            "spec.programClusterRoutes",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"serviceLoadBalancerAggregation": "On"}),
            "spec.serviceLoadBalancerAggregation",
        ),
        (
            "BGPConfiguration",
            "default",
            json!({"ipv4NormalRoutePriority": 0}),
            "spec.ipv4NormalRoutePriority",
        ),
        // IPReservation (§1.6)
        (
            "IPReservation",
            "gateways",
            json!({"reservedCIDRs": ["10.0.0.1/24"]}),
            "spec.reservedCIDRs[0]",
        ),
        (
            "IPReservation",
            "gateways",
            json!({"reservedCIDRs": ["10.0.0.0/24", "nonsense"]}),
            "spec.reservedCIDRs[1]",
        ),
        // FelixConfiguration (§1.10)
        (
            "FelixConfiguration",
            "default",
            json!({"mtuIfacePattern": "^(eth"}),
            "spec.mtuIfacePattern",
        ),
        (
            "FelixConfiguration",
            "default",
            json!({"vxlanPort": 0}),
            "spec.vxlanPort",
        ),
        (
            "FelixConfiguration",
            "default",
            json!({"vxlanVNI": 16777216}),
            "spec.vxlanVNI",
        ),
        (
            "FelixConfiguration",
            "default",
            json!({"ipipMTU": 70000}),
            "spec.ipipMTU",
        ),
        (
            "FelixConfiguration",
            "default",
            json!({"routeRefreshInterval": "soon"}),
            "spec.routeRefreshInterval",
        ),
        (
            "FelixConfiguration",
            "default",
            json!({"natPortRange": "9:1"}),
            "spec.natPortRange",
        ),
        (
            "FelixConfiguration",
            "default",
            json!({"healthPort": 65536}),
            "spec.healthPort",
        ),
        (
            "FelixConfiguration",
            "default",
            json!({"routeSource": "BGP"}),
            "spec.routeSource",
        ),
        (
            "FelixConfiguration",
            "default",
            json!({"natOutgoingAddress": "fd00::1"}),
            "spec.natOutgoingAddress",
        ),
        (
            "FelixConfiguration",
            "node.worker-1",
            json!({"routeTableRanges": [{"min": 100, "max": 99}]}),
            "spec.routeTableRanges[0]",
        ),
        (
            "FelixConfiguration",
            "default",
            json!({"deviceRouteProtocol": 256}),
            "spec.deviceRouteProtocol",
        ),
        (
            "FelixConfiguration",
            "default",
            json!({"ipForwarding": "Yes"}),
            "spec.ipForwarding",
        ),
    ]
}

#[test]
fn every_invalid_resource_is_rejected_naming_its_field() {
    let cases = invalid_resources();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (kind, name, spec, field) in cases {
        match validate(kind, name, spec.clone()) {
            Ok(()) => failures.push(format!("{kind} {name} {spec}: accepted")),
            Err(error) => {
                let text = error.to_string();
                let prefix = format!("{kind} {name:?}: {field} ");
                if error.kind != kind
                    || error.name != name
                    || error.field != field
                    || !text.starts_with(&prefix)
                {
                    failures.push(format!(
                        "{kind} {name} {spec}: expected field {field}, got {text:?}"
                    ));
                }
                if error.reason.trim().is_empty() {
                    failures.push(format!("{kind} {name}: empty reason"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
