//! The Calico resources each lab mode writes to etcd (Calico's etcdv3 layout, reference §3)
//! before the daemons start.

use serde_json::{json, Value};

use super::topology::node_name;
use super::Mode;

/// The pod pool every mode uses.
pub const POD_POOL: &str = "10.244.0.0/16";
/// The IPv6 pod pool of a dual-stack lab (`--ipv6`), with Calico's default v6 block size.
pub const POD_POOL_V6: &str = "fd00:10:244::/48";
pub const BLOCK_SIZE_V6: u8 = 122;
/// Cluster AS of the BGP modes (Calico's default).
pub const CLUSTER_AS: u32 = 64512;
/// Cluster ID of the `bgp-rr` reflector (node1).
pub const REFLECTOR_CLUSTER_ID: &str = "224.0.0.1";
pub const REFLECTOR_LABEL: &str = "route-reflector";

fn key(plural: &str, name: &str) -> String {
    format!("/calico/resources/v3/projectcalico.org/{plural}/{name}")
}

fn object(kind: &str, name: &str, labels: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name, "uid": crate::resources::meta::new_uid(),
                     "creationTimestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                     "labels": labels},
        "spec": spec,
    })
}

/// The `default` BGPConfiguration of the BGP modes (mesh on) at its etcd key, with extra
/// `annotations` and `spec` fields merged in (e.g. `starling/bfd-interval`,
/// `nodeMeshMaxRestartTime`).
pub fn mesh_configuration(annotations: Value, spec: Value) -> (String, Value) {
    let mut full = json!({"asNumber": CLUSTER_AS, "nodeToNodeMeshEnabled": true});
    if let (Some(full), Value::Object(extra)) = (full.as_object_mut(), spec) {
        full.extend(extra);
    }
    let mut value = object("BGPConfiguration", "default", json!({}), full);
    value["metadata"]["annotations"] = annotations;
    (key("bgpconfigurations", "default"), value)
}

/// An IPPool object at its etcd key.
pub fn pool(name: &str, cidr: &str, mode: Mode, node_selector: &str) -> (String, Value) {
    let (ipip, vxlan) = match mode {
        Mode::Vxlan => ("Never", "Always"),
        Mode::VxlanCrossSubnet => ("Never", "CrossSubnet"),
        Mode::Ipip => ("Always", "Never"),
        Mode::IpipCrossSubnet => ("CrossSubnet", "Never"),
        Mode::Bgp | Mode::BgpRr => ("Never", "Never"),
    };
    (
        key("ippools", name),
        object(
            "IPPool",
            name,
            json!({}),
            json!({"cidr": cidr, "blockSize": 26, "ipipMode": ipip, "vxlanMode": vxlan,
                   "natOutgoing": true, "nodeSelector": node_selector}),
        ),
    )
}

/// The IPv6 IPPool of a dual-stack lab: VXLAN in the VXLAN modes, else unencapsulated (Calico
/// has no IPIP for IPv6, so the IPIP modes route IPv6 natively over BGP); no natOutgoing, as
/// Calico's default IPv6 pool.
pub fn pool_v6(name: &str, cidr: &str, mode: Mode, node_selector: &str) -> (String, Value) {
    let vxlan = match mode {
        Mode::Vxlan => "Always",
        Mode::VxlanCrossSubnet => "CrossSubnet",
        Mode::Ipip | Mode::IpipCrossSubnet | Mode::Bgp | Mode::BgpRr => "Never",
    };
    (
        key("ippools", name),
        object(
            "IPPool",
            name,
            json!({}),
            json!({"cidr": cidr, "blockSize": BLOCK_SIZE_V6, "ipipMode": "Never",
                   "vxlanMode": vxlan, "natOutgoing": false, "nodeSelector": node_selector}),
        ),
    )
}

/// FelixConfiguration `default` as calico-node's start-up writes it, with floating IPs
/// enabled (Felix's gate; the lab's CNI configuration opens the plugin's), so a pod added with
/// the `cni.projectcalico.org/floatingIPs` annotation gets them.
fn felix_configuration() -> (String, Value) {
    (
        key("felixconfigurations", "default"),
        object(
            "FelixConfiguration",
            "default",
            json!({}),
            json!({"reportingInterval": "0s", "logSeverityScreen": "Info",
                   "floatingIPs": "Enabled"}),
        ),
    )
}

/// Everything a mode needs (with `ipv6`, the IPv6 pool too).
pub fn for_mode(mode: Mode, ipv6: bool) -> Vec<(String, Value)> {
    let mut entries = vec![pool("lab-pool", POD_POOL, mode, "all()")];
    if ipv6 {
        entries.push(pool_v6("lab-pool-v6", POD_POOL_V6, mode, "all()"));
    }
    match mode {
        Mode::Vxlan | Mode::VxlanCrossSubnet => {}
        Mode::Bgp | Mode::Ipip | Mode::IpipCrossSubnet => entries.push((
            key("bgpconfigurations", "default"),
            object(
                "BGPConfiguration",
                "default",
                json!({}),
                json!({"asNumber": CLUSTER_AS, "nodeToNodeMeshEnabled": true}),
            ),
        )),
        Mode::BgpRr => {
            entries.push((
                key("bgpconfigurations", "default"),
                object(
                    "BGPConfiguration",
                    "default",
                    json!({}),
                    json!({"asNumber": CLUSTER_AS, "nodeToNodeMeshEnabled": false}),
                ),
            ));
            entries.push((
                key("bgppeers", "peer-with-route-reflector"),
                object(
                    "BGPPeer",
                    "peer-with-route-reflector",
                    json!({}),
                    json!({"nodeSelector": format!("!has({REFLECTOR_LABEL})"),
                           "peerSelector": format!("has({REFLECTOR_LABEL})")}),
                ),
            ));
            // The reflector is registered in advance, as an operator labels and patches it.
            let reflector = node_name(1);
            entries.push((
                key("nodes", &reflector),
                object(
                    "Node",
                    &reflector,
                    json!({REFLECTOR_LABEL: "true"}),
                    json!({"bgp": {"routeReflectorClusterID": REFLECTOR_CLUSTER_ID}}),
                ),
            ));
        }
    }
    entries.push(felix_configuration());
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_reflector_mode_writes_peer_and_reflector() {
        let entries = for_mode(Mode::BgpRr, false);
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(
            &"/calico/resources/v3/projectcalico.org/bgppeers/peer-with-route-reflector"
        ));
        let (_, node) = entries
            .iter()
            .find(|(k, _)| k.ends_with("/nodes/node1"))
            .unwrap();
        assert_eq!(
            node["spec"]["bgp"]["routeReflectorClusterID"],
            REFLECTOR_CLUSTER_ID
        );
        let (_, pool) = &entries[0];
        assert_eq!(pool["spec"]["vxlanMode"], "Never");
        for mode in [Mode::Vxlan, Mode::Bgp, Mode::BgpRr] {
            let entries = for_mode(mode, false);
            let (_, felix) = entries
                .iter()
                .find(|(k, _)| k.ends_with("/felixconfigurations/default"))
                .expect("a FelixConfiguration default");
            assert_eq!(felix["spec"]["floatingIPs"], "Enabled");
        }
        assert_eq!(
            for_mode(Mode::Vxlan, false)[0].1["spec"]["vxlanMode"],
            "Always"
        );
        let cross = &for_mode(Mode::IpipCrossSubnet, false)[0].1["spec"];
        assert_eq!(
            (&cross["ipipMode"], &cross["vxlanMode"]),
            (&json!("CrossSubnet"), &json!("Never"))
        );
        let cross = &for_mode(Mode::VxlanCrossSubnet, false)[0].1["spec"];
        assert_eq!(
            (&cross["ipipMode"], &cross["vxlanMode"]),
            (&json!("Never"), &json!("CrossSubnet"))
        );
    }

    #[test]
    fn dual_stack_adds_an_ipv6_pool_with_the_mode_encapsulation() {
        let v6 = |mode| {
            let entries = for_mode(mode, true);
            assert_eq!(entries.len(), for_mode(mode, false).len() + 1);
            let (key, pool) = entries[1].clone();
            assert!(key.ends_with("/ippools/lab-pool-v6"), "{key}");
            pool["spec"].clone()
        };
        let vxlan = v6(Mode::Vxlan);
        assert_eq!(vxlan["cidr"], POD_POOL_V6);
        assert_eq!(vxlan["blockSize"], 122);
        assert_eq!(vxlan["vxlanMode"], "Always");
        assert_eq!(vxlan["natOutgoing"], false);
        assert_eq!(v6(Mode::VxlanCrossSubnet)["vxlanMode"], "CrossSubnet");
        for mode in [Mode::Bgp, Mode::BgpRr, Mode::Ipip, Mode::IpipCrossSubnet] {
            let spec = v6(mode);
            assert_eq!(
                (&spec["ipipMode"], &spec["vxlanMode"]),
                (&json!("Never"), &json!("Never"))
            );
        }
    }
}
