//! The daemon against the Kubernetes API test server: watching, computing, relisting,
//! health and the control socket. Start-up is given (the node is pre-registered here) and the
//! kernel is the in-memory fake, so these tests need neither root nor a namespace.

#[path = "support/kube_api.rs"]
mod kube_api;

#[path = "daemon_support/mod.rs"]
mod daemon_support;

use std::net::IpAddr;
use std::time::Duration;

use daemon_support::*;
use ipnet::IpNet;
use kube_api::KubeApiServer;
use starling::datastore::kube::KubeStore;
use starling::datastore::{AnyDatastore, Datastore};
use starling::resources::node::annotation;
use starling::resources::{BGPPeer, IPPool};
use starling_calc::spec::RouteClass;
use starling_ipam::block::Block;
use starling_model::wire::{BGPPeerSpec, IPPoolSpec};

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

async fn setup() -> (KubeApiServer, AnyDatastore) {
    let server = KubeApiServer::start().await;
    let store = AnyDatastore::Kube(KubeStore::new(server.client()));
    (server, store)
}

fn pool(name: &str, cidr: &str, vxlan: &str, ipip: &str) -> IPPool {
    IPPool::new(
        name,
        IPPoolSpec {
            cidr: cidr.to_string(),
            vxlan_mode: Some(vxlan.to_string()),
            ipip_mode: Some(ipip.to_string()),
            ..Default::default()
        },
    )
}

fn remote_block(cidr: &str, node: &str) -> Block {
    Block::new(net(cidr), Some(format!("host:{node}")), None, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_pool_and_remote_block_become_routes() {
    let (server, store) = setup().await;
    server.put_object(
        "v1",
        "nodes",
        k8s_node(
            "node-a",
            &[
                (annotation::IPV4_ADDRESS, "10.0.0.1/24"),
                (annotation::IPV4_VXLAN_TUNNEL_ADDR, "10.244.0.1"),
            ],
        ),
    );
    let mut local = registered("node-a", "10.0.0.1/24");
    local.ipv4_vxlan_tunnel_addr = Some("10.244.0.1".parse().unwrap());
    let daemon = start_daemon(store.clone(), &local, "vxlan", &[]).await;
    wait_computed(&daemon, "initial sync", |c| {
        c.dataplane.datastore_in_sync && c.desired.routes.is_empty()
    })
    .await;

    store
        .create(&pool("pool-a", "10.244.0.0/16", "Always", "Never"))
        .await
        .unwrap();
    wait_computed(&daemon, "the VXLAN device for the new pool", |c| {
        c.dataplane.pools.len() == 1 && c.desired.devices.contains_key("vxlan.calico")
    })
    .await;

    server.put_object(
        "v1",
        "nodes",
        k8s_node(
            "node-b",
            &[
                (annotation::IPV4_ADDRESS, "10.0.0.2/24"),
                (annotation::IPV4_VXLAN_TUNNEL_ADDR, "10.244.1.1"),
            ],
        ),
    );
    store
        .create(&remote_block("10.244.1.0/26", "node-b"))
        .await
        .unwrap();
    let computed = wait_computed(&daemon, "a route to node-b's block", |c| {
        c.desired.routes.contains_key(&net("10.244.1.0/26"))
    })
    .await;
    let route = &computed.desired.routes[&net("10.244.1.0/26")];
    assert_eq!(route.class, RouteClass::RemoteBlockVxlan);
    assert_eq!(
        route.spec.gateway,
        Some("10.244.1.1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(route.spec.device.as_deref(), Some("vxlan.calico"));
    assert!(computed.speaker.is_none(), "the vxlan backend runs no BGP");

    // The driver programs it into the (fake) kernel.
    let mut status = daemon.handle.driver_status.clone();
    tokio::time::timeout(
        DEADLINE,
        status.wait_for(|s| s.converged && s.total_writes > 0),
    )
    .await
    .expect("the driver converges")
    .unwrap();
    daemon.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_backend_takes_ipip_routes_from_bgp_and_follows_peers() {
    let (server, store) = setup().await;
    server.put_object(
        "v1",
        "nodes",
        k8s_node("node-a", &[(annotation::IPV4_ADDRESS, "10.0.0.1/24")]),
    );
    let local = registered("node-a", "10.0.0.1/24");
    let daemon = start_daemon(store.clone(), &local, "bird", &[]).await;
    let initial = wait_computed(&daemon, "initial sync with a speaker", |c| {
        c.dataplane.datastore_in_sync && c.speaker.is_some()
    })
    .await;
    assert_eq!(
        initial.speaker.as_ref().unwrap().router_id.to_string(),
        "10.0.0.1"
    );

    store
        .create(&pool("pool-a", "10.244.0.0/16", "Never", "Always"))
        .await
        .unwrap();
    server.put_object(
        "v1",
        "nodes",
        k8s_node("node-b", &[(annotation::IPV4_ADDRESS, "10.0.0.2/24")]),
    );
    store
        .create(&remote_block("10.244.1.0/26", "node-b"))
        .await
        .unwrap();
    let computed = wait_computed(&daemon, "a mesh session to node-b", |c| {
        c.speaker
            .as_ref()
            .is_some_and(|s| s.sessions.contains_key("Mesh_10_0_0_2"))
            // node-a's own tunnel-address block may be there too.
            && c.dataplane.blocks.iter().any(|b| b.cidr == net("10.244.1.0/26"))
    })
    .await;
    assert!(
        !computed.desired.routes.contains_key(&net("10.244.1.0/26")),
        "with bird, IPIP cluster routes come from BGP, not IPAM: {:?}",
        computed.desired.routes
    );

    let peer = BGPPeer::new(
        "tor",
        BGPPeerSpec {
            peer_ip: Some("10.0.0.9".to_string()),
            as_number: Some("64513".parse().unwrap()),
            ..Default::default()
        },
    );
    store.create(&peer).await.unwrap();
    let computed = wait_computed(&daemon, "a global session to the new BGPPeer", |c| {
        c.speaker
            .as_ref()
            .is_some_and(|s| s.sessions.contains_key("Global_10_0_0_9"))
    })
    .await;
    let session = &computed.speaker.as_ref().unwrap().sessions["Global_10_0_0_9"];
    assert_eq!(session.peer_as.0, 64513);
    daemon.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_watch_relists_without_touching_the_kernel() {
    let (server, store) = setup().await;
    server.put_object(
        "v1",
        "nodes",
        k8s_node(
            "node-a",
            &[
                (annotation::IPV4_ADDRESS, "10.0.0.1/24"),
                (annotation::IPV4_VXLAN_TUNNEL_ADDR, "10.244.0.1"),
            ],
        ),
    );
    server.put_object(
        "v1",
        "nodes",
        k8s_node(
            "node-b",
            &[
                (annotation::IPV4_ADDRESS, "10.0.0.2/24"),
                (annotation::IPV4_VXLAN_TUNNEL_ADDR, "10.244.1.1"),
            ],
        ),
    );
    store
        .create(&pool("pool-a", "10.244.0.0/16", "Always", "Never"))
        .await
        .unwrap();
    store
        .create(&remote_block("10.244.1.0/26", "node-b"))
        .await
        .unwrap();
    let mut local = registered("node-a", "10.0.0.1/24");
    local.ipv4_vxlan_tunnel_addr = Some("10.244.0.1".parse().unwrap());
    let daemon = start_daemon(store.clone(), &local, "vxlan", &[]).await;
    wait_computed(&daemon, "the remote block route", |c| {
        c.dataplane.datastore_in_sync && c.desired.routes.contains_key(&net("10.244.1.0/26"))
    })
    .await;
    // Start-up's tunnel-address management replaces the unallocated 10.244.0.1 with an
    // IPAM-backed address; let that land in the kernel before measuring.
    // Its block (watched separately from the Node) must have arrived too.
    wait_computed(
        &daemon,
        "an IPAM-backed tunnel address and its block",
        |c| {
            c.local_node
                .ipv4_vxlan_tunnel_addr
                .is_some_and(|address| address != "10.244.0.1".parse::<std::net::IpAddr>().unwrap())
                && c.dataplane
                    .blocks
                    .iter()
                    .any(|block| block.affinity.as_deref() == Some("node-a"))
        },
    )
    .await;
    let settled = settled_status(&daemon.handle).await;
    let writes_before = daemon.handle.metrics.render();
    assert!(settled.total_writes > 0);

    // History gone and every watch cut: the watchers must relist. The write to a kind nobody
    // watches moves the resourceVersion past what the watchers have seen, so resuming from it
    // is answered 410 Gone.
    server.put_object(
        "v1",
        "namespaces",
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bump"}}),
    );
    server.compact();
    server.break_watches();
    let metrics = daemon.handle.metrics.clone();
    eventually("a relist of IPAM blocks", || {
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
    let computed = wait_computed(&daemon, "back in sync after the relist", |c| {
        c.dataplane.datastore_in_sync
    })
    .await;
    assert!(computed.desired.routes.contains_key(&net("10.244.1.0/26")));
    // Whatever the relist published has been applied: nothing may have been written.
    let after = applied_status(&daemon.handle).await;
    assert_eq!(
        after.applied, settled.applied,
        "the relist changed the desired state"
    );
    assert_eq!(
        after.total_writes,
        settled.total_writes,
        "a relist with nothing changed must not write to the kernel\nbefore:\n{}\nafter:\n{}",
        writes_before
            .lines()
            .filter(|l| l.starts_with("starling_dataplane_writes_total"))
            .collect::<Vec<_>>()
            .join("\n"),
        daemon
            .handle
            .metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("starling_dataplane_writes_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    daemon.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_datastore_is_unreachable() {
    let (server, store) = setup().await;
    server.put_object(
        "v1",
        "nodes",
        k8s_node("node-a", &[(annotation::IPV4_ADDRESS, "10.0.0.1/24")]),
    );
    let daemon = start_daemon(
        store.clone(),
        &registered("node-a", "10.0.0.1/24"),
        "vxlan",
        &[],
    )
    .await;
    let address = daemon.handle.health_address;
    eventually("readiness 200", || async move {
        http_get(address, "/readiness").await.0 == 200
    })
    .await;
    let (status, body) = http_get(address, "/liveness").await;
    assert_eq!(status, 200);
    for reporter in ["datastore", "dataplane", "startup"] {
        assert!(body.contains(reporter), "{body}");
    }

    store
        .create(&remote_block("10.244.1.0/26", "node-b"))
        .await
        .unwrap();
    wait_computed(&daemon, "the block", |c| c.dataplane.blocks.len() == 1).await;

    server.set_unavailable(true);
    eventually("readiness 503 while the API answers 503", || async move {
        http_get(address, "/readiness").await.0 == 503
    })
    .await;
    // Deleted while the watch is down: the relist must notice.
    let blocks = server.list_objects("crd.projectcalico.org/v1", "ipamblocks", None);
    let block_name = blocks[0]["metadata"]["name"].as_str().unwrap().to_string();
    server.delete_object("crd.projectcalico.org/v1", "ipamblocks", None, &block_name);
    let (status, body) = http_get(address, "/readiness").await;
    assert_eq!(status, 503);
    assert!(body.contains("waiting for"), "{body}");
    assert_eq!(http_get(address, "/liveness").await.0, 200, "still live");

    server.set_unavailable(false);
    eventually("readiness 200 again", || async move {
        http_get(address, "/readiness").await.0 == 200
    })
    .await;
    wait_computed(
        &daemon,
        "the block deleted during the outage is gone",
        |c| c.dataplane.datastore_in_sync && c.dataplane.blocks.is_empty(),
    )
    .await;
    daemon.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_status_over_the_control_socket() {
    let (server, store) = setup().await;
    server.put_object(
        "v1",
        "nodes",
        k8s_node("node-a", &[(annotation::IPV4_ADDRESS, "10.0.0.1/24")]),
    );
    let daemon = start_daemon(store, &registered("node-a", "10.0.0.1/24"), "bird", &[]).await;
    let socket = daemon.socket.clone();
    eventually("the control socket", || {
        let socket = socket.clone();
        async move { socket.exists() }
    })
    .await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["node", "status", "--socket"])
        .arg(&daemon.socket)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Starling process is running."), "{stdout}");
    assert!(stdout.contains("IPv4 BGP status"), "{stdout}");

    // The IPAM requests of the CNI plugin share the socket.
    let answer: starling::cni::ipam_protocol::IpamResponse = starling::control::call(
        &daemon.socket,
        &starling::cni::ipam_protocol::IpamRequest::Status,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(matches!(
        answer,
        starling::cni::ipam_protocol::IpamResponse::Error(_)
            | starling::cni::ipam_protocol::IpamResponse::Ready
    ));
    daemon.handle.shutdown().await;
    assert!(!daemon.socket.exists(), "the socket is removed on shutdown");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["node", "status", "--socket"])
        .arg(&daemon.socket)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("daemon is not running"), "{stderr}");
}
