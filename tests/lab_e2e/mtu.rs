//! Pod MTU on a 1500-byte host network: the tunnel's overhead taken off (IPIP 20, VXLAN 50), and
//! the path between nodes carries exactly that: a don't-fragment ping of the largest size passes,
//! one byte more fails.

use std::time::Duration;

use starling::lab::topology;

use super::{poll, Lab};

/// IPv4 and ICMP headers in front of a ping's payload.
const PING_HEADERS: u32 = 28;

fn df_ping(lab: &Lab, from: usize, to: usize, payload: u32) -> Result<String, String> {
    let source = &lab.state.pods[from];
    let target = lab.state.pods[to].address.expect("the pod has an address");
    topology::in_ns(
        &source.namespace,
        "ping",
        &[
            "-M",
            "do",
            "-c",
            "1",
            "-W",
            "2",
            "-s",
            &payload.to_string(),
            &target.to_string(),
        ],
    )
    .map_err(|err| format!("{err:#}"))
}

/// Every pod's eth0 has `mtu`, the nodes' eth0 1500, and a DF ping from the first pod to a pod on
/// another node passes at the largest size and fails one byte above it.
pub fn assert_pod_mtu(lab: &Lab, mtu: u32) {
    let host = lab.ip(1, &["link", "show", "eth0"]);
    assert!(
        host.contains(" mtu 1500 "),
        "node1's eth0 is not 1500:\n{host}"
    );
    for pod in &lab.state.pods {
        let link =
            topology::ip(&["-n", &pod.namespace, "link", "show", "eth0"]).unwrap_or_default();
        assert!(
            link.contains(&format!(" mtu {mtu} ")),
            "pod {} does not have MTU {mtu}:\n{link}",
            pod.name()
        );
    }
    let from = 0;
    let to = lab
        .state
        .pods
        .iter()
        .position(|pod| pod.node != lab.state.pods[from].node)
        .expect("a pod on another node");
    let largest = mtu - PING_HEADERS;
    let mut last = Err(String::new());
    let passed = poll(Duration::from_secs(10), || {
        last = df_ping(lab, from, to, largest);
        last.is_ok()
    });
    assert!(
        passed,
        "a DF ping of {largest} bytes (packet {mtu}) from {} to {} failed: {last:?}",
        lab.state.pods[from].name(),
        lab.state.pods[to].name()
    );
    let too_big = df_ping(lab, from, to, largest + 1);
    assert!(
        too_big.is_err(),
        "a DF ping of {} bytes (packet {}) passed, so the pod MTU is not {mtu}: {too_big:?}",
        largest + 1,
        mtu + 1
    );
    eprintln!(
        "lab {}: pod MTU {mtu}; DF ping of a {mtu}-byte packet passes, {} fails: {}",
        lab.options.name,
        mtu + 1,
        too_big.unwrap_err().lines().last().unwrap_or_default()
    );
}
