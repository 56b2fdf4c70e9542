//! Starting, probing and stopping the lab's `starling run` processes, one per node namespace.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::topology::{node_name, LabNames, NODE_PREFIX_LEN, NODE_PREFIX_LEN_V6};
use super::{LabState, Mode};

/// Files of one node's daemon inside the lab's state directory.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    pub dir: PathBuf,
}

impl NodeFiles {
    pub fn new(state_dir: &Path, index: usize) -> NodeFiles {
        NodeFiles {
            dir: state_dir.join(node_name(index)),
        }
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("starling.log")
    }
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("starling.sock")
    }
    pub fn mtu_file(&self) -> PathBuf {
        self.dir.join("mtu")
    }
    pub fn nodename_file(&self) -> PathBuf {
        self.dir.join("nodename")
    }
}

/// The environment `starling run` gets in node `index` (calico-node's variables).
pub fn environment(state: &LabState, index: usize, files: &NodeFiles) -> Vec<(String, String)> {
    let backend = match state.mode {
        Mode::Vxlan | Mode::VxlanCrossSubnet => "vxlan",
        Mode::Bgp | Mode::BgpRr | Mode::Ipip | Mode::IpipCrossSubnet => "bird",
    };
    let mut environment: Vec<(String, String)> = [
        ("NODENAME", node_name(index)),
        ("DATASTORE_TYPE", "etcdv3".to_string()),
        ("ETCD_ENDPOINTS", state.etcd_endpoints.clone()),
        (
            "IP",
            format!("{}/{NODE_PREFIX_LEN}", state.node_address(index)),
        ),
        ("CALICO_NETWORKING_BACKEND", backend.to_string()),
        ("NO_DEFAULT_POOLS", "true".to_string()),
        (
            "CALICO_NODENAME_FILE",
            files.nodename_file().display().to_string(),
        ),
        ("STARLING_MTU_FILE", files.mtu_file().display().to_string()),
        (
            "STARLING_CONTROL_SOCKET",
            files.control_socket().display().to_string(),
        ),
        ("FELIX_HEALTHENABLED", "true".to_string()),
        ("FELIX_HEALTHHOST", "127.0.0.1".to_string()),
        ("FELIX_PROMETHEUSMETRICSENABLED", "true".to_string()),
        ("FELIX_IPV6SUPPORT", state.ipv6.to_string()),
        (
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // A dual-stack node is told its IPv6 address as calico-node is; unset, IPv6 stays off.
    if let Some(address) = state.node_address_v6(index) {
        environment.push(("IP6".to_string(), format!("{address}/{NODE_PREFIX_LEN_V6}")));
    }
    environment
}

/// Starts node `index`'s daemon detached (it outlives `lab up`); returns its pid.
pub fn start(
    names: &LabNames,
    state_dir: &Path,
    binary: &Path,
    state: &LabState,
    index: usize,
) -> Result<u32> {
    let files = NodeFiles::new(state_dir, index);
    std::fs::create_dir_all(&files.dir)
        .with_context(|| format!("creating {}", files.dir.display()))?;
    let log = File::options()
        .create(true)
        .append(true)
        .open(files.log())
        .with_context(|| format!("opening {}", files.log().display()))?;
    let child = Command::new("ip")
        .args(["netns", "exec", &names.node_ns(index)])
        .arg(binary)
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(environment(state, index, &files))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting the daemon of {}", node_name(index)))?;
    Ok(child.id())
}

/// Asks node `index`'s health endpoint; `Ok(true)` when `/readiness` answers 200.
pub fn ready(names: &LabNames, index: usize) -> Result<bool> {
    let ns = names.node_ns(index);
    Ok(crate::netns::run_async_in(&ns, || async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", 9099)).await else {
            return false;
        };
        let request = "GET /readiness HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        answer.starts_with("HTTP/1.1 200")
    })?)
}

/// Waits until every listed node is ready; the error names the nodes that are not.
pub fn wait_ready(names: &LabNames, nodes: &[usize], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut waiting: Vec<usize> = nodes.to_vec();
    while !waiting.is_empty() {
        waiting.retain(|&index| !ready(names, index).unwrap_or(false));
        if waiting.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let list: Vec<String> = waiting.iter().map(|&i| node_name(i)).collect();
            bail!(
                "not ready after {timeout:?}: {} (see their starling.log)",
                list.join(", ")
            );
        }
        std::thread::sleep(super::POLL_INTERVAL);
    }
    Ok(())
}

/// Whether a process is alive.
pub fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// SIGTERM, then SIGKILL if the process has not gone within `grace`.
pub fn stop(pid: u32, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    let target = nix::unistd::Pid::from_raw(pid as i32);
    if kill(target, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        reap(pid);
        std::thread::sleep(super::POLL_INTERVAL);
    }
    if alive(pid) {
        let _ = kill(target, Signal::SIGKILL);
    }
    reap(pid);
}

/// Collects a child's exit status so it does not linger as a zombie (no-op for non-children).
fn reap(pid: u32) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let _ = waitpid(
        nix::unistd::Pid::from_raw(pid as i32),
        Some(WaitPidFlag::WNOHANG),
    );
}
