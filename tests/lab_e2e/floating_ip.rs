//! Floating IPs end to end (Calico's `cni.projectcalico.org/floatingIPs`): in a BGP-mode lab
//! (its CNI configuration has `feature_control.floating_ips`, its FelixConfiguration
//! `floatingIPs: Enabled`), a pod added on node1 with a floating IP from the lab's pool
//! - is recorded with it as `spec.ipNATs` on its WorkloadEndpoint;
//! - makes node1 originate the floating /32 over BGP, so node2's kernel routes it via node1;
//! - answers on it from a pod on node2: the request reaches the pod with the client's own
//!   source (DNAT only), and the reply comes back from the floating IP (a connected UDP socket
//!   takes nothing else);
//! - and when it is deleted, node2's route is withdrawn.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use starling::lab::{controllers, topology, workloads, Mode};

use super::requirements::require_root;
use super::{logs, poll, Lab};

/// Inside the lab pool (Calico requires a pool) but far from the blocks the lab's hosts claim
/// (their search starts at the FNV hash of the host name, near 10.244.179.0/24).
const FLOATING: Ipv4Addr = Ipv4Addr::new(10, 244, 250, 1);
const PORT: u16 = 5000;

/// node2's kernel route for the floating IP, if it has one.
fn floating_route(lab: &Lab) -> Option<String> {
    lab.ip(2, &["route", "show", &format!("{FLOATING}/32")])
        .lines()
        .map(str::to_string)
        .find(|line| line.starts_with(&FLOATING.to_string()))
}

#[test]
fn floating_ip_answers_from_another_node_and_is_withdrawn() {
    if !require_root("floating_ip_answers_from_another_node_and_is_withdrawn") {
        return;
    }
    let lab = Lab::up("e2efip", Mode::Bgp, 2, 1);
    let options = &lab.options;
    let annotation = format!(r#"["{FLOATING}"]"#);
    let pod = workloads::add_pod(
        options,
        &workloads::PodRequest {
            namespace: "default".into(),
            name: "fip".into(),
            node: Some(1),
            annotations: [("cni.projectcalico.org/floatingIPs".to_string(), annotation)].into(),
            ..workloads::PodRequest::default()
        },
    )
    .unwrap_or_else(|error| panic!("adding the floating IP pod: {error:#}"));
    let internal = pod.address.expect("the pod has an address");

    let key = controllers::endpoint_key(&pod).unwrap();
    let endpoint = starling::lab::etcd::get(&lab.names(), &lab.state.etcd_endpoints, &key)
        .unwrap()
        .expect("the pod's WorkloadEndpoint");
    let nats = endpoint["spec"]["ipNATs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(nats.len(), 1, "{endpoint:#}");
    assert_eq!(
        (&nats[0]["internalIP"], &nats[0]["externalIP"]),
        (
            &serde_json::json!(internal.to_string()),
            &serde_json::json!(FLOATING.to_string())
        ),
        "{endpoint:#}"
    );

    // node1 originates the /32; node2 learns it over the mesh and routes it via node1.
    let via = format!("via {}", topology::node_address(1));
    let learned = poll(Duration::from_secs(20), || {
        floating_route(&lab).is_some_and(|route| route.contains(&via))
    });
    assert!(
        learned,
        "node2 has no route {FLOATING} {via}:\n{}\n{}",
        lab.routes(2),
        logs(options, 2)
    );

    // The pod echoes what it receives and reports who sent it.
    let server = starling::netns::run_in(&pod.namespace, || UdpSocket::bind(("0.0.0.0", PORT)))
        .unwrap()
        .unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let client_pod = lab
        .state
        .pods
        .iter()
        .find(|p| p.node == 2)
        .expect("a pod on node2")
        .clone();
    // A fresh socket (source port) per try: a flow whose first packet reached node1 before its
    // DNAT was installed stays un-NATed in conntrack for as long as it keeps sending.
    let connect = || {
        starling::netns::run_in(&client_pod.namespace, || {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.connect(SocketAddr::new(IpAddr::V4(FLOATING), PORT))?;
            socket.set_read_timeout(Some(Duration::from_millis(300)))?;
            Ok::<_, std::io::Error>(socket)
        })
        .unwrap()
        .unwrap()
    };
    let mut seen_source = None;
    let answered = poll(Duration::from_secs(10), || {
        let client = connect();
        if client.send(b"ping").is_err() {
            return false;
        }
        let mut buffer = [0u8; 16];
        if let Ok((length, from)) = server.recv_from(&mut buffer) {
            seen_source = Some(from.ip());
            let _ = server.send_to(&buffer[..length], from);
        }
        // Connected: only a reply from FLOATING:PORT arrives here.
        matches!(client.recv(&mut buffer), Ok(4))
    });
    assert!(
        answered,
        "no answer from {FLOATING} (pod {internal}); the pod saw {seen_source:?}\n{}",
        logs(options, 2)
    );
    assert_eq!(
        seen_source, client_pod.address,
        "the pod must see the client's own address"
    );

    workloads::delete_pod(options, "default/fip").unwrap();
    let withdrawn = poll(Duration::from_secs(20), || floating_route(&lab).is_none());
    assert!(
        withdrawn,
        "node2 still routes {FLOATING} after the pod is gone:\n{}",
        lab.routes(2)
    );
}
