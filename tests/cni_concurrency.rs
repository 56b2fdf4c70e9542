//! Fifty pods started at once on one node, then deleted at once: distinct addresses, every veth
//! and route in place, and everything released and removed afterwards.

mod cni_support;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::require_root;

use std::collections::BTreeSet;

use cni_support::*;

const PODS: usize = 50;

#[test]
fn fifty_concurrent_adds_and_deletes() {
    if !require_root("fifty_concurrent_adds_and_deletes") {
        return;
    }
    let node = node_namespace();
    let server = IpamServer::start("10.70.0.0/24");
    let pods: Vec<Netns> = (0..PODS).map(|_| Netns::new("pod")).collect();
    let names: Vec<String> = (0..PODS).map(|index| format!("burst-{index}")).collect();
    let containers: Vec<String> = (0..PODS)
        .map(|index| format!("container-{index}"))
        .collect();

    let run_all = |command: &'static str| -> Vec<PluginOutput> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..PODS)
                .map(|index| {
                    let (pod, name, container) = (&pods[index], &names[index], &containers[index]);
                    let (node, server) = (&node, &server);
                    scope.spawn(move || {
                        let path = pod.path();
                        invoke(
                            node,
                            PLUGIN,
                            &Invocation {
                                command,
                                container_id: container,
                                netns: Some(&path),
                                interface: "eth0",
                                cni_args: Some(kubelet_args("burst", name, container)),
                                socket: &server.socket,
                                stdin: network_config("1.0.0"),
                            },
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("plugin thread"))
                .collect()
        })
    };

    let added = run_all("ADD");
    let mut addresses = BTreeSet::new();
    for (index, output) in added.iter().enumerate() {
        assert!(
            output.success,
            "ADD {index} failed: {} {}",
            output.stdout, output.stderr
        );
        let address = output.json()["ips"][0]["address"]
            .as_str()
            .expect("address")
            .to_string();
        addresses.insert(address);
    }
    assert_eq!(addresses.len(), PODS, "addresses are not distinct");
    assert_eq!(server.allocator.allocations().len(), PODS);
    let routes = node.ip(&["route", "show", "proto", "81"]);
    assert_eq!(routes.lines().count(), PODS, "{routes}");
    for name in &names {
        assert!(link_exists(&node, &expected_veth("burst", name)), "{name}");
    }

    let deleted = run_all("DEL");
    for (index, output) in deleted.iter().enumerate() {
        assert!(
            output.success,
            "DEL {index} failed: {} {}",
            output.stdout, output.stderr
        );
    }
    assert!(
        server.allocator.allocations().is_empty(),
        "{:?}",
        server.allocator.allocations()
    );
    let routes = node.ip(&["route", "show", "proto", "81"]);
    assert!(routes.trim().is_empty(), "{routes}");
    let links = node.ip(&["link", "show"]);
    assert!(!links.contains("cali"), "{links}");
}
