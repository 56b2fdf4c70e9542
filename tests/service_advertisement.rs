//! Service address advertisement end to end: two `starling run` daemons (node namespaces, the
//! Kubernetes datastore on the API test server, which serves from a third namespace on the lab
//! bridge) peer with BIRD 2 through a global BGPPeer. BIRD must hold exactly the right prefixes
//! per node: the BGPConfiguration's service ranges from both; a Service with
//! `externalTrafficPolicy: Local` only from the node holding its ready endpoint, following the
//! endpoint when the EndpointSlice moves it, gone when the endpoints are; a `Cluster` Service's
//! load-balancer /32 from both once aggregation is Disabled. Root, bird and birdc only.

#[path = "support/bgp_daemons.rs"]
mod bgp_daemons;
#[path = "support/bgp_peers.rs"]
mod bgp_peers;
#[path = "support/kube_api.rs"]
mod kube_api;
#[path = "support/metrics_scrape.rs"]
mod metrics_scrape;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::{require_programs, require_root};

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use bgp_daemons::*;
use bgp_peers::*;
use ipnet::IpNet;
use kube_api::KubeApiServer;
use serde_json::{json, Value};

const CALICO: &str = "crd.projectcalico.org/v1";
const AS: u32 = 64512;
const WAIT: Duration = Duration::from_secs(20);
/// Lab namespaces: the two Starling nodes, BIRD, the API server.
const NODES: [&str; 2] = ["node-a", "node-b"];
const BIRD_INDEX: usize = 2;
const SERVER_INDEX: usize = 3;
const METRICS_PORT: u16 = 9091;

const RANGES: [&str; 3] = ["10.96.0.0/16", "192.0.2.0/24", "198.51.100.0/24"];
/// The Local Service `web`: cluster IP, external IP, load-balancer IP.
const WEB: [&str; 3] = ["10.96.0.10/32", "192.0.2.10/32", "198.51.100.10/32"];
/// An external IP added to `web` later.
const WEB_SECOND_EXTERNAL: &str = "192.0.2.11/32";
/// The Cluster Service `api`'s load-balancer IP.
const API_LOAD_BALANCER: &str = "198.51.100.20/32";

/// The prefixes of all `parts` together.
fn prefixes(parts: &[&[&str]]) -> BTreeSet<String> {
    parts
        .iter()
        .flat_map(|part| part.iter())
        .map(|prefix| prefix.to_string())
        .collect()
}

fn bgp_configuration(aggregation: &str) -> Value {
    json!({
        "apiVersion": CALICO, "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": {
            "nodeToNodeMeshEnabled": false,
            "asNumber": AS,
            "serviceClusterIPs": [{"cidr": RANGES[0]}],
            "serviceExternalIPs": [{"cidr": RANGES[1]}],
            "serviceLoadBalancerIPs": [{"cidr": RANGES[2]}],
            "serviceLoadBalancerAggregation": aggregation,
        }
    })
}

fn service(name: &str, policy: &str, cluster_ip: &str, external: &[&str], balancer: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "default", "name": name},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
            "externalIPs": external,
            "externalTrafficPolicy": policy,
            "ports": [{"port": 80}],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": balancer}]}}
    })
}

/// `web`'s EndpointSlice with one ready endpoint on `node`, or none.
fn web_slice(node: Option<&str>) -> Value {
    let endpoints: Vec<Value> = node
        .map(|node| {
            json!({"addresses": ["10.244.0.5"], "nodeName": node, "conditions": {"ready": true}})
        })
        .into_iter()
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "web-x1",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"port": 80}],
    })
}

/// `starling run` for lab node `index` with the Kubernetes datastore behind `kubeconfig`.
fn start_daemon(index: usize, namespace: &str, kubeconfig: &Path, directory: &Path) -> Daemon {
    let files = directory.join(NODES[index]);
    std::fs::create_dir_all(&files).unwrap();
    let variables = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("DATASTORE_TYPE", "kubernetes".into()),
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("NODENAME", NODES[index].into()),
        ("IP", format!("{}/24", Lab::address(index))),
        ("CALICO_NETWORKING_BACKEND", "bird".into()),
        ("NO_DEFAULT_POOLS", "true".into()),
        ("FELIX_IPV6SUPPORT", "false".into()),
        ("FELIX_HEALTHHOST", "127.0.0.1".into()),
        ("FELIX_PROMETHEUSMETRICSENABLED", "true".into()),
        ("FELIX_PROMETHEUSMETRICSHOST", "127.0.0.1".into()),
        ("FELIX_PROMETHEUSMETRICSPORT", METRICS_PORT.to_string()),
        (
            "CALICO_NODENAME_FILE",
            files.join("nodename").display().to_string(),
        ),
        ("STARLING_MTU_FILE", files.join("mtu").display().to_string()),
        (
            "STARLING_CONTROL_SOCKET",
            files.join("starling.sock").display().to_string(),
        ),
        ("RUST_LOG", "info,starling=debug".into()),
    ];
    // `env -i`: the daemon sees exactly calico-node's variables, nothing of the test's.
    let mut arguments: Vec<String> = vec!["env".into(), "-i".into()];
    arguments.extend(
        variables
            .iter()
            .map(|(name, value)| format!("{name}={value}")),
    );
    arguments.push(env!("CARGO_BIN_EXE_starling").into());
    arguments.push("run".into());
    Daemon::spawn(
        namespace,
        NODES[index],
        &arguments,
        &directory.join(format!("{}.log", NODES[index])),
    )
}

/// Prefixes BIRD holds from one protocol (the first column of `show route`).
fn bird_routes_from(bird: &Bird, protocol: &str) -> BTreeSet<String> {
    bird.try_command(&format!("show route protocol {protocol}"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| word.parse::<IpNet>().is_ok())
        .map(str::to_string)
        .collect()
}

/// `starling_service_routes_advertised{source}` from a node's Prometheus endpoint.
fn service_route_metric(namespace: &str, source: &str) -> Option<i64> {
    let text = metrics_scrape::metrics_text(namespace, METRICS_PORT)?;
    let series = format!("starling_service_routes_advertised{{source=\"{source}\"}}");
    metrics_scrape::series_value(&text, &series).map(|value| value as i64)
}

/// Fields drop in order: daemons and BIRD before their namespaces.
struct Cluster {
    _daemons: Vec<Daemon>,
    bird: Bird,
    directory: tempfile::TempDir,
    lab: Lab,
}

impl Cluster {
    /// Waits until BIRD holds exactly `expected[i]` from node `i`.
    fn expect(&self, what: &str, expected: [BTreeSet<String>; 2]) {
        let actual = || NODES.map(|node| bird_routes_from(&self.bird, &node.replace('-', "_")));
        if eventually(WAIT, || actual() == expected) {
            return;
        }
        let logs: String = NODES
            .iter()
            .map(|node| {
                let log =
                    std::fs::read_to_string(self.directory.path().join(format!("{node}.log")))
                        .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                format!(
                    "--- {node}.log (last lines, newest first)\n{}\n",
                    tail.join("\n")
                )
            })
            .collect();
        panic!(
            "{what}: bird holds {:?} from node-a, node-b; expected {expected:?}\n{}\n{logs}",
            actual(),
            self.bird.try_command("show route all").unwrap_or_default(),
        );
    }

    /// Whether BIRD's kernel routes `prefix` via node `index` and via nothing else.
    fn kernel_routes_via(&self, prefix: &str, index: usize) -> bool {
        let routes = kernel_routes(self.lab.namespace(BIRD_INDEX), prefix);
        routes.len() == 1 && kernel_has(self.lab.namespace(BIRD_INDEX), prefix, Lab::address(index))
    }

    fn expect_metric(&self, index: usize, source: &str, value: i64) {
        let namespace = self.lab.namespace(index);
        assert!(
            eventually(WAIT, || service_route_metric(namespace, source)
                == Some(value)),
            "{}: starling_service_routes_advertised{{source={source}}} is {:?}, expected {value}",
            NODES[index],
            service_route_metric(namespace, source)
        );
    }
}

#[test]
fn local_services_follow_their_endpoints_and_ranges_stay() {
    let test = "local_services_follow_their_endpoints_and_ranges_stay";
    if !require_root(test) || !require_programs(test, &["bird", "birdc"]) {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = Lab::new("sv", 4);
    let directory = tempfile::tempdir().unwrap();

    // The API server listens on the lab bridge from its own namespace.
    let server_address = Lab::address(SERVER_INDEX);
    let listener = starling::netns::run_in(lab.namespace(SERVER_INDEX), || {
        std::net::TcpListener::bind((server_address, 0)).unwrap()
    })
    .unwrap();
    let server = runtime.block_on(KubeApiServer::start_on(listener));
    let kubeconfig = server.write_kubeconfig();
    for node in NODES {
        server.put_object(
            "v1",
            "nodes",
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}},
                   "spec": {}}),
        );
    }
    server.put_object(CALICO, "bgpconfigurations", bgp_configuration("Enabled"));
    // A Cluster Service, there from the start (the daemons' initial list): under an aggregated
    // load-balancer range it gets no /32 (the exact sets below say so once a node has shown
    // `web`, which comes later).
    server.put_object(
        "v1",
        "services",
        service("api", "Cluster", "10.96.0.20", &[], "198.51.100.20"),
    );
    let bird_address: Ipv4Addr = Lab::address(BIRD_INDEX);
    server.put_object(
        CALICO,
        "bgppeers",
        json!({"apiVersion": CALICO, "kind": "BGPPeer", "metadata": {"name": "bird"},
               "spec": {"peerIP": bird_address.to_string(), "asNumber": AS}}),
    );

    let protocols: String = (0..NODES.len())
        .map(|index| {
            bird_bgp(
                &NODES[index].replace('-', "_"),
                bird_address,
                AS,
                Lab::address(index),
                AS,
                "",
            )
        })
        .collect();
    let bird = Bird::start(
        lab.namespace(BIRD_INDEX),
        directory.path(),
        "bird",
        &bird_config(bird_address, &[], &protocols),
    );
    let daemons: Vec<Daemon> = (0..NODES.len())
        .map(|index| {
            start_daemon(
                index,
                lab.namespace(index),
                kubeconfig.path(),
                directory.path(),
            )
        })
        .collect();
    let cluster = Cluster {
        _daemons: daemons,
        bird,
        directory,
        lab,
    };
    assert!(
        eventually(WAIT, || cluster.bird.established("node_a")
            && cluster.bird.established("node_b")),
        "sessions never established: {:?}",
        cluster.bird.try_command("show protocols all")
    );

    // No Services yet: both nodes advertise the three ranges.
    let ranges = prefixes(&[&RANGES]);
    cluster.expect("ranges only", [ranges.clone(), ranges.clone()]);
    cluster.expect_metric(0, "ranges", 3);

    // A Local Service with its endpoint on node-a: only node-a advertises its addresses.
    server.put_object(
        "v1",
        "services",
        service(
            "web",
            "Local",
            "10.96.0.10",
            &["192.0.2.10"],
            "198.51.100.10",
        ),
    );
    server.put_object(
        "discovery.k8s.io/v1",
        "endpointslices",
        web_slice(Some("node-a")),
    );
    let with_web = prefixes(&[&RANGES, &WEB]);
    cluster.expect(
        "web's endpoint on node-a",
        [with_web.clone(), ranges.clone()],
    );
    assert!(
        cluster.kernel_routes_via("10.96.0.10", 0),
        "BIRD's kernel: {:?}",
        kernel_routes(cluster.lab.namespace(BIRD_INDEX), "10.96.0.10")
    );
    cluster.expect_metric(0, "services", 3);
    cluster.expect_metric(1, "services", 0);

    // The endpoint moves to node-b: the /32s follow it.
    server.put_object(
        "discovery.k8s.io/v1",
        "endpointslices",
        web_slice(Some("node-b")),
    );
    cluster.expect("web's endpoint moved to node-b", [ranges.clone(), with_web]);
    assert!(
        eventually(WAIT, || cluster.kernel_routes_via("198.51.100.10", 1)),
        "BIRD's kernel: {:?}",
        kernel_routes(cluster.lab.namespace(BIRD_INDEX), "198.51.100.10")
    );

    // A changed Service: its new external IP comes from node-b alone too.
    server.put_object(
        "v1",
        "services",
        service(
            "web",
            "Local",
            "10.96.0.10",
            &["192.0.2.10", "192.0.2.11"],
            "198.51.100.10",
        ),
    );
    let with_two = prefixes(&[&RANGES, &WEB, &[WEB_SECOND_EXTERNAL]]);
    cluster.expect(
        "web's second external IP on node-b",
        [ranges.clone(), with_two],
    );

    // No endpoints left: the /32s go, the ranges stay.
    server.put_object("discovery.k8s.io/v1", "endpointslices", web_slice(None));
    cluster.expect("web without endpoints", [ranges.clone(), ranges]);
    cluster.expect_metric(1, "services", 0);

    // Aggregation Disabled: the load-balancer range is no longer advertised, and the Cluster
    // Service's load-balancer /32 comes from every node.
    server.put_object(CALICO, "bgpconfigurations", bgp_configuration("Disabled"));
    let disaggregated = prefixes(&[&[RANGES[0], RANGES[1], API_LOAD_BALANCER]]);
    cluster.expect(
        "aggregation disabled",
        [disaggregated.clone(), disaggregated],
    );
    cluster.expect_metric(0, "ranges", 2);
    cluster.expect_metric(0, "services", 1);

    drop(cluster);
    drop(server);
}
