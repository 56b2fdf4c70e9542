//! The CNI plugin end to end with a real daemon: the `starling` binary runs as the plugin inside
//! a node namespace, asks the daemon (in-process, Kubernetes datastore on the API test server)
//! for addresses over the control socket, and the daemon's IPAM decides from the pods' and
//! namespaces' annotations. Root only (pod wiring needs namespaces).

mod cni_support;
#[path = "support/kube_api.rs"]
mod kube_api;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::require_root;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use cni_support::*;
use ipnet::IpNet;
use kube_api::KubeApiServer;
use serde_json::{json, Value};
use starling::daemon::dataplane::KernelMode;
use starling::daemon::{DaemonHandle, DaemonOptions, StartupMode};
use starling::dataplane::fake::FakeKernel;
use starling::datastore::kube::KubeStore;
use starling::datastore::AnyDatastore;
use starling::resources::FromResource;
use starling::resources::IPPool;
use starling::startup::StartupOutcome;
use starling_ipam::check;
use starling_model::config::Config;
use starling_model::{CalicoNode, IpPool};

const GROUP: &str = "crd.projectcalico.org/v1";
const BURST: usize = 50;

struct Cluster {
    runtime: tokio::runtime::Runtime,
    server: KubeApiServer,
    store: AnyDatastore,
    daemon: Option<DaemonHandle>,
    socket: PathBuf,
    _directory: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let directory = tempfile::tempdir().unwrap();
        let socket = directory.path().join("starling.sock");
        let (server, store) = runtime.block_on(async {
            let server = KubeApiServer::start().await;
            let store = AnyDatastore::Kube(KubeStore::new(server.client()));
            (server, store)
        });
        Cluster {
            runtime,
            server,
            store,
            daemon: None,
            socket,
            _directory: directory,
        }
    }

    fn put(&self, api_version: &str, plural: &str, object: Value) {
        self.server.put_object(api_version, plural, object);
    }

    fn start_daemon(&mut self) {
        let variables = [
            ("NODENAME", "node-a".to_string()),
            ("CALICO_NETWORKING_BACKEND", "none".to_string()),
            ("FELIX_HEALTHHOST", "127.0.0.1".to_string()),
            ("FELIX_HEALTHPORT", free_port().to_string()),
            ("STARLING_CONTROL_SOCKET", self.socket.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let config = Config::from_env(&variables).unwrap();
        let node = CalicoNode {
            name: "node-a".into(),
            ipv4_address: Some("192.168.250.1/24".parse().unwrap()),
            ..CalicoNode::default()
        };
        let mut kernel = FakeKernel::new();
        kernel.add_interface("eth0", 1500, &["192.168.250.1/24".parse().unwrap()]);
        let options = DaemonOptions {
            startup: StartupMode::Given(StartupOutcome {
                node_name: "node-a".into(),
                node,
            }),
            kernel: KernelMode::Fake(Box::new(kernel)),
            mtu_file: Some(self._directory.path().join("mtu")),
            sysctl_root: None,
            manage_nat: false,
            bgp_grace: Duration::from_secs(30),
            policy: false,
        };
        let store = self.store.clone();
        self.daemon = Some(
            self.runtime
                .block_on(starling::daemon::start(config, store, options))
                .unwrap(),
        );
        // The control socket answers once the daemon is up.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self.socket.exists() {
            assert!(std::time::Instant::now() < deadline, "no control socket");
            std::thread::sleep(starling::lab::POLL_INTERVAL);
        }
    }

    fn pools(&self) -> Vec<IpPool> {
        self.runtime.block_on(async {
            use starling::datastore::Datastore;
            self.store
                .list::<IPPool>()
                .await
                .unwrap()
                .into_iter()
                .filter_map(|p| IpPool::from_resource(&p.value).ok())
                .collect()
        })
    }

    fn check_problems(&self) -> (usize, Vec<String>) {
        let pools = self.pools();
        let report = self
            .runtime
            .block_on(check::check(&self.store, &pools, None, chrono::Utc::now()))
            .unwrap();
        (report.allocations, report.problems.clone())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap()
}

fn pool(name: &str, cidr: &str, extra: Value) -> Value {
    let mut spec = json!({"cidr": cidr, "blockSize": 28, "nodeSelector": "all()"});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": GROUP, "kind": "IPPool", "metadata": {"name": name}, "spec": spec})
}

fn namespace(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "annotations": annotations}})
}

fn pod(namespace: &str, name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
           "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "x"}]}})
}

fn run(
    node: &Netns,
    socket: &std::path::Path,
    command: &str,
    pod_ns: &Netns,
    namespace: &str,
    name: &str,
) -> PluginOutput {
    let path = pod_ns.path();
    let container = format!("ctr-{namespace}-{name}");
    invoke(
        node,
        PLUGIN,
        &Invocation {
            command,
            container_id: &container,
            netns: Some(&path),
            interface: "eth0",
            cni_args: Some(kubelet_args(namespace, name, &container)),
            socket,
            stdin: network_config("1.0.0"),
        },
    )
}

fn address_of(output: &PluginOutput) -> IpAddr {
    assert!(
        output.success,
        "ADD failed: {} {}",
        output.stdout, output.stderr
    );
    let json = output.json();
    let cidr: IpNet = json["ips"][0]["address"].as_str().unwrap().parse().unwrap();
    cidr.addr()
}

fn inside(address: IpAddr, cidr: &str) -> bool {
    cidr.parse::<IpNet>().unwrap().contains(&address)
}

#[test]
fn plugin_and_daemon_assign_by_annotations_and_release_everything() {
    if !require_root("plugin_and_daemon_assign_by_annotations_and_release_everything") {
        return;
    }
    let mut cluster = Cluster::start();
    cluster.put(GROUP, "ippools", pool("default", "10.80.0.0/24", json!({})));
    // Named pools are used as named, whatever their selector says; automatic choice skips them.
    let elsewhere = json!({"nodeSelector": "rack == 'far'"});
    cluster.put(
        GROUP,
        "ippools",
        pool("team-pool", "10.81.0.0/24", elsewhere.clone()),
    );
    cluster.put(
        GROUP,
        "ippools",
        pool("pod-pool", "10.82.0.0/24", elsewhere.clone()),
    );
    cluster.put(
        GROUP,
        "ippools",
        pool("a-disabled", "10.83.0.0/24", json!({"disabled": true})),
    );
    let mut tiny = elsewhere;
    tiny["blockSize"] = json!(30);
    cluster.put(GROUP, "ippools", pool("tiny", "10.84.0.0/30", tiny));
    cluster.put(
        GROUP,
        "ipreservations",
        json!({"apiVersion": GROUP, "kind": "IPReservation", "metadata": {"name": "keep-out"},
               "spec": {"reservedCIDRs": ["10.80.0.0/29", "10.84.0.0/31", "10.84.0.3"]}}),
    );
    cluster.put(
        "v1",
        "namespaces",
        namespace(
            "team",
            json!({"cni.projectcalico.org/ipv4pools": "[\"team-pool\"]"}),
        ),
    );
    cluster.put("v1", "namespaces", namespace("burst", json!({})));
    cluster.start_daemon();
    let node = node_namespace();
    let socket = cluster.socket.clone();

    // Pod annotation beats namespace annotation; the namespace's beats automatic choice.
    cluster.put("v1", "pods", pod("team", "by-namespace", json!({})));
    cluster.put(
        "v1",
        "pods",
        pod(
            "team",
            "by-pod",
            json!({"cni.projectcalico.org/ipv4pools": "[\"pod-pool\"]"}),
        ),
    );
    let by_namespace_ns = Netns::new("pod");
    let by_pod_ns = Netns::new("pod");
    let by_namespace = address_of(&run(
        &node,
        &socket,
        "ADD",
        &by_namespace_ns,
        "team",
        "by-namespace",
    ));
    let by_pod = address_of(&run(&node, &socket, "ADD", &by_pod_ns, "team", "by-pod"));
    assert!(inside(by_namespace, "10.81.0.0/24"), "{by_namespace}");
    assert!(inside(by_pod, "10.82.0.0/24"), "{by_pod}");

    // ipAddrs: exactly that address; a second pod asking for it fails and says who has it.
    for name in ["fixed-0", "fixed-1"] {
        cluster.put(
            "v1",
            "pods",
            pod(
                "burst",
                name,
                json!({"cni.projectcalico.org/ipAddrs": "[\"10.80.0.200\"]"}),
            ),
        );
    }
    let fixed0_ns = Netns::new("pod");
    let fixed1_ns = Netns::new("pod");
    let fixed = address_of(&run(&node, &socket, "ADD", &fixed0_ns, "burst", "fixed-0"));
    assert_eq!(fixed, "10.80.0.200".parse::<IpAddr>().unwrap());
    let clash = run(&node, &socket, "ADD", &fixed1_ns, "burst", "fixed-1");
    assert!(!clash.success);
    assert!(
        clash.stdout.contains("10.80.0.200") && clash.stdout.contains("burst/fixed-0"),
        "{}",
        clash.stdout
    );

    // The disabled pool is refused when named.
    cluster.put(
        "v1",
        "pods",
        pod(
            "burst",
            "wants-disabled",
            json!({"cni.projectcalico.org/ipv4pools": "[\"a-disabled\"]"}),
        ),
    );
    let disabled_ns = Netns::new("pod");
    let disabled = run(
        &node,
        &socket,
        "ADD",
        &disabled_ns,
        "burst",
        "wants-disabled",
    );
    assert!(
        !disabled.success && disabled.stdout.contains("a-disabled"),
        "{}",
        disabled.stdout
    );

    // The tiny pool has one unreserved address: the second pod fails naming the pool.
    for name in ["tiny-0", "tiny-1"] {
        cluster.put(
            "v1",
            "pods",
            pod(
                "burst",
                name,
                json!({"cni.projectcalico.org/ipv4pools": "[\"tiny\"]"}),
            ),
        );
    }
    let tiny0_ns = Netns::new("pod");
    let tiny1_ns = Netns::new("pod");
    let tiny_address = address_of(&run(&node, &socket, "ADD", &tiny0_ns, "burst", "tiny-0"));
    assert_eq!(
        tiny_address,
        "10.84.0.2".parse::<IpAddr>().unwrap(),
        "reserved ones skipped"
    );
    let exhausted = run(&node, &socket, "ADD", &tiny1_ns, "burst", "tiny-1");
    assert!(
        !exhausted.success && exhausted.stdout.contains("tiny"),
        "{}",
        exhausted.stdout
    );

    // Fifty pods at once: distinct addresses, none disabled or reserved.
    let pods: Vec<(String, Netns)> = (0..BURST)
        .map(|i| {
            let name = format!("burst-{i}");
            cluster.put("v1", "pods", pod("burst", &name, json!({})));
            (name, Netns::new("pod"))
        })
        .collect();
    let outputs: Vec<PluginOutput> = std::thread::scope(|scope| {
        let handles: Vec<_> = pods
            .iter()
            .map(|(name, ns)| {
                let (node, socket) = (&node, &socket);
                scope.spawn(move || run(node, socket, "ADD", ns, "burst", name))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = BTreeSet::new();
    for output in &outputs {
        let address = address_of(output);
        assert!(seen.insert(address), "{address} handed out twice");
        assert!(inside(address, "10.80.0.0/24"), "{address}");
        assert!(
            !inside(address, "10.80.0.0/29"),
            "reserved {address} handed out"
        );
    }
    assert_eq!(seen.len(), BURST);
    let (allocations, problems) = cluster.check_problems();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(allocations, BURST + 4);

    // Fifty DELs at once release them all.
    let deleted: Vec<PluginOutput> = std::thread::scope(|scope| {
        let handles: Vec<_> = pods
            .iter()
            .map(|(name, ns)| {
                let (node, socket) = (&node, &socket);
                scope.spawn(move || run(node, socket, "DEL", ns, "burst", name))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(deleted.iter().all(|o| o.success), "a DEL failed");
    for (ns, namespace_name, name) in [
        (&by_namespace_ns, "team", "by-namespace"),
        (&by_pod_ns, "team", "by-pod"),
        (&fixed0_ns, "burst", "fixed-0"),
        (&tiny0_ns, "burst", "tiny-0"),
    ] {
        assert!(run(&node, &socket, "DEL", ns, namespace_name, name).success);
    }
    let (allocations, problems) = cluster.check_problems();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(allocations, 0, "everything released");
    if let Some(daemon) = cluster.daemon.take() {
        cluster.runtime.block_on(daemon.shutdown());
    }
}

/// One plugin run for a given sandbox, with `stdin` as the network configuration.
fn run_sandbox(
    node: &Netns,
    socket: &std::path::Path,
    command: &str,
    sandbox: (&Netns, &str),
    pod_name: &str,
    stdin: String,
) -> PluginOutput {
    let (pod_ns, container) = sandbox;
    let path = pod_ns.path();
    invoke(
        node,
        PLUGIN,
        &Invocation {
            command,
            container_id: container,
            netns: Some(&path),
            interface: "eth0",
            cni_args: Some(kubelet_args("gc", pod_name, container)),
            socket,
            stdin,
        },
    )
}

/// The network configuration of a GC: the runtime's valid attachments, and no grace so the
/// allocations this test has just made count as stale.
fn gc_config(valid: &[&str]) -> String {
    let mut config: Value = serde_json::from_str(&network_config("1.1.0")).unwrap();
    config["gc_grace_seconds"] = json!(0);
    config["cni.dev/valid-attachments"] = valid
        .iter()
        .map(|id| json!({"containerID": id, "ifname": "eth0"}))
        .collect();
    config.to_string()
}

#[test]
fn gc_through_the_binary_releases_leftovers_and_keeps_valid_pods() {
    if !require_root("gc_through_the_binary_releases_leftovers_and_keeps_valid_pods") {
        return;
    }
    let mut cluster = Cluster::start();
    cluster.put(GROUP, "ippools", pool("default", "10.90.0.0/24", json!({})));
    cluster.put("v1", "namespaces", namespace("gc", json!({})));
    for name in ["leftover", "valid", "recreated", "rerouted"] {
        cluster.put("v1", "pods", pod("gc", name, json!({})));
    }
    cluster.start_daemon();
    let node = node_namespace();
    let socket = cluster.socket.clone();
    let add = |sandbox: (&Netns, &str), name: &str| {
        let output = run_sandbox(
            &node,
            &socket,
            "ADD",
            sandbox,
            name,
            network_config("1.1.0"),
        );
        address_of(&output)
    };
    // The leftover pod's sandbox leaked (no DEL, namespace still there); the recreated pod got
    // a new sandbox without a DEL for the first.
    let leftover_ns = Netns::new("pod");
    let valid_ns = Netns::new("pod");
    let first_ns = Netns::new("pod");
    let second_ns = Netns::new("pod");
    add((&leftover_ns, "ctr-leftover"), "leftover");
    let valid = add((&valid_ns, "ctr-valid"), "valid");
    add((&first_ns, "ctr-first"), "recreated");
    let recreated = add((&second_ns, "ctr-second"), "recreated");
    // A stale pod whose veth also routes an address GC does not release (as a newer sandbox's
    // would): its address goes, its veth stays.
    let rerouted_ns = Netns::new("pod");
    add((&rerouted_ns, "ctr-rerouted"), "rerouted");
    let rerouted_veth = expected_veth("gc", "rerouted");
    node.ip(&["route", "add", "10.90.0.250/32", "dev", &rerouted_veth]);
    assert_eq!(cluster.check_problems().0, 5);
    let leftover_veth = expected_veth("gc", "leftover");
    assert!(link_exists(&node, &leftover_veth));

    // GC without the list is refused naming the field, and changes nothing.
    let mut no_list: Value = serde_json::from_str(&network_config("1.1.0")).unwrap();
    no_list["gc_grace_seconds"] = json!(0);
    let refused = run_sandbox(
        &node,
        &socket,
        "GC",
        (&valid_ns, ""),
        "valid",
        no_list.to_string(),
    );
    assert!(!refused.success);
    assert_eq!(refused.json()["code"], 7, "{}", refused.stdout);
    assert!(
        refused.stdout.contains("cni.dev/valid-attachments"),
        "{}",
        refused.stdout
    );
    assert_eq!(cluster.check_problems().0, 5);

    let collected = run_sandbox(
        &node,
        &socket,
        "GC",
        (&valid_ns, ""),
        "valid",
        gc_config(&["ctr-valid", "ctr-second"]),
    );
    assert!(
        collected.success && collected.stdout.is_empty(),
        "GC failed: {} {}",
        collected.stdout,
        collected.stderr
    );
    // The leaked sandbox's address and veth are gone (its pod side went with the pair).
    let (allocations, problems) = cluster.check_problems();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        allocations, 2,
        "the leftover, the first sandbox and the rerouted pod released"
    );
    assert!(!link_exists(&node, &leftover_veth), "leftover veth kept");
    assert!(link_exists(&node, &rerouted_veth), "a veth in use removed");
    assert!(!link_exists(&leftover_ns, "eth0"));
    // The valid pod and the recreated pod's new sandbox are untouched and still reach the node.
    for (ns, name, address) in [
        (&valid_ns, "valid", valid),
        (&second_ns, "recreated", recreated),
    ] {
        assert!(link_exists(&node, &expected_veth("gc", name)), "{name}");
        let shown = ns.ip(&["-o", "addr", "show", "dev", "eth0"]);
        assert!(shown.contains(&address.to_string()), "{name}: {shown}");
        assert!(ns.ping(NODE_ADDRESS), "{name} cannot reach the node");
    }

    // Again: nothing more to do.
    let again = run_sandbox(
        &node,
        &socket,
        "GC",
        (&valid_ns, ""),
        "valid",
        gc_config(&["ctr-valid", "ctr-second"]),
    );
    assert!(again.success, "{}", again.stdout);
    assert_eq!(cluster.check_problems().0, 2);
    if let Some(daemon) = cluster.daemon.take() {
        cluster.runtime.block_on(daemon.shutdown());
    }
}
