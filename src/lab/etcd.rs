//! The lab's private etcd: the system's `etcd` binary, run inside the bridge namespace so that
//! every node namespace reaches it at `192.0.2.254:2379`, with its data in the lab's state dir.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::topology::{LabNames, BRIDGE_ADDRESS};

pub const CLIENT_PORT: u16 = 2379;
/// How often readiness is re-checked while waiting.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The endpoint daemons in node namespaces use.
pub fn endpoint() -> String {
    format!("http://{BRIDGE_ADDRESS}:{CLIENT_PORT}")
}

/// Starts etcd detached from this process (it outlives `lab up`) and returns its pid.
pub fn start(names: &LabNames, state_dir: &Path) -> Result<u32> {
    let binary = which("etcd").context(
        "etcd is not installed: `apt-get install etcd-server` (the lab runs its own private etcd)",
    )?;
    let data_dir = state_dir.join("etcd-data");
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let log_path = state_dir.join("etcd.log");
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let client_urls = format!("{},http://127.0.0.1:{CLIENT_PORT}", endpoint());
    let child = Command::new("ip")
        .args(["netns", "exec", &names.bridge_ns()])
        .arg(binary)
        .args(["--name", "lab", "--data-dir"])
        .arg(&data_dir)
        .args(["--listen-client-urls", &client_urls])
        .args(["--advertise-client-urls", &endpoint()])
        .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
        .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
        .args(["--initial-cluster", "lab=http://127.0.0.1:2380"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C on `lab up` must not take etcd down with it.
        .process_group(0)
        .spawn()
        .context("starting etcd")?;
    Ok(child.id())
}

/// Writes `(key, JSON value)` pairs from inside the bridge namespace.
pub fn put_all(
    names: &LabNames,
    endpoints: &str,
    entries: Vec<(String, serde_json::Value)>,
) -> Result<()> {
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_string).collect();
    crate::netns::run_async_in(&names.bridge_ns(), || async move {
        let mut client = etcd_client::Client::connect(endpoints, None).await?;
        for (key, value) in entries {
            client.put(key, value.to_string(), None).await?;
        }
        Ok::<_, etcd_client::Error>(())
    })?
    .context("writing the lab's Calico resources to etcd")
}

/// Reads one JSON value from inside the bridge namespace (`None` when the key is absent).
pub fn get(names: &LabNames, endpoints: &str, key: &str) -> Result<Option<serde_json::Value>> {
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_string).collect();
    let key = key.to_string();
    let bytes = crate::netns::run_async_in(&names.bridge_ns(), || async move {
        let mut client = etcd_client::Client::connect(endpoints, None).await?;
        let response = client.get(key, None).await?;
        Ok::<_, etcd_client::Error>(response.kvs().first().map(|kv| kv.value().to_vec()))
    })?
    .context("reading from the lab's etcd")?;
    bytes
        .map(|b| serde_json::from_slice(&b).context("the stored value is not JSON"))
        .transpose()
}

/// Deletes one key from inside the bridge namespace (what an operator's `etcdctl del` does);
/// true when it existed.
pub fn delete(names: &LabNames, endpoints: &str, key: &str) -> Result<bool> {
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_string).collect();
    let key = key.to_string();
    let deleted = crate::netns::run_async_in(&names.bridge_ns(), || async move {
        let mut client = etcd_client::Client::connect(endpoints, None).await?;
        let response = client.delete(key, None).await?;
        Ok::<_, etcd_client::Error>(response.deleted() > 0)
    })?
    .context("deleting from the lab's etcd")?;
    Ok(deleted)
}

/// Waits until etcd answers a request from inside the bridge namespace.
pub fn wait_ready(names: &LabNames, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let ns = names.bridge_ns();
    loop {
        let probe = crate::netns::run_async_in(&ns, || async {
            let mut client = etcd_client::Client::connect([endpoint()], None).await?;
            client.status().await?;
            Ok::<_, etcd_client::Error>(())
        });
        match probe {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(err)) if Instant::now() >= deadline => {
                bail!("etcd did not become ready within {timeout:?}: {err}")
            }
            Err(err) if Instant::now() >= deadline => return Err(err.into()),
            _ => std::thread::sleep(READY_POLL_INTERVAL),
        }
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}
