//! Test-only helpers for the BGP interoperability tests and benchmarks: a small lab of network
//! namespaces on one bridge, daemon processes inside them (the peers themselves are wrapped in
//! `bgp_daemons.rs`), kernel route checks, and the Starling speaker running in a namespace with
//! its learned routes programmed by the dataplane driver.
//!
//! Cleanup: every namespace is a `NetnsGuard` (deleted on drop, also when a test panics) and
//! every daemon a [`Daemon`] (killed on drop). Declare daemons after the lab so they are dropped
//! first. Nothing here touches the root namespace's links, routes or firewall.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use starling::bgp::speaker::SpeakerHandle;
use starling::dataplane::driver::{self, DriverOptions, DriverStatus};
use starling::dataplane::netlink::NetlinkKernel;
use starling::metrics::Metrics;
use starling::netns::{self, NetnsGuard};
use starling::route_deltas;
use starling::status::PeerStatus;
use starling_bgp::config::SpeakerConfig;
use starling_bgp::peering::{PeerKind, SessionSpec};
use starling_bgp::policy::{CalicoPolicy, OwnBlock, PoolFacts};
use starling_calc::desired::compute;
use starling_calc::spec::DataplaneConfig;
use starling_calc::spec::DataplaneInput;
use starling_model::pool::PoolEncapsulation;
use starling_model::{AsNumber, NextHopMode};
use tokio::sync::{mpsc, watch};

/// The lab's shared subnet; node `i` has `10.77.0.(11 + i)`.
pub const POOL: &str = "10.244.0.0/16";

/// Polls `check` until it is true or `limit` passes.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a command and returns stdout, panicking with the output when it fails.
pub fn run(program: &str, arguments: &[&str]) -> String {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|error| panic!("{program} {arguments:?}: {error}"));
    assert!(
        output.status.success(),
        "{program} {arguments:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command and returns stdout when it succeeded.
pub fn try_output(program: &str, arguments: &[&str]) -> Option<String> {
    let output = Command::new(program).args(arguments).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Namespaces `node0..nodeN` with `eth0` on a bridge in a hub namespace.
pub struct Lab {
    pub nodes: Vec<NetnsGuard>,
    hub: NetnsGuard,
}

impl Lab {
    pub fn new(tag: &str, count: usize) -> Lab {
        let hub = netns::create(&netns::unique_name(&format!("stb{tag}h"))).unwrap();
        run(
            "ip",
            &["-n", hub.name(), "link", "add", "br0", "type", "bridge"],
        );
        run("ip", &["-n", hub.name(), "link", "set", "br0", "up"]);
        let mut nodes = Vec::new();
        for index in 0..count {
            let node = netns::create(&netns::unique_name(&format!("stb{tag}{index}"))).unwrap();
            let port = format!("p{index}");
            run(
                "ip",
                &[
                    "-n",
                    hub.name(),
                    "link",
                    "add",
                    &port,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    node.name(),
                ],
            );
            run(
                "ip",
                &[
                    "-n",
                    hub.name(),
                    "link",
                    "set",
                    &port,
                    "master",
                    "br0",
                    "up",
                ],
            );
            let address = format!("{}/24", Lab::address(index));
            run("ip", &["-n", node.name(), "link", "set", "lo", "up"]);
            run(
                "ip",
                &["-n", node.name(), "addr", "add", &address, "dev", "eth0"],
            );
            let address6 = format!("{}/64", Lab::address6(index));
            run(
                "ip",
                &[
                    "-n",
                    node.name(),
                    "addr",
                    "add",
                    &address6,
                    "dev",
                    "eth0",
                    "nodad",
                ],
            );
            run("ip", &["-n", node.name(), "link", "set", "eth0", "up"]);
            nodes.push(node);
        }
        Lab { nodes, hub }
    }

    pub fn address(index: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, 11 + index as u8)
    }

    pub fn address6(index: usize) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 11 + index as u16)
    }

    pub fn namespace(&self, index: usize) -> &str {
        self.nodes[index].name()
    }
}

/// A daemon killed (and reaped) on drop.
pub struct Daemon {
    child: Option<Child>,
    pub name: String,
}

impl Daemon {
    pub fn spawn(namespace: &str, name: &str, arguments: &[String], log: &Path) -> Daemon {
        let log_file = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", namespace])
            .args(arguments)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        Daemon {
            child: Some(child),
            name: name.to_string(),
        }
    }

    /// Kills the daemon without any goodbye (like a crash), waiting until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- kernel checks

/// Routes in a namespace's main table for `prefix`, as `ip -j route` reports them.
pub fn kernel_routes(namespace: &str, prefix: &str) -> Vec<serde_json::Value> {
    let text = run("ip", &["-n", namespace, "-j", "route", "show", prefix]);
    if text.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&text).unwrap_or_default()
}

/// Whether `prefix` is routed via `gateway` in the namespace's kernel.
pub fn kernel_has(namespace: &str, prefix: &str, gateway: Ipv4Addr) -> bool {
    kernel_routes(namespace, prefix).iter().any(|route| {
        route["gateway"].as_str() == Some(&gateway.to_string())
            && route["dst"].as_str() == Some(prefix)
    })
}

/// Number of routes of one protocol (`bird`, `81`, ...) in the namespace's main table.
pub fn kernel_route_count(namespace: &str, protocol: &str) -> usize {
    let output = Command::new("ip")
        .args(["-n", namespace, "route", "show", "proto", protocol])
        .output()
        .unwrap();
    output.stdout.iter().filter(|byte| **byte == b'\n').count()
}

// ---------------------------------------------------------------- Starling

/// Commands to the speaker running in its namespace.
enum Control {
    Update(Box<SpeakerConfig>),
    Status(std::sync::mpsc::Sender<Vec<PeerStatus>>),
    Shutdown(bool),
    LearnedCount(std::sync::mpsc::Sender<usize>),
}

async fn deltas_ready(receiver: Option<&route_deltas::DeltaReceiver>) {
    match receiver {
        Some(receiver) => receiver.wait().await,
        None => std::future::pending().await,
    }
}

/// The Starling speaker in a namespace, its learned routes programmed into that namespace's
/// kernel by the dataplane driver (`driver::run` with the netlink kernel, fed the speaker's
/// per-prefix deltas as in the daemon).
pub struct Starling {
    control: mpsc::UnboundedSender<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub config: SpeakerConfig,
}

impl Starling {
    pub fn start(namespace: &str, config: SpeakerConfig) -> Starling {
        Starling::launch(namespace, config, false, true)
    }

    /// Starts the speaker alone: learned routes are counted but not programmed (benchmarks use
    /// it to tell the speaker's memory from the dataplane's).
    pub fn start_without_dataplane(namespace: &str, config: SpeakerConfig) -> Starling {
        Starling::launch(namespace, config, false, false)
    }

    /// Starts the speaker as after a graceful restart of this node (Restart State bit set).
    pub fn start_restarting(namespace: &str, config: SpeakerConfig) -> Starling {
        Starling::launch(namespace, config, true, true)
    }

    fn launch(
        namespace: &str,
        config: SpeakerConfig,
        restarting: bool,
        with_dataplane: bool,
    ) -> Starling {
        let (control, mut commands) = mpsc::unbounded_channel();
        let namespace = namespace.to_string();
        let initial = config.clone();
        let thread = std::thread::spawn(move || {
            netns::run_async_in(&namespace, move || async move {
                // Learned routes reach the driver as per-prefix deltas, as in the daemon.
                let (deltas_sender, deltas) = route_deltas::channel();
                let speaker = SpeakerHandle::spawn_feeding(
                    initial,
                    Metrics::new(),
                    restarting,
                    deltas_sender,
                );
                let (desired_sender, desired) = watch::channel(Arc::new(compute(&DataplaneInput {
                    config: DataplaneConfig {
                        ip_forwarding: false,
                        ipv6_support: true,
                        ..DataplaneConfig::default()
                    },
                    datastore_in_sync: true,
                    ..DataplaneInput::default()
                })));
                let (_kick_sender, kicks) = mpsc::channel(1);
                let (status_sender, status) = watch::channel(DriverStatus::default());
                let kernel = NetlinkKernel::connect().unwrap();
                let options = DriverOptions {
                    manage_nat: false,
                    sysctl_root: None,
                    mtu_file: None,
                    ..DriverOptions::default()
                };
                // Without the dataplane the deltas are only counted.
                let (dataplane, counted) = if with_dataplane {
                    let driver =
                        driver::run(kernel, desired, kicks, Some(deltas), options, status_sender);
                    (Some(tokio::spawn(driver)), None)
                } else {
                    (None, Some(deltas))
                };
                let mut counted_table = BTreeMap::new();
                loop {
                    tokio::select! {
                        () = deltas_ready(counted.as_ref()) => {
                            if let Some(receiver) = &counted {
                                receiver.apply_to(&mut counted_table);
                            }
                        }
                        command = commands.recv() => match command {
                            Some(Control::Update(config)) => speaker.update(*config),
                            Some(Control::Status(reply)) => { let _ = reply.send(speaker.status().await); }
                            Some(Control::LearnedCount(reply)) => {
                                let count = if with_dataplane {
                                    status.borrow().learned_routes
                                } else {
                                    counted_table.len()
                                };
                                let _ = reply.send(count);
                            }
                            Some(Control::Shutdown(graceful)) => {
                                speaker.shutdown(graceful).await;
                                break;
                            }
                            None => {
                                speaker.shutdown(false).await;
                                break;
                            }
                        }
                    }
                }
                drop(desired_sender);
                if let Some(dataplane) = dataplane {
                    let _ = dataplane.await;
                }
            })
            .unwrap();
        });
        Starling {
            control,
            thread: Some(thread),
            config,
        }
    }

    pub fn update(&mut self, config: SpeakerConfig) {
        self.config = config.clone();
        let _ = self.control.send(Control::Update(Box::new(config)));
    }

    pub fn status(&self) -> Vec<PeerStatus> {
        let (sender, receiver) = std::sync::mpsc::channel();
        if self.control.send(Control::Status(sender)).is_err() {
            return Vec::new();
        }
        receiver
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default()
    }

    /// Number of learned routes last published by the speaker.
    pub fn learned_count(&self) -> usize {
        let (sender, receiver) = std::sync::mpsc::channel();
        if self.control.send(Control::LearnedCount(sender)).is_err() {
            return 0;
        }
        receiver.recv_timeout(Duration::from_secs(5)).unwrap_or(0)
    }

    /// Whether the session to `peer` is Established.
    pub fn established(&self, peer: Ipv4Addr) -> bool {
        self.status()
            .iter()
            .any(|row| row.address == IpAddr::V4(peer) && row.state == "up")
    }

    pub fn stop(mut self, graceful: bool) {
        let _ = self.control.send(Control::Shutdown(graceful));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Starling {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Shutdown(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A session specification with Calico's defaults for the lab.
pub fn session(peer: Ipv4Addr, peer_as: u32, local_as: u32, source: Ipv4Addr) -> SessionSpec {
    SessionSpec {
        name: format!("Global_{}", peer.to_string().replace('.', "_")),
        kind: PeerKind::Global,
        peer_address: IpAddr::V4(peer),
        peer_port: 179,
        peer_as: AsNumber(peer_as),
        local_as: AsNumber(local_as),
        source_address: Some(IpAddr::V4(source)),
        passive: false,
        password: None,
        keepalive_time: None,
        graceful_restart_time: None,
        ttl_security: None,
        next_hop_mode: NextHopMode::Auto,
        route_reflector_client_cluster_id: None,
        peer_is_calico_node: false,
        num_allowed_local_as_numbers: None,
        import_limit: None,
        filters: Default::default(),
        bfd: None,
    }
}

/// A speaker configuration for lab node `index` originating `blocks` (its confirmed blocks
/// inside [`POOL`]).
pub fn speaker_config(
    index: usize,
    local_as: u32,
    blocks: &[&str],
    sessions: Vec<SessionSpec>,
) -> SpeakerConfig {
    let blocks: Vec<IpNet> = blocks.iter().map(|block| block.parse().unwrap()).collect();
    SpeakerConfig {
        router_id: Lab::address(index),
        local_as: AsNumber(local_as),
        listen_address: None,
        listen_port: 179,
        sessions: sessions
            .into_iter()
            .map(|spec| (spec.name.clone(), spec))
            .collect::<BTreeMap<_, _>>(),
        passwords: BTreeMap::new(),
        originated: blocks.clone(),
        originated_interfaces: BTreeMap::new(),
        policy: CalicoPolicy {
            own_blocks: blocks
                .iter()
                .map(|cidr| OwnBlock {
                    cidr: *cidr,
                    confirmed: true,
                })
                .collect(),
            pools: vec![PoolFacts {
                cidr: POOL.parse().unwrap(),
                disable_bgp_export: false,
                encapsulation: PoolEncapsulation::NoEncap,
                routes_owned_by_felix: false,
            }],
            ..CalicoPolicy::default()
        },
        graceful_restart_time: Duration::from_secs(120),
    }
}
