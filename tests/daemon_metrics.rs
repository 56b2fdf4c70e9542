//! A real Prometheus scrapes the daemon's metrics endpoint; promtool checks the exposition.

#[path = "support/kube_api.rs"]
mod kube_api;

#[path = "daemon_support/mod.rs"]
mod daemon_support;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::require_programs;

use std::process::{Child, Command, Stdio};

use daemon_support::*;
use kube_api::KubeApiServer;
use starling::datastore::kube::KubeStore;
use starling::datastore::{AnyDatastore, Datastore};
use starling::resources::node::annotation;
use starling::resources::IPPool;
use starling_model::wire::IPPoolSpec;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

/// Kills the Prometheus process even when the test fails.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_starling_families() {
    if !require_programs(
        "prometheus_scrapes_the_starling_families",
        &[PROMETHEUS, PROMTOOL],
    ) {
        return;
    }
    let server = KubeApiServer::start().await;
    let store = AnyDatastore::Kube(KubeStore::new(server.client()));
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
    wait_computed(&daemon, "initial sync", |c| c.dataplane.datastore_in_sync).await;
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
    wait_computed(&daemon, "the pool", |c| c.dataplane.pools.len() == 1).await;
    let metrics_address = daemon.handle.metrics_address.expect("metrics enabled");

    // promtool lints the exposition as served.
    let (status, exposition) = http_get(metrics_address, "/metrics").await;
    assert_eq!(status, 200);
    let mut promtool = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(exposition.as_bytes())
            .unwrap();
    }
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: starling\n  \
             static_configs:\n  - targets: ['{metrics_address}']\n"
        ),
    )
    .unwrap();
    let web_port = free_port();
    let log = std::fs::File::create(directory.path().join("prometheus.log")).unwrap();
    let _prometheus = ChildGuard(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let web: std::net::SocketAddr = format!("127.0.0.1:{web_port}").parse().unwrap();
    let query = "/api/v1/query?query=count%20by%20(__name__)(%7B__name__%3D~%22starling_.%2A%7Cprocess_resident_memory_bytes%22%7D)";
    let expected = [
        "starling_datastore_in_sync",
        "starling_datastore_updates_total",
        "starling_desired_compute_seconds_count",
        "starling_dataplane_apply_seconds_count",
        "starling_dataplane_apply_failures_total",
        "starling_routes",
        "starling_ipam_pool_size",
        "starling_build_info",
        "process_resident_memory_bytes",
    ];
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        // http_get panics on a refused connection: probe first while Prometheus starts.
        if tokio::net::TcpStream::connect(web).await.is_ok() {
            let (status, body) = http_get(web, query).await;
            if status == 200 {
                last = body;
                if expected.iter().all(|name| last.contains(name)) {
                    break;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus did not scrape every family; last answer: {last}"
        );
        // Poll interval while Prometheus starts and scrapes (re-checked, not assumed).
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    daemon.handle.shutdown().await;
}
