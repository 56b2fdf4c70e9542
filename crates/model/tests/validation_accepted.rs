//! Validation beyond the rejection table: the documented error text, valid edge cases that
//! must be accepted, and the policy for overlapping pools.

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

#[test]
fn error_display_matches_the_documented_form() {
    let error = validate(
        "IPPool",
        "rack0",
        json!({"cidr": "10.0.0.0/16", "blockSize": 33}),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"IPPool "rack0": spec.blockSize 33 is out of range 20..32 for IPv4"#
    );
    let error = validate(
        "IPPool",
        "v6",
        json!({"cidr": "fd00::/48", "blockSize": 112}),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"IPPool "v6": spec.blockSize 112 is out of range 116..128 for IPv6"#
    );
    let error = validate("IPPool", "p", json!({"cidr": "10.0.0.1/16"})).unwrap_err();
    assert!(
        error.to_string().contains("10.0.0.0/16"),
        "suggests the masked form: {error}"
    );
}

#[test]
fn valid_edge_cases_are_accepted() {
    let accepted = [
        ("IPPool", json!({"cidr": "10.0.0.0/28", "disabled": true})),
        ("IPPool", json!({"cidr": "10.0.0.0/26", "blockSize": 26})),
        ("IPPool", json!({"cidr": "10.0.0.0/16", "blockSize": 0})),
        (
            "IPPool",
            json!({"cidr": "10.0.0.0/16", "ipipMode": "", "vxlanMode": "Always"}),
        ),
        (
            "IPPool",
            json!({"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "nodeSelector": "all()"}),
        ),
        (
            "IPPool",
            json!({"cidr": "10.0.0.0/16", "namespaceSelector": "team == 'a'", "allowedUses": ["Workload"]}),
        ),
        (
            "IPPool",
            json!({"cidr": "fd00::/48", "vxlanMode": "CrossSubnet"}),
        ),
        (
            "BGPPeer",
            json!({"peerIP": "192.0.2.1:1179", "asNumber": 65000}),
        ),
        ("BGPPeer", json!({"peerSelector": "all()", "asNumber": 0})),
        (
            "BGPPeer",
            json!({"localWorkloadSelector": "app == 'bgp'", "asNumber": 65001}),
        ),
        (
            "BGPPeer",
            json!({"peerIP": "192.0.2.1", "keepOriginalNextHop": true}),
        ),
        (
            "BGPConfiguration",
            json!({"logSeverityScreen": "warning", "listenPort": 65535}),
        ),
        (
            "BGPConfiguration",
            json!({"prefixAdvertisements": [{"cidr": "10.0.0.0/8", "communities": ["4294967295:0:1"]}]}),
        ),
        ("IPReservation", json!({"reservedCIDRs": []})),
        ("FelixConfiguration", json!({"natPortRange": 5000})),
    ];
    for (kind, spec) in accepted {
        if let Err(error) = validate(kind, "ok", spec.clone()) {
            panic!("{kind} {spec} rejected: {error}");
        }
    }
}

fn pool(name: &str, cidr: &str) -> starling_model::IpPool {
    validate_ip_pool(name, &parse("IPPool", name, json!({"cidr": cidr})), false).unwrap()
}

#[test]
fn overlapping_pools_are_reported_and_resolved_by_name() {
    use starling_model::validate::{find_overlaps, resolve_overlaps, PoolOverlap};
    let pools = vec![
        pool("zeta", "10.0.0.0/16"),
        pool("alpha", "10.0.128.0/17"),
        pool("beta", "10.1.0.0/16"),
        pool("gamma", "10.0.64.0/18"),
        pool("v6", "fd00::/48"),
    ];
    assert_eq!(
        find_overlaps(&pools),
        [
            ("alpha".to_string(), "zeta".to_string()),
            ("gamma".to_string(), "zeta".to_string()),
        ]
    );
    let (kept, ignored) = resolve_overlaps(&pools);
    let kept_names: Vec<&str> = kept.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(kept_names, ["alpha", "beta", "gamma", "v6"]);
    assert_eq!(
        ignored,
        [PoolOverlap {
            kept: "alpha".into(),
            ignored: "zeta".into()
        }]
    );
    // The input order does not matter.
    let mut reversed = pools.clone();
    reversed.reverse();
    assert_eq!(resolve_overlaps(&reversed), (kept, ignored));
}
