//! `starling run` as a process: configuration from the environment, health answering (not ready)
//! while start-up cannot finish, ready once it has, and a clean exit 0 on SIGTERM. The binary
//! programs the kernel, so it runs inside a test network namespace (with the Kubernetes API test
//! server beside it). Needs root; skipped otherwise.

#[path = "support/kube_api.rs"]
mod kube_api;

#[path = "daemon_support/mod.rs"]
mod daemon_support;

#[path = "support/netns_test.rs"]
mod netns_test;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::require_root;

use std::process::Stdio;
use std::time::Duration;

use daemon_support::*;
use kube_api::KubeApiServer;

#[test]
fn run_answers_health_and_exits_cleanly_on_sigterm() {
    if !require_root("run_answers_health_and_exits_cleanly_on_sigterm") {
        return;
    }
    let name = starling::netns::unique_name("sb");
    let _guard = starling::netns::create(&name).unwrap();
    netns_test::node_eth0(&name, "10.0.0.1/24");
    starling::netns::run_async_in(&name, move || async move {
        let server = KubeApiServer::start().await;
        let kubeconfig = server.write_kubeconfig();
        let directory = tempfile::tempdir().unwrap();
        let health_port = free_port();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_starling"))
            .arg("run")
            .env_clear()
            // The daemon runs nft (natOutgoing), as it finds it in a container's PATH.
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATASTORE_TYPE", "kubernetes")
            .env("KUBECONFIG", kubeconfig.path())
            .env("NODENAME", "node-a")
            .env("FELIX_HEALTHHOST", "127.0.0.1")
            .env("FELIX_HEALTHPORT", health_port.to_string())
            .env(
                "STARLING_CONTROL_SOCKET",
                directory.path().join("starling.sock"),
            )
            .env("STARLING_MTU_FILE", directory.path().join("mtu"))
            .env("CALICO_NETWORKING_BACKEND", "vxlan")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let address: std::net::SocketAddr = format!("127.0.0.1:{health_port}").parse().unwrap();
        eventually("the health endpoint", || async move {
            tokio::net::TcpStream::connect(address).await.is_ok()
        })
        .await;
        let (live, _) = http_get(address, "/liveness").await;
        assert_eq!(live, 200);
        // Kubernetes has no Node "node-a" yet, so start-up cannot register it and keeps
        // retrying: live, not ready, and the startup reporter says why.
        let (ready, body) = http_get(address, "/readiness").await;
        assert_eq!(ready, 503, "{body}");
        assert!(body.contains("startup"), "{body}");

        // With the Node there, start-up finishes and the daemon becomes ready.
        server.put_object("v1", "nodes", k8s_node("node-a", &[]));
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let (ready, body) = http_get(address, "/readiness").await;
            if ready == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not ready {DEADLINE:?} after the Node appeared: {ready} {body}"
            );
            // Poll interval while start-up retries with backoff (not a synchronisation sleep).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Start-up registered the node with the autodetected address.
        let node = server
            .get_object("v1", "nodes", None, "node-a")
            .expect("the Node");
        assert_eq!(
            node["metadata"]["annotations"]["projectcalico.org/IPv4Address"], "10.0.0.1/24",
            "{node}"
        );

        let pid = child.id().unwrap() as libc::pid_t;
        // Informational: resident size of the running daemon.
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(line) = status.lines().find(|line| line.starts_with("VmRSS")) {
                println!("starling run (ready): {line}");
            }
        }
        // SAFETY: kill(2) on our own child's pid has no memory-safety requirements.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap();
        assert!(status.success(), "exit status {status:?}");
    })
    .unwrap();
}
