//! The daemon with the real kernel, inside a test network namespace: the Kubernetes API test
//! server, the daemon and its dataplane thread all run on a thread that joined the namespace,
//! so every netlink socket and route belongs to it. Needs root; skipped otherwise.

#[path = "support/kube_api.rs"]
mod kube_api;

#[path = "daemon_support/mod.rs"]
mod daemon_support;

#[path = "support/netns_test.rs"]
mod netns_test;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::require_root;

use std::time::Duration;

use daemon_support::*;
use kube_api::KubeApiServer;
use starling::daemon::dataplane::KernelMode;
use starling::daemon::{DaemonOptions, StartupMode};
use starling::datastore::kube::KubeStore;
use starling::datastore::{AnyDatastore, Datastore};
use starling::resources::node::annotation;
use starling::resources::IPPool;
use starling::startup::StartupOutcome;
use starling_ipam::block::Block;
use starling_model::config::Config;
use starling_model::wire::IPPoolSpec;

/// Routes with Starling's protocol, as `ip` prints them.
fn starling_routes(namespace: &str) -> String {
    netns_test::ip(namespace, "route show proto 81")
}

#[test]
fn routes_are_programmed_survive_a_relist_and_stay_after_shutdown() {
    if !require_root("routes_are_programmed_survive_a_relist_and_stay_after_shutdown") {
        return;
    }
    let name = starling::netns::unique_name("sd");
    let _guard = starling::netns::create(&name).unwrap();
    netns_test::node_eth0(&name, "10.0.0.1/24");

    let namespace = name.clone();
    starling::netns::run_async_in(&name, move || async move {
        let server = KubeApiServer::start().await;
        let store = AnyDatastore::Kube(KubeStore::new(server.client()));
        for (node, address, tunnel) in [
            ("node-a", "10.0.0.1/24", "10.244.0.1"),
            ("node-b", "10.0.0.2/24", "10.244.1.1"),
        ] {
            server.put_object(
                "v1",
                "nodes",
                k8s_node(
                    node,
                    &[
                        (annotation::IPV4_ADDRESS, address),
                        (annotation::IPV4_VXLAN_TUNNEL_ADDR, tunnel),
                    ],
                ),
            );
        }
        store
            .create(&IPPool::new(
                "pool-a",
                IPPoolSpec {
                    cidr: "10.244.0.0/16".into(),
                    vxlan_mode: Some("Always".into()),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        store
            .create(
                &Block::new(
                    "10.244.1.0/26".parse().unwrap(),
                    Some("host:node-b".into()),
                    None,
                    0,
                )
                .unwrap(),
            )
            .await
            .unwrap();

        let directory = tempfile::tempdir().unwrap();
        let socket = directory.path().join("starling.sock");
        let variables = environment("node-a", "vxlan", &socket);
        let config = Config::from_env(&variables).unwrap();
        let mut local = registered("node-a", "10.0.0.1/24");
        local.ipv4_vxlan_tunnel_addr = Some("10.244.0.1".parse().unwrap());
        let options = DaemonOptions {
            startup: StartupMode::Given(StartupOutcome {
                node_name: "node-a".into(),
                node: local,
            }),
            kernel: KernelMode::Netlink,
            mtu_file: Some(directory.path().join("mtu")),
            sysctl_root: None,
            manage_nat: false,
            bgp_grace: Duration::from_secs(30),
            policy: false,
        };
        let handle = starling::daemon::start(config, store, options).await.unwrap();

        let ns = namespace.clone();
        eventually("the VXLAN route in the kernel", || {
            let ns = ns.clone();
            async move {
                starling_routes(&ns).contains("10.244.1.0/26 via 10.244.1.1 dev vxlan.calico")
            }
        })
        .await;
        // Start-up's tunnel-address management gives node-a an IPAM-backed VXLAN address (the
        // one registered above was never allocated); let that change land before measuring.
        let server_ref = &server;
        eventually("the VXLAN tunnel address allocated through IPAM", || async move {
            server_ref
                .get_object("crd.projectcalico.org/v1", "ipamhandles", None, "vxlan-tunnel-addr-node-a")
                .is_some()
        })
        .await;
        let mut computed_view = handle.computed.clone();
        let tunnel = tokio::time::timeout(
            DEADLINE,
            computed_view.wait_for(|c| {
                c.as_ref().is_some_and(|c| {
                    c.local_node.ipv4_vxlan_tunnel_addr != Some("10.244.0.1".parse().unwrap())
                        // The tunnel address's block is watched apart from the Node.
                        && c.dataplane
                            .blocks
                            .iter()
                            .any(|block| block.affinity.as_deref() == Some("node-a"))
                })
            }),
        )
        .await
        .expect("the re-allocated tunnel address reaches the state")
        .unwrap()
        .as_ref()
        .and_then(|c| c.local_node.ipv4_vxlan_tunnel_addr)
        .expect("a tunnel address");
        let ns = namespace.clone();
        eventually("the new tunnel address on vxlan.calico", || {
            let ns = ns.clone();
            async move {
                let output = std::process::Command::new("ip")
                    .args(["-n", &ns, "-4", "addr", "show", "dev", "vxlan.calico"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                output.contains(&format!("inet {tunnel}/32"))
            }
        })
        .await;
        let settled = settled_status(&handle).await;
        let before = starling_routes(&namespace);
        let mtu = std::fs::read_to_string(directory.path().join("mtu")).unwrap();
        assert_eq!(mtu, "1450", "pod MTU = eth0 1500 - VXLAN 50");

        // Force a relist: history compacted past what the watchers saw, watches cut.
        server.put_object(
            "v1",
            "namespaces",
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bump"}}),
        );
        server.compact();
        server.break_watches();
        let metrics = handle.metrics.clone();
        eventually("a relist", || {
            let metrics = metrics.clone();
            async move {
                metrics
                    .datastore_reconnects_total
                    .with_label_values(&["IPAMBlock"])
                    .get()
                    > 0
            }
        })
        .await;
        let mut computed = handle.computed.clone();
        tokio::time::timeout(
            DEADLINE,
            computed.wait_for(|c| c.as_ref().is_some_and(|c| c.dataplane.datastore_in_sync)),
        )
        .await
        .unwrap()
        .unwrap();
        // Whatever the relist published has been applied: nothing may have been written.
        let after = applied_status(&handle).await;
        assert_eq!(
            after.applied, settled.applied,
            "the relist changed the desired state"
        );
        assert_eq!(
            after.total_writes,
            settled.total_writes,
            "the relist wrote to the kernel"
        );
        assert_eq!(starling_routes(&namespace), before);

        // Shutdown leaves the routes in place for the next start.
        handle.shutdown().await;
        assert_eq!(starling_routes(&namespace), before);
    })
    .unwrap();
}
