//! `starling ipam check` on a running lab: Starling's CNI writes the WorkloadEndpoint of every
//! pod and each node's tunnel address is recorded on its Node, so a healthy lab has no problem;
//! a pod whose endpoint is deleted by hand is reported as exactly one leak naming its handle and
//! address.

use std::time::Duration;

use starling::datastore::endpoints;
use starling::lab::{self, topology, Mode};
use starling_model::endpoint::k8s_endpoint_name;

use super::requirements::require_root;
use super::{logs, Lab};

/// The problem lines of a report: indented lines other than the top-nodes table's
/// `<node>: <count>`.
fn problems(report: &str) -> Vec<&str> {
    let top_node = |line: &str| {
        line.split_once(": ").is_some_and(|(node, count)| {
            !node.contains(' ') && !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit())
        })
    };
    report
        .lines()
        .filter(|line| line.starts_with("  "))
        .map(str::trim)
        .filter(|line| !top_node(line))
        .collect()
}

#[test]
fn ipam_check_is_clean_and_names_a_pod_without_endpoint() {
    if !require_root("ipam_check_is_clean_and_names_a_pod_without_endpoint") {
        return;
    }
    let lab = Lab::up("e2eipam", Mode::Vxlan, 3, 2);
    // Healthy first: every daemon has its tunnel address and every pod its route.
    lab.assert_full_matrix(Duration::from_secs(30));
    let (report, clean) = lab::ipam_check(&lab.options).unwrap();
    eprintln!("ipam check on a healthy lab:\n{report}");
    assert!(
        clean && report.contains("found 0 problems"),
        "a healthy lab has problems:\n{report}\n{}",
        logs(&lab.options, lab.state.nodes)
    );
    // 6 pods and 3 VXLAN tunnel addresses.
    assert!(
        report.contains("with 9 allocations"),
        "expected 6 pod and 3 tunnel addresses:\n{report}"
    );

    let pod = &lab.state.pods[0];
    let name = k8s_endpoint_name(&topology::node_name(pod.node), &pod.name(), "eth0").unwrap();
    let names = lab.names();
    let deleted = lab::etcd::delete(
        &names,
        &lab.state.etcd_endpoints,
        &endpoints::key("default", &name),
    )
    .unwrap();
    assert!(deleted, "the lab wrote no WorkloadEndpoint {name}");
    let (report, clean) = lab::ipam_check(&lab.options).unwrap();
    eprintln!("ipam check after deleting {name}:\n{report}");
    assert!(!clean, "{report}");
    let address = pod.address.unwrap();
    assert_eq!(
        problems(&report),
        vec![format!(
            "{address} is allocated to handle k8s-pod-network.{} but nothing uses it (leaked address)",
            pod.container_id()
        )],
        "{report}"
    );
    assert!(report.contains("found 1 problems"), "{report}");
}
