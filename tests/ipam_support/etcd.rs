//! A throw-away etcd server for tests and benchmarks: /usr/bin/etcd on 127.0.0.1 with free client
//! and peer ports and a temporary data directory; killed and removed on drop. Readiness is polled
//! with a deadline (a real request must succeed), never assumed after a sleep.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use starling::datastore::etcd::EtcdStore;
use starling::datastore::Datastore;
use starling_ipam::records::{IpamConfig, IpamConfigKey};

pub const ETCD_BINARY: &str = "/usr/bin/etcd";

pub struct EtcdServer {
    child: Child,
    pub endpoint: String,
    _data_dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl EtcdServer {
    /// Starts etcd and waits until it answers. Tests check `require_program(.., ETCD_BINARY)`
    /// first, so a missing etcd skips (or fails in CI) with a reason instead of panicking here.
    // Unused where a test only spawns its own (TLS) server.
    #[allow(dead_code)]
    pub async fn start() -> (EtcdServer, EtcdStore) {
        let server = EtcdServer::spawn("http", &[]);
        let client_url = server.endpoint.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(store) = EtcdStore::connect(std::slice::from_ref(&client_url)).await {
                match store.get::<IpamConfig>(&IpamConfigKey).await {
                    Ok(_) | Err(starling_model::store::StoreError::NotFound { .. }) => {
                        return (server, store);
                    }
                    Err(_) => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become ready on {client_url} within 30 s"
            );
            // Poll interval while waiting for the server to answer (not a synchronisation sleep).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Spawns etcd with its client URL on `scheme` (`http` or `https`) and `extra` arguments
    /// (e.g. TLS files), without waiting for it: the caller polls with its own client.
    pub fn spawn(scheme: &str, extra: &[String]) -> EtcdServer {
        // tmpfs when available: etcd fsyncs every write, and tests measure logic, not disks.
        let data_dir = if Path::new("/dev/shm").is_dir() {
            tempfile::tempdir_in("/dev/shm")
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        let client_port = free_port();
        let mut peer_port = free_port();
        while peer_port == client_port {
            peer_port = free_port();
        }
        let client_url = format!("{scheme}://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(data_dir.path().join("etcd.log")).expect("log file");
        let child = Command::new(ETCD_BINARY)
            .arg("--name=starling-test")
            .arg(format!(
                "--data-dir={}",
                data_dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=starling-test={peer_url}"))
            .arg("--log-level=error")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|error| panic!("starting {ETCD_BINARY}: {error}"));
        EtcdServer {
            child,
            endpoint: client_url,
            _data_dir: data_dir,
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
