//! Service advertisement decisions (reference §6.7): which /32s a node advertises for which
//! Services and endpoints, and that each event reports exactly the routes that changed.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use starling_calc::services::{
    LocalEndpoints, RouteChanges, ServiceAdvertiser, ServiceFacts, ServiceSettings, ServiceType,
    SliceFacts, EXCLUDE_FROM_LOAD_BALANCERS_LABEL,
};
use starling_model::{BgpConfig, CalicoNode};

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn settings() -> ServiceSettings {
    ServiceSettings {
        cluster_cidrs: vec![net("10.96.0.0/12")],
        external_cidrs: vec![net("192.0.2.0/24"), net("198.51.100.7/32")],
        load_balancer_cidrs: vec![net("203.0.113.0/24")],
        load_balancer_aggregation: true,
        excluded: false,
    }
}

fn service(kind: ServiceType, local: bool) -> ServiceFacts {
    ServiceFacts {
        service_type: kind,
        cluster_ips: vec![ip("10.96.0.10")],
        external_ips: vec![ip("192.0.2.5")],
        load_balancer_ips: vec![ip("203.0.113.9")],
        external_traffic_local: local,
        internal_traffic_local: false,
    }
}

fn slice(service: &str, here: bool) -> SliceFacts {
    SliceFacts {
        service: service.to_string(),
        local: LocalEndpoints {
            ipv4: here,
            ipv6: false,
        },
    }
}

fn routes(advertiser: &ServiceAdvertiser) -> Vec<String> {
    advertiser.routes().map(ToString::to_string).collect()
}

fn sorted(mut changes: RouteChanges) -> RouteChanges {
    changes.added.sort();
    changes.removed.sort();
    changes
}

#[test]
fn global_ranges_come_from_the_configuration_and_respect_exclusion_and_aggregation() {
    let mut config = BgpConfig {
        service_cluster_ips: vec![net("10.96.0.0/12")],
        service_external_ips: vec![net("192.0.2.0/24")],
        service_load_balancer_ips: vec![net("203.0.113.0/24")],
        ..BgpConfig::default()
    };
    let mut node = CalicoNode::default();
    let all = ServiceSettings::new(&config, &node);
    assert!(all.any_configured());
    assert_eq!(
        all.global_routes(),
        vec![
            net("10.96.0.0/12"),
            net("192.0.2.0/24"),
            net("203.0.113.0/24")
        ]
    );
    config.service_load_balancer_aggregation = false;
    let disaggregated = ServiceSettings::new(&config, &node);
    assert_eq!(
        disaggregated.global_routes(),
        vec![net("10.96.0.0/12"), net("192.0.2.0/24")],
        "without aggregation the load-balancer range is advertised per address"
    );
    assert_eq!(disaggregated.reject_cidrs().len(), 3);
    node.labels.insert(
        EXCLUDE_FROM_LOAD_BALANCERS_LABEL.to_string(),
        "true".to_string(),
    );
    let excluded = ServiceSettings::new(&config, &node);
    assert!(excluded.global_routes().is_empty());
    assert_eq!(
        excluded.reject_cidrs().len(),
        3,
        "an excluded node still never installs learned service routes"
    );
    assert!(!ServiceSettings::default().any_configured());
}

#[test]
fn local_policy_follows_the_endpoint() {
    let mut advertiser = ServiceAdvertiser::new(settings());
    assert!(advertiser
        .put_service("default/web", service(ServiceType::LoadBalancer, true))
        .is_empty());
    // An endpoint on another node: nothing here.
    assert!(advertiser
        .put_slice("default/web-abc", slice("default/web", false))
        .is_empty());
    // The endpoint moves here: cluster IP, allowed external IP and LB IP are advertised.
    let changes = sorted(advertiser.put_slice("default/web-abc", slice("default/web", true)));
    assert_eq!(
        changes.added,
        vec![
            net("10.96.0.10/32"),
            net("192.0.2.5/32"),
            net("203.0.113.9/32")
        ]
    );
    assert!(changes.removed.is_empty());
    // A second slice with a local endpoint changes nothing; losing one of two keeps them.
    assert!(advertiser
        .put_slice("default/web-def", slice("default/web", true))
        .is_empty());
    assert!(advertiser.delete_slice("default/web-abc").is_empty());
    // The last local endpoint leaves: everything is withdrawn.
    let changes = sorted(advertiser.put_slice("default/web-def", slice("default/web", false)));
    assert_eq!(changes.removed.len(), 3);
    assert!(routes(&advertiser).is_empty());
}

#[test]
fn cluster_policy_advertises_only_single_entries_and_disaggregated_load_balancers() {
    let mut advertiser = ServiceAdvertiser::new(settings());
    let mut facts = service(ServiceType::LoadBalancer, false);
    facts.external_ips = vec![ip("192.0.2.5"), ip("198.51.100.7"), ip("8.8.8.8")];
    let changes = advertiser.put_service("default/web", facts.clone());
    assert_eq!(
        changes.added,
        vec![net("198.51.100.7/32")],
        "only the single-address entry is advertised per address; 8.8.8.8 is not allowed"
    );
    let mut disaggregated = settings();
    disaggregated.load_balancer_aggregation = false;
    let changes = advertiser.set_settings(disaggregated);
    assert_eq!(changes.added, vec![net("203.0.113.9/32")]);
    assert!(changes.removed.is_empty());
    // A ClusterIP Service never advertises load-balancer addresses.
    facts.service_type = ServiceType::ClusterIp;
    let changes = advertiser.put_service("default/web", facts);
    assert_eq!(changes.removed, vec![net("203.0.113.9/32")]);
}

#[test]
fn internal_local_policy_advertises_the_cluster_ip_only() {
    let mut advertiser = ServiceAdvertiser::new(settings());
    let mut facts = service(ServiceType::ClusterIp, false);
    facts.internal_traffic_local = true;
    advertiser.put_slice("default/dns-1", slice("default/dns", true));
    let changes = advertiser.put_service("default/dns", facts);
    assert_eq!(changes.added, vec![net("10.96.0.10/32")]);
    // Without serviceClusterIPs, cluster IPs are not advertised at all.
    let mut settings = settings();
    settings.cluster_cidrs.clear();
    let changes = advertiser.set_settings(settings);
    assert_eq!(changes.removed, vec![net("10.96.0.10/32")]);
}

#[test]
fn headless_external_name_excluded_nodes_and_wrong_families_advertise_nothing() {
    let mut advertiser = ServiceAdvertiser::new(settings());
    advertiser.put_slice("default/a-1", slice("default/a", true));
    let mut headless = service(ServiceType::ClusterIp, true);
    headless.cluster_ips.clear();
    assert!(advertiser.put_service("default/a", headless).is_empty());
    assert!(advertiser
        .put_service("default/a", service(ServiceType::Other, true))
        .is_empty());
    // The local endpoint is IPv6 only: the IPv4 addresses stay unadvertised.
    advertiser.put_slice(
        "default/a-1",
        SliceFacts {
            service: "default/a".to_string(),
            local: LocalEndpoints {
                ipv4: false,
                ipv6: true,
            },
        },
    );
    assert!(advertiser
        .put_service("default/a", service(ServiceType::LoadBalancer, true))
        .is_empty());
    advertiser.put_slice("default/a-1", slice("default/a", true));
    assert_eq!(routes(&advertiser).len(), 3);
    let mut excluded = settings();
    excluded.excluded = true;
    assert_eq!(advertiser.set_settings(excluded).removed.len(), 3);
}

#[test]
fn shared_addresses_are_reference_counted() {
    let mut advertiser = ServiceAdvertiser::new(settings());
    let mut one = service(ServiceType::NodePort, true);
    one.cluster_ips = vec![ip("10.96.0.1")];
    let mut two = one.clone();
    two.cluster_ips = vec![ip("10.96.0.2")];
    advertiser.put_slice("ns/one-1", slice("ns/one", true));
    advertiser.put_slice("ns/two-1", slice("ns/two", true));
    advertiser.put_service("ns/one", one);
    let changes = advertiser.put_service("ns/two", two);
    assert_eq!(
        changes.added,
        vec![net("10.96.0.2/32")],
        "the external IP both share is already advertised"
    );
    assert_eq!(
        advertiser.delete_service("ns/one").removed,
        vec![net("10.96.0.1/32")]
    );
    assert_eq!(advertiser.routes_of("ns/two").len(), 2);
    let changes = sorted(advertiser.delete_service("ns/two"));
    assert_eq!(
        changes.removed,
        vec![net("10.96.0.2/32"), net("192.0.2.5/32")]
    );
}

#[test]
fn a_relist_reports_only_the_difference() {
    let mut advertiser = ServiceAdvertiser::new(settings());
    advertiser.put_slice("ns/a-1", slice("ns/a", true));
    advertiser.put_service("ns/a", service(ServiceType::LoadBalancer, true));
    advertiser.put_service("ns/gone", service(ServiceType::LoadBalancer, false));
    // The relist keeps ns/a unchanged and drops ns/gone, which advertised nothing here.
    let relisted: HashMap<String, ServiceFacts> =
        [("ns/a".to_string(), service(ServiceType::LoadBalancer, true))].into();
    assert!(advertiser.replace_services(relisted).is_empty());
    // A relist of slices without ns/a's local slice withdraws its routes, once each.
    let changes = advertiser.replace_slices(HashMap::new());
    assert_eq!(changes.removed.len(), 3);
    assert!(changes.added.is_empty());
}
