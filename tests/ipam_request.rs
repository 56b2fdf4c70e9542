//! Pod annotations → allocation request: precedence table and every error case.

use std::collections::BTreeMap;

use starling_ipam::pools::PoolReference;
use starling_ipam::request::{
    allocation_request, pair_floating_ips, AllocationMode, CniIpamConfig, FamilyRequest, PoolSource,
};

mod ipam_support;
use ipam_support::pool;

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (format!("cni.projectcalico.org/{k}"), v.to_string()))
        .collect()
}

fn pools() -> Vec<starling_model::IpPool> {
    let mut off = pool("off", "10.99.0.0/16", 26);
    off.disabled = true;
    vec![
        pool("pod-pool", "10.1.0.0/16", 26),
        pool("ns-pool", "10.2.0.0/16", 26),
        pool("cni-pool", "10.3.0.0/16", 26),
        pool("v6-pool", "fd00:1::/64", 122),
        off,
    ]
}

fn cni(ipv4_pools: &[&str]) -> CniIpamConfig {
    CniIpamConfig {
        ipv4_pools: ipv4_pools.iter().map(|s| s.to_string()).collect(),
        ..CniIpamConfig::default()
    }
}

fn v4(mode: &AllocationMode) -> &FamilyRequest {
    match mode {
        AllocationMode::Automatic { ipv4: Some(r), .. } => r,
        other => panic!("expected automatic v4, got {other:?}"),
    }
}

#[test]
fn pool_precedence_table() {
    let name = |n: &str| PoolReference::Name(n.to_string());
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        Vec<(&str, &str)>,
        Vec<(&str, &str)>,
        Vec<&str>,
        PoolSource,
        Vec<PoolReference>,
    )> = vec![
        (
            "pod beats namespace and CNI",
            vec![("ipv4pools", r#"["pod-pool"]"#)],
            vec![("ipv4pools", r#"["ns-pool"]"#)],
            vec!["cni-pool"],
            PoolSource::PodAnnotation,
            vec![name("pod-pool")],
        ),
        (
            "namespace beats CNI",
            vec![],
            vec![("ipv4pools", r#"["ns-pool"]"#)],
            vec!["cni-pool"],
            PoolSource::NamespaceAnnotation,
            vec![name("ns-pool")],
        ),
        (
            "CNI beats nodeSelector",
            vec![],
            vec![],
            vec!["cni-pool"],
            PoolSource::CniConfig,
            vec![name("cni-pool")],
        ),
        (
            "nothing explicit: nodeSelector",
            vec![],
            vec![],
            vec![],
            PoolSource::NodeSelector,
            vec![],
        ),
        (
            "CIDRs are accepted as pool references",
            vec![("ipv4pools", r#"["10.1.0.0/16"]"#)],
            vec![],
            vec![],
            PoolSource::PodAnnotation,
            vec![PoolReference::Cidr("10.1.0.0/16".parse().unwrap())],
        ),
    ];
    for (what, pod, namespace, cni_pools, source, expected) in cases {
        let request = allocation_request(&map(&pod), &map(&namespace), &cni(&cni_pools), &pools())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let family = v4(&request.mode);
        assert_eq!(family.source, source, "{what}");
        assert_eq!(family.pools, expected, "{what}");
    }
}

#[test]
fn specific_no_ipam_floating_and_families() {
    let mut config = cni(&[]);
    config.ip_addrs_no_ipam = true;
    config.floating_ips = true;
    let r = allocation_request(
        &map(&[("ipAddrs", r#"["10.1.2.3","fd00:1::5"]"#)]),
        &map(&[]),
        &config,
        &pools(),
    )
    .unwrap();
    assert_eq!(
        r.mode,
        AllocationMode::Specific(vec![
            "10.1.2.3".parse().unwrap(),
            "fd00:1::5".parse().unwrap()
        ])
    );
    let r = allocation_request(
        &map(&[("ipAddrsNoIpam", r#"["192.168.7.7"]"#)]),
        &map(&[]),
        &config,
        &pools(),
    )
    .unwrap();
    assert_eq!(
        r.mode,
        AllocationMode::NoIpam(vec!["192.168.7.7/32".parse().unwrap()])
    );
    let r = allocation_request(
        &map(&[("floatingIPs", r#"["1.2.3.4"]"#)]),
        &map(&[]),
        &config,
        &pools(),
    )
    .unwrap();
    assert_eq!(
        r.floating_ips,
        vec!["1.2.3.4".parse::<std::net::IpAddr>().unwrap()]
    );
    let r = allocation_request(
        &map(&[("ipFamilies", r#"["IPv6"]"#)]),
        &map(&[]),
        &config,
        &pools(),
    )
    .unwrap();
    match r.mode {
        AllocationMode::Automatic {
            ipv4: None,
            ipv6: Some(v6),
        } => assert_eq!(v6.source, PoolSource::NodeSelector),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_error_names_the_annotation_and_the_problem() {
    let mut features_on = cni(&[]);
    features_on.ip_addrs_no_ipam = true;
    features_on.floating_ips = true;
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        Vec<(&str, &str)>,
        Vec<(&str, &str)>,
        CniIpamConfig,
        &str,
        &str,
    )> = vec![
        (
            "both ipAddrs forms",
            vec![
                ("ipAddrs", r#"["10.1.0.1"]"#),
                ("ipAddrsNoIpam", r#"["10.1.0.2"]"#),
            ],
            vec![],
            features_on.clone(),
            "ipAddrs",
            "together with",
        ),
        (
            "bad JSON in pools",
            vec![("ipv4pools", "pod-pool")],
            vec![],
            cni(&[]),
            "ipv4pools",
            "not a JSON list",
        ),
        (
            "bad JSON in namespace pools",
            vec![],
            vec![("ipv4pools", "[1,2]")],
            cni(&[]),
            "ipv4pools",
            "not a JSON list",
        ),
        (
            "bad address",
            vec![("ipAddrs", r#"["10.1.0.300"]"#)],
            vec![],
            cni(&[]),
            "ipAddrs",
            "not an IP address",
        ),
        (
            "address outside pools",
            vec![("ipAddrs", r#"["172.16.0.1"]"#)],
            vec![],
            cni(&[]),
            "ipAddrs",
            "outside every IP pool",
        ),
        (
            "address in disabled pool",
            vec![("ipAddrs", r#"["10.99.0.1"]"#)],
            vec![],
            cni(&[]),
            "ipAddrs",
            "disabled",
        ),
        (
            "two v4 addresses",
            vec![("ipAddrs", r#"["10.1.0.1","10.1.0.2"]"#)],
            vec![],
            cni(&[]),
            "ipAddrs",
            "more than one IPv4",
        ),
        (
            "empty ipAddrs",
            vec![("ipAddrs", "[]")],
            vec![],
            cni(&[]),
            "ipAddrs",
            "no addresses",
        ),
        (
            "missing pool",
            vec![("ipv4pools", r#"["nope"]"#)],
            vec![],
            cni(&[]),
            "pod annotation cni.projectcalico.org/ipv4pools",
            "nope does not exist",
        ),
        (
            "disabled pool",
            vec![],
            vec![("ipv4pools", r#"["off"]"#)],
            cni(&[]),
            "namespace annotation cni.projectcalico.org/ipv4pools",
            "off is disabled",
        ),
        (
            "wrong family pool",
            vec![("ipv4pools", r#"["v6-pool"]"#)],
            vec![],
            cni(&[]),
            "ipv4pools",
            "not an IPv4 pool",
        ),
        (
            "missing pool in CNI config",
            vec![],
            vec![],
            cni(&["ghost"]),
            "CNI config ipam.ipv4_pools",
            "ghost does not exist",
        ),
        (
            "no-IPAM feature off",
            vec![("ipAddrsNoIpam", r#"["10.1.0.2"]"#)],
            vec![],
            cni(&[]),
            "ipAddrsNoIpam",
            "feature_control.ip_addrs_no_ipam",
        ),
        (
            "floating IPs feature off",
            vec![("floatingIPs", r#"["1.2.3.4"]"#)],
            vec![],
            cni(&[]),
            "floatingIPs",
            "feature_control.floating_ips",
        ),
        (
            "bad floating IP",
            vec![("floatingIPs", r#"["x"]"#)],
            vec![],
            features_on.clone(),
            "floatingIPs",
            "not an IP address",
        ),
        (
            "unknown family",
            vec![("ipFamilies", r#"["IPv5"]"#)],
            vec![],
            cni(&[]),
            "ipFamilies",
            "not IPv4 or IPv6",
        ),
        (
            "no family",
            vec![("ipFamilies", "[]")],
            vec![],
            cni(&[]),
            "ipFamilies",
            "no IP family",
        ),
    ];
    for (what, pod, namespace, config, source, problem) in cases {
        let error =
            allocation_request(&map(&pod), &map(&namespace), &config, &pools()).expect_err(what);
        let text = error.to_string();
        assert!(text.contains(source), "{what}: {text:?} lacks {source:?}");
        assert!(text.contains(problem), "{what}: {text:?} lacks {problem:?}");
    }
    let mut neither = cni(&[]);
    neither.assign_ipv4 = false;
    assert!(allocation_request(&map(&[]), &map(&[]), &neither, &pools()).is_err());
}

#[test]
fn pod_handle_and_attributes_like_calico_cni() {
    use chrono::TimeZone;
    use starling_ipam::request::{pod_attributes, pod_handle_id};
    assert_eq!(
        pod_handle_id("k8s-pod-network", "abc123\rjunk"),
        "k8s-pod-network.abc123"
    );
    let at = chrono::Utc.with_ymd_and_hms(2025, 6, 1, 10, 0, 0).unwrap();
    let attributes = pod_attributes("node-a", "default", "web-1", at);
    assert_eq!(attributes["timestamp"], "2025-06-01 10:00:00 +0000 UTC");
    assert_eq!(attributes["node"], "node-a");
    assert_eq!(attributes["namespace"], "default");
    assert_eq!(attributes["pod"], "web-1");
    let later = at + chrono::Duration::nanoseconds(123_450_000);
    assert_eq!(
        pod_attributes("n", "ns", "p", later)["timestamp"],
        "2025-06-01 10:00:00.12345 +0000 UTC"
    );
}

#[test]
fn family_requests_resolve_to_pools() {
    use starling_ipam::pools::IpFamily;
    use starling_ipam::request::pools_for;
    let all = pools();
    let request = allocation_request(
        &map(&[("ipv4pools", r#"["cni-pool"]"#)]),
        &map(&[]),
        &cni(&[]),
        &all,
    )
    .unwrap();
    let chosen = pools_for(
        v4(&request.mode),
        IpFamily::V4,
        &all,
        &ipam_support::node("n"),
        None,
    )
    .unwrap();
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].name, "cni-pool");
    let open = allocation_request(&map(&[]), &map(&[]), &cni(&[]), &all).unwrap();
    let chosen = pools_for(
        v4(&open.mode),
        IpFamily::V4,
        &all,
        &ipam_support::node("n"),
        None,
    )
    .unwrap();
    let names: Vec<&str> = chosen.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["cni-pool", "ns-pool", "pod-pool"],
        "every enabled v4 pool, by name"
    );
}

#[test]
fn floating_ips_pair_with_the_pods_address_of_their_family() {
    let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
    let pools = pools();
    let pairs = pair_floating_ips(
        &[ip("10.2.200.1"), ip("fd00:1::ff")],
        &[ip("10.1.0.5"), ip("fd00:1::5")],
        &pools,
    )
    .unwrap();
    assert_eq!(
        pairs
            .iter()
            .map(|nat| (nat.internal, nat.external))
            .collect::<Vec<_>>(),
        vec![
            (ip("10.1.0.5"), ip("10.2.200.1")),
            (ip("fd00:1::5"), ip("fd00:1::ff"))
        ]
    );
    for (floating, problem) in [
        ("192.0.2.1", "192.0.2.1 is outside every IP pool"),
        (
            "fd00:1::9",
            "fd00:1::9 is an IPv6 address and the pod has none",
        ),
        ("10.1.0.5", "10.1.0.5 is the pod's own address"),
    ] {
        let error = pair_floating_ips(&[ip(floating)], &[ip("10.1.0.5")], &pools).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("cni.projectcalico.org/floatingIPs: {problem}")
        );
    }
}
