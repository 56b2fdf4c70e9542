//! Shared pieces of the CNI plugin tests: namespaces with Drop guards, a node namespace that
//! stands in for the host, the in-test IPAM server on a temporary socket, and a runner that
//! executes the built `starling` binary as a CNI plugin inside the node namespace.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling::cni::fake_ipam::CountingAllocator;
use starling::cni::ipam_protocol::{IpamRequest, IpamResponse};

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_starling");

/// The node namespace's own address (on a dummy interface), which pods ping.
pub const NODE_ADDRESS: &str = "192.168.250.1";

/// Runs a command and fails the test with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Netns {
    pub fn new(role: &str) -> Netns {
        let name = format!(
            "stcni-{role}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name))
    }

    /// `ip -n <name> <args>`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a program inside the namespace; returns the raw output.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {program} in {}: {error}", self.name))
    }

    pub fn ping(&self, address: &str) -> bool {
        self.exec("ping", &["-c", "1", "-W", "2", address])
            .status
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A namespace standing in for the node: an address to ping and a default route (proxy ARP for
/// 169.254.1.1 answers only when the host has a route to it, through another interface).
pub fn node_namespace() -> Netns {
    let node = Netns::new("node");
    // No dummy module on every kernel: a veth pair whose both ends stay in the node.
    node.ip(&[
        "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
    ]);
    node.ip(&[
        "addr",
        "add",
        &format!("{NODE_ADDRESS}/24"),
        "dev",
        "uplink0",
    ]);
    node.ip(&["link", "set", "uplink0", "up"]);
    node.ip(&["link", "set", "uplink1", "up"]);
    node.ip(&[
        "route",
        "add",
        "default",
        "via",
        "192.168.250.254",
        "dev",
        "uplink0",
    ]);
    node
}

/// The in-test IPAM server: the counting allocator behind a real control socket.
pub struct IpamServer {
    pub socket: PathBuf,
    pub allocator: Arc<CountingAllocator>,
    _directory: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IpamServer {
    pub fn start(pool: &str) -> IpamServer {
        IpamServer::start_with(CountingAllocator::new(pool.parse().unwrap(), None))
    }

    pub fn start_dual_stack(ipv4_pool: &str, ipv6_pool: &str) -> IpamServer {
        IpamServer::start_with(CountingAllocator::new(
            ipv4_pool.parse().unwrap(),
            Some(ipv6_pool.parse().unwrap()),
        ))
    }

    pub fn start_with(allocator: CountingAllocator) -> IpamServer {
        let directory = tempfile::tempdir().unwrap();
        let socket = directory.path().join("starling.sock");
        let allocator = Arc::new(allocator);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let server_socket = socket.clone();
        let server_allocator = allocator.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let serve = starling::control::serve(
                    &server_socket,
                    move |request: IpamRequest| {
                        let allocator = server_allocator.clone();
                        async move { allocator.handle(request) }
                    },
                    IpamResponse::garbage,
                );
                tokio::select! {
                    result = serve => result.unwrap(),
                    _ = stop => {}
                }
            });
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the IPAM server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        IpamServer {
            socket,
            allocator,
            _directory: directory,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Assign requests seen so far.
    pub fn assign_count(&self) -> usize {
        self.allocator
            .requests()
            .iter()
            .filter(|request| matches!(request, IpamRequest::Assign(_)))
            .count()
    }
}

impl Drop for IpamServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One plugin invocation: its environment and stdin.
pub struct Invocation<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: Option<&'a Path>,
    pub interface: &'a str,
    pub cni_args: Option<String>,
    pub socket: &'a Path,
    pub stdin: String,
}

pub struct PluginOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl PluginOutput {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "stdout is not JSON ({error}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `program` (the starling binary, or another plugin) as a CNI plugin inside `node`.
pub fn invoke(node: &Netns, program: &str, invocation: &Invocation) -> PluginOutput {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &node.name, program])
        .env("CNI_COMMAND", invocation.command)
        .env("CNI_CONTAINERID", invocation.container_id)
        .env("CNI_IFNAME", invocation.interface)
        .env("CNI_PATH", "/usr/lib/cni")
        .env("STARLING_CONTROL_SOCKET", invocation.socket)
        .env("STARLING_MTU_FILE", "/nonexistent/starling-test/mtu")
        .env_remove("FELIX_INTERFACEPREFIX")
        .env_remove("STARLING_ROUTE_PROTOCOL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match invocation.netns {
        Some(path) => command.env("CNI_NETNS", path),
        None => command.env_remove("CNI_NETNS"),
    };
    match &invocation.cni_args {
        Some(args) => command.env("CNI_ARGS", args),
        None => command.env_remove("CNI_ARGS"),
    };
    let mut child = command.spawn().expect("spawning the plugin");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(invocation.stdin.as_bytes());
    }
    let output = child.wait_with_output().expect("waiting for the plugin");
    PluginOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn kubelet_args(namespace: &str, pod: &str, container: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={container}"
    )
}

pub fn network_config(version: &str) -> String {
    format!(
        r#"{{"cniVersion":"{version}","name":"k8s-pod-network","type":"starling","mtu":1400,"ipam":{{"type":"starling-ipam"}},"kubernetes":{{"kubeconfig":"/etc/cni/net.d/starling-kubeconfig"}}}}"#
    )
}

/// The host-side name, computed independently of the plugin's code.
pub fn expected_veth(namespace: &str, pod: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(format!("{namespace}.{pod}"));
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("cali{}", &hex[..11])
}

/// Whether `ip -n node link show name` finds the interface.
pub fn link_exists(node: &Netns, name: &str) -> bool {
    Command::new("ip")
        .args(["-n", &node.name, "link", "show", name])
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false)
}
