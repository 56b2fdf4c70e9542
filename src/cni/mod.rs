//! Starling's CNI plugin (CNI 0.3.0 – 1.1.0: ADD, DEL, CHECK, VERSION, STATUS, GC) and its
//! installer.
//!
//! Design decisions:
//! - **One binary.** The plugin is the `starling` binary itself: when `CNI_COMMAND` is set,
//!   `main` runs [`run_plugin`] instead of the command line. The conflist says
//!   `"type": "starling"` and `starling cni install` copies the binary to `/opt/cni/bin/starling`,
//!   so a cluster needs no Calico binary and plugin and daemon always come from the same image.
//! - **IPAM runs in the daemon**, reached over its control socket (`STARLING_CONTROL_SOCKET`,
//!   default `/var/run/calico/starling.sock`, or `control_socket` in the network config) with
//!   the requests of [`ipam_protocol`]. One process holds the IPAM cache and the datastore
//!   credentials, and concurrent pod starts on a node do not race each other's compare-and-swap
//!   writes. When the daemon is missing the plugin fails with code 11 ("try again later") naming
//!   the socket; the kubelet retries.
//! - **Pod annotations are the daemon's job** as part of `Assign`/`ReleaseByHandle`: it reads the
//!   pod's and namespace's annotations (`ipv4pools`, `ipv6pools`, `ipAddrs`, `ipAddrsNoIpam`,
//!   `floatingIPs`, ...) to build the allocation, and writes back `cni.projectcalico.org/podIP`,
//!   `podIPs` and `containerID` (Kubernetes datastore), and passes `hwAddr` back as the pod
//!   interface's MAC. It has the kube client and the
//!   credentials; the plugin only sends the pod's namespace/name, the container ID, the network
//!   name, the interface and the config's `ipam` and `feature_control` sections. The
//!   `kubernetes.kubeconfig` of the network config is therefore accepted and ignored.
//! - **Wiring is local** (`wiring.rs`): the veth, addresses, routes and sysctls are done by the
//!   plugin in the runtime's namespaces; the pod's namespace is entered on a dedicated thread only
//!   (`namespace.rs`). The host /32 routes carry Starling's route protocol (81, or
//!   `STARLING_ROUTE_PROTOCOL`) so the daemon owns them after a restart without a flap.
//! - **Failure never leaves state behind**: see `plugin.rs` for ADD rollback and DEL idempotence.
//! - **GC** (`gc.rs`): the daemon releases this node's allocations of the network whose
//!   container is not in `cni.dev/valid-attachments`; the plugin removes the host veths of the
//!   pods left with none.
//! - `fake_ipam` is a counting allocator that answers the protocol, used by the plugin's tests (in
//!   process and behind a socket); the daemon serves the protocol with the real IPAM.
//!
//! Environment read by the plugin besides the CNI variables: `STARLING_CONTROL_SOCKET`,
//! `STARLING_MTU_FILE` (default `/var/lib/calico/mtu`), `STARLING_ROUTE_PROTOCOL`,
//! `FELIX_INTERFACEPREFIX`.

pub mod args;
pub mod backend;
pub mod config;
pub mod fake_ipam;
pub mod gc;
pub mod install;
pub mod ipam_protocol;
mod namespace;
mod netlink;
pub mod plugin;
pub mod result;
pub mod wiring;

#[cfg(test)]
mod gc_tests;
#[cfg(test)]
mod plugin_tests;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use args::{CniCommand, PluginEnvironment};
use backend::SocketBackend;
use config::NetworkConfig;
use plugin::HostSettings;
use result::{code, CniError, LATEST_VERSION};
use wiring::NetlinkDataplane;

/// True when the runtime is executing this binary as a CNI plugin.
pub fn is_plugin_invocation() -> bool {
    std::env::var_os("CNI_COMMAND").is_some()
}

/// Runs one CNI command from the process environment and stdin; prints the result or the error
/// object on stdout and returns the exit code.
pub fn run_plugin() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let (version, outcome) = match read {
        Ok(_) => execute(&stdin, |name| std::env::var(name).ok()),
        Err(error) => (
            LATEST_VERSION.to_string(),
            Err(CniError::new(
                code::IO_FAILURE,
                "cannot read the network configuration from stdin",
                error.to_string(),
            )),
        ),
    };
    let (output, exit) = match outcome {
        Ok(Some(json)) => (Some(json), ExitCode::SUCCESS),
        Ok(None) => (None, ExitCode::SUCCESS),
        Err(error) => {
            tracing::error!(%error, "CNI command failed");
            (Some(error.to_json(&version)), ExitCode::FAILURE)
        }
    };
    if let Some(json) = output {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{json}");
        let _ = stdout.flush();
    }
    exit
}

/// The whole plugin minus process I/O: returns the version to answer with and the outcome.
pub fn execute(
    stdin: &[u8],
    lookup: impl Fn(&str) -> Option<String>,
) -> (String, Result<Option<serde_json::Value>, CniError>) {
    // The version the answer should carry, as far as it can be read at all.
    let requested_version = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|value| value.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|version| result::SUPPORTED_VERSIONS.contains(&version.as_str()));
    let version = requested_version
        .clone()
        .unwrap_or_else(|| LATEST_VERSION.to_string());
    let environment = match PluginEnvironment::from_lookup(&lookup) {
        Ok(environment) => environment,
        Err(error) => return (version, Err(error)),
    };
    if environment.command == CniCommand::Version {
        return (
            version,
            Ok(Some(result::version_answer(requested_version.as_deref()))),
        );
    }
    let config = match NetworkConfig::parse(stdin) {
        Ok(config) => config,
        Err(error) => return (version, Err(error)),
    };
    init_logging(&config);
    let outcome = run_command(&config, &environment, &lookup);
    (config.cni_version.clone(), outcome)
}

fn run_command(
    config: &NetworkConfig,
    environment: &PluginEnvironment,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<Option<serde_json::Value>, CniError> {
    let settings = HostSettings {
        interface_prefix: wiring::interface_prefix(lookup("FELIX_INTERFACEPREFIX").as_deref()),
        mtu_file: lookup("STARLING_MTU_FILE")
            .filter(|path| !path.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(wiring::DEFAULT_MTU_FILE)),
    };
    let dataplane = NetlinkDataplane {
        route_protocol: wiring::route_protocol(lookup("STARLING_ROUTE_PROTOCOL").as_deref())?,
    };
    let ipam = SocketBackend::locate(
        config.control_socket.as_deref(),
        lookup("STARLING_CONTROL_SOCKET"),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            CniError::new(
                code::IO_FAILURE,
                "cannot start the async runtime",
                error.to_string(),
            )
        })?;
    runtime.block_on(async {
        match environment.command {
            CniCommand::Add => {
                let result = plugin::add(config, environment, &settings, &ipam, &dataplane).await?;
                Ok(Some(result.to_json(&config.cni_version)))
            }
            CniCommand::Del => {
                plugin::delete(config, environment, &ipam, &dataplane).await?;
                Ok(None)
            }
            CniCommand::Check => {
                plugin::check(config, environment, &settings, &ipam, &dataplane).await?;
                Ok(None)
            }
            CniCommand::Status => {
                plugin::status(&ipam).await?;
                Ok(None)
            }
            CniCommand::GarbageCollect => {
                gc::garbage_collect(config, &settings, &ipam, &dataplane).await?;
                Ok(None)
            }
            CniCommand::Version => Ok(Some(result::version_answer(Some(&config.cni_version)))),
        }
    })
}

/// Logs go to `log_file_path` when set (appended), else to stderr; stdout is the runtime's.
fn init_logging(config: &NetworkConfig) {
    let level = config
        .log_level
        .as_deref()
        .map(str::to_ascii_lowercase)
        .filter(|level| {
            ["error", "warn", "warning", "info", "debug", "trace"].contains(&level.as_str())
        })
        .map(|level| {
            if level == "warning" {
                "warn".to_string()
            } else {
                level
            }
        })
        .unwrap_or_else(|| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::new(level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let file = config.log_file_path.as_ref().and_then(|path| {
        if let Some(directory) = path.parent() {
            let _ = std::fs::create_dir_all(directory);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()
    });
    let _ = match file {
        Some(file) => builder.with_writer(std::sync::Mutex::new(file)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}
