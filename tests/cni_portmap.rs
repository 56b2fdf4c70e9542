//! A conflist chain run by hand, as a runtime does: ADD through `starling` then Debian's
//! `portmap` (with `prevResult` and `runtimeConfig.portMappings`), DEL in reverse order. Portmap's
//! iptables rules live in the node namespace only.

mod cni_support;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::{require_program, require_root};

use cni_support::*;

const PORTMAP: &str = "/usr/lib/cni/portmap";

fn iptables_nat(node: &Netns) -> String {
    let output = node.exec("iptables-save", &["-t", "nat"]);
    assert!(
        output.status.success(),
        "iptables-save: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn chained_with_portmap() {
    if !require_root("chained_with_portmap") || !require_program("chained_with_portmap", PORTMAP) {
        return;
    }
    let node = node_namespace();
    let server = IpamServer::start("10.71.0.0/24");
    let pod = Netns::new("pod");
    let path = pod.path();
    let container = "container-portmap";
    let args = kubelet_args("default", "exposed", container);
    let invocation = |command: &'static str, stdin: String| Invocation {
        command,
        container_id: container,
        netns: Some(&path),
        interface: "eth0",
        cni_args: Some(args.clone()),
        socket: &server.socket,
        stdin,
    };

    let added = invoke(&node, PLUGIN, &invocation("ADD", network_config("1.0.0")));
    assert!(added.success, "{} {}", added.stdout, added.stderr);
    let starling_result = added.json();
    let address = starling_result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string();

    let portmap_config = |previous: &serde_json::Value| {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "type": "portmap",
            "snat": true,
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [
                {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}
            ]},
            "prevResult": previous,
        })
        .to_string()
    };
    let mapped = invoke(
        &node,
        PORTMAP,
        &invocation("ADD", portmap_config(&starling_result)),
    );
    assert!(
        mapped.success,
        "portmap ADD: {} {}",
        mapped.stdout, mapped.stderr
    );
    // portmap passes the result through.
    let chained_result = mapped.json();
    assert_eq!(chained_result["ips"], starling_result["ips"]);
    let rules = iptables_nat(&node);
    assert!(rules.contains("18080"), "{rules}");
    assert!(rules.contains(&address), "{rules}");

    // DEL in reverse order, each with the final result as prevResult.
    let mut starling_delete: serde_json::Value =
        serde_json::from_str(&network_config("1.0.0")).unwrap();
    starling_delete["prevResult"] = chained_result.clone();
    let unmapped = invoke(
        &node,
        PORTMAP,
        &invocation("DEL", portmap_config(&chained_result)),
    );
    assert!(
        unmapped.success,
        "portmap DEL: {} {}",
        unmapped.stdout, unmapped.stderr
    );
    let deleted = invoke(
        &node,
        PLUGIN,
        &invocation("DEL", starling_delete.to_string()),
    );
    assert!(deleted.success, "{} {}", deleted.stdout, deleted.stderr);

    let rules = iptables_nat(&node);
    assert!(!rules.contains("18080"), "{rules}");
    assert!(!rules.contains(&address), "{rules}");
    assert!(server.allocator.allocations().is_empty());
    assert!(!link_exists(&node, &expected_veth("default", "exposed")));
}
