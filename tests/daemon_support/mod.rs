//! Shared helpers for the daemon tests: configuration maps, an in-process daemon on a fake
//! kernel, polling with deadlines, and a tiny HTTP client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use starling::daemon::dataplane::KernelMode;
use starling::daemon::{DaemonHandle, DaemonOptions, StartupMode};
use starling::dataplane::fake::FakeKernel;
use starling::datastore::AnyDatastore;
use starling::startup::StartupOutcome;
use starling_calc::compute::Computed;
use starling_model::config::Config;
use starling_model::CalicoNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// Environment for a daemon named `node` with health and metrics on free loopback ports.
pub fn environment(
    node: &str,
    backend: &str,
    socket: &std::path::Path,
) -> BTreeMap<String, String> {
    [
        ("NODENAME", node.to_string()),
        ("CALICO_NETWORKING_BACKEND", backend.to_string()),
        ("FELIX_HEALTHHOST", "127.0.0.1".to_string()),
        ("FELIX_HEALTHPORT", free_port().to_string()),
        ("FELIX_PROMETHEUSMETRICSENABLED", "true".to_string()),
        ("FELIX_PROMETHEUSMETRICSHOST", "127.0.0.1".to_string()),
        ("FELIX_PROMETHEUSMETRICSPORT", free_port().to_string()),
        ("STARLING_CONTROL_SOCKET", socket.display().to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

/// The local node as start-up would have registered it.
pub fn registered(node: &str, address: &str) -> CalicoNode {
    CalicoNode {
        name: node.to_string(),
        ipv4_address: Some(address.parse().unwrap()),
        ..CalicoNode::default()
    }
}

/// A fake kernel with one host interface carrying `address`.
pub fn fake_kernel(address: &str) -> FakeKernel {
    let mut kernel = FakeKernel::new();
    kernel.add_interface("eth0", 1500, &[address.parse().unwrap()]);
    kernel
}

pub struct TestDaemon {
    pub handle: DaemonHandle,
    pub socket: PathBuf,
    pub directory: tempfile::TempDir,
}

/// Starts a daemon in-process on a fake kernel; the node registration is given (start-up is
/// built separately).
pub async fn start_daemon(
    store: AnyDatastore,
    node: &CalicoNode,
    backend: &str,
    extra: &[(&str, &str)],
) -> TestDaemon {
    let directory = tempfile::tempdir().unwrap();
    let socket = directory.path().join("starling.sock");
    let mut variables = environment(&node.name, backend, &socket);
    for (key, value) in extra {
        variables.insert(key.to_string(), value.to_string());
    }
    let config = Config::from_env(&variables).unwrap();
    let address = node.ipv4_address.unwrap().to_string();
    let options = DaemonOptions {
        startup: StartupMode::Given(StartupOutcome {
            node_name: node.name.clone(),
            node: node.clone(),
        }),
        kernel: KernelMode::Fake(Box::new(fake_kernel(&address))),
        mtu_file: Some(directory.path().join("mtu")),
        sysctl_root: None,
        manage_nat: false,
        bgp_grace: Duration::from_secs(30),
        policy: false,
    };
    let handle = starling::daemon::start(config, store, options)
        .await
        .unwrap();
    TestDaemon {
        handle,
        socket,
        directory,
    }
}

/// Waits until the latest computation satisfies `check`; panics with `what` at the deadline.
pub async fn wait_computed(
    daemon: &TestDaemon,
    what: &str,
    check: impl Fn(&Computed) -> bool,
) -> Arc<Computed> {
    let mut receiver = daemon.handle.computed.clone();
    let result = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(computed) = receiver.borrow_and_update().clone() {
                if check(&computed) {
                    return computed;
                }
            }
            receiver.changed().await.unwrap();
        }
    })
    .await;
    result.unwrap_or_else(|_| panic!("timed out waiting for: {what}"))
}

/// Polls `check` every 50 ms until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        // Poll interval, not a synchronisation sleep: the condition is re-checked.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET path` → (status code, body).
pub async fn http_get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A Kubernetes Node carrying Calico's annotations.
pub fn k8s_node(name: &str, annotations: &[(&str, &str)]) -> Value {
    let annotations: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(key, value)| (key.to_string(), Value::String(value.to_string())))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "annotations": annotations },
        "spec": {},
    })
}

/// The driver status once the first full desired state is applied (the dataplane reporter is
/// ready) and a converged pass has applied the latest computed state: later writes are caused
/// by later changes.
pub async fn settled_status(handle: &DaemonHandle) -> starling::dataplane::driver::DriverStatus {
    let health = handle.health.clone();
    eventually("the first full dataplane apply", || {
        let health = health.clone();
        async move {
            health
                .summary(std::time::Instant::now())
                .reporters
                .iter()
                .any(|reporter| reporter.name == "dataplane" && reporter.ready)
        }
    })
    .await;
    applied_status(handle).await
}

/// The driver status once a converged pass has applied the desired state of the latest
/// computation. A state equal to one already applied needs no new pass, so this waits for the
/// state itself, never for "one more pass" (which may not come).
pub async fn applied_status(handle: &DaemonHandle) -> starling::dataplane::driver::DriverStatus {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let latest = handle
            .computed
            .borrow()
            .as_ref()
            .map(|computed| computed.desired.clone());
        let status = handle.driver_status.borrow().clone();
        if status.converged && latest.is_some() && status.applied.as_deref() == latest.as_ref() {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the driver did not apply the latest desired state within {DEADLINE:?}: {status:?}"
        );
        // Poll interval between looks at the two watches (not a synchronisation sleep).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
