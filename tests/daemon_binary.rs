//! `starling run` as a process: configuration from the environment, health answering while
//! start-up is not done, and a clean exit 0 on SIGTERM. The binary programs the kernel, so it
//! runs inside a test network namespace (with the Kubernetes API test server beside it).
//! Needs root; skipped otherwise.

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
    netns_test::ip(&name, "link set lo up");
    starling::netns::run_async_in(&name, move || async move {
        let server = KubeApiServer::start().await;
        let kubeconfig = server.write_kubeconfig();
        let directory = tempfile::tempdir().unwrap();
        let health_port = free_port();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_starling"))
            .arg("run")
            .env_clear()
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
        // Start-up is not finished (in this tree it is provided separately), so not ready.
        let (ready, body) = http_get(address, "/readiness").await;
        assert_eq!(ready, 503, "{body}");
        assert!(body.contains("startup"), "{body}");

        let pid = child.id().unwrap() as libc::pid_t;
        // Informational: resident size of the process waiting in start-up.
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(line) = status.lines().find(|line| line.starts_with("VmRSS")) {
                println!("starling run (waiting for start-up): {line}");
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
