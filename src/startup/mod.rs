//! calico-node's start-up (reference §8.1): node name, waiting for the datastore, IP
//! autodetection, node registration, AS, default pools, tunnel addresses, the nodename file and
//! the `NetworkUnavailable` node condition.
//!
//! Contract: [`run`] performs start-up once, before any watcher starts, and is idempotent: a
//! second run against the same datastore writes nothing new. Every datastore write is
//! compare-and-swap (retried on a race) or create-if-absent. The host is reached only through
//! [`Host`] (interface list, `can-reach=` probe), so [`run_with`] runs against any interface set.
//! Pieces: `interfaces` (host interfaces), `autodetect` (pure §8.2), `register` (pure addresses,
//! AS, conflict check), `node_store` (the node in either datastore), `pools` (§8.3 and default
//! configuration objects), `kubeadm` (pod subnets for automatic pools), `condition`
//! (`NetworkUnavailable`).

pub mod autodetect;
pub mod condition;
pub mod interfaces;
pub mod kubeadm;
pub mod node_store;
pub mod pools;
pub mod register;

use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::time::Duration;

use chrono::Utc;

use crate::datastore::{AnyDatastore, Datastore};
use crate::resources::FromResource;
use crate::resources::IPPool;
use starling_ipam::allocator::Allocator;
use starling_ipam::pools::IpFamily;
use starling_ipam::store::{read_ipam_config, read_reservations};
use starling_ipam::tunnel::reconcile_tunnel_addresses;
use starling_ipam::IpamError;
use starling_model::config::Config;
use starling_model::store::StoreError;
use starling_model::{CalicoNode, IpPool};

pub use autodetect::AutodetectError;
pub use interfaces::HostInterface;

/// What start-up established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupOutcome {
    pub node_name: String,
    /// The node as registered (addresses, AS, tunnel addresses, labels).
    pub node: CalicoNode,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Kept for callers written against the contract stub; never returned.
    #[error("start-up is not implemented yet")]
    NotImplemented,
    #[error("no node name: NODENAME, the nodename file, HOSTNAME and the host name are all empty")]
    NoNodeName,
    #[error("{action}: {source}")]
    Store {
        action: String,
        #[source]
        source: StoreError,
    },
    #[error("{action}: {reason}")]
    Kubernetes { action: String, reason: String },
    #[error("Kubernetes Node {node:?} does not exist (with the Kubernetes datastore the Calico node is the Kubernetes Node, which start-up cannot create)")]
    KubernetesNodeMissing { node: String },
    #[error(transparent)]
    Autodetect(#[from] AutodetectError),
    #[error("node {node}: IPv{} address {address} is already used by node {other_node} (set DISABLE_NODE_IP_CHECK=true to skip this check)", if .address.is_ipv4() { 4 } else { 6 })]
    AddressConflict {
        node: String,
        address: IpAddr,
        other_node: String,
    },
    #[error("tunnel addresses of node {node}: {source}")]
    Tunnel {
        node: String,
        #[source]
        source: IpamError,
    },
    #[error("host interfaces: {0}")]
    Interfaces(String),
    #[error("nodename file {path}: {source}")]
    NodenameFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{reason}")]
    Invalid { reason: String },
}

/// The host as start-up sees it.
pub trait Host: Send + Sync {
    /// Interfaces of the network namespace the daemon runs in.
    fn interfaces(&self) -> Result<Vec<HostInterface>, String>;
    /// The local address the kernel picks towards `destination` (`can-reach=`).
    fn source_address_towards(&self, destination: &str, family: IpFamily)
        -> Result<IpAddr, String>;
}

/// The real host: getifaddrs(3) and a connected UDP socket (no packet is sent).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemHost;

impl Host for SystemHost {
    fn interfaces(&self) -> Result<Vec<HostInterface>, String> {
        interfaces::list_host_interfaces()
    }

    fn source_address_towards(
        &self,
        destination: &str,
        family: IpFamily,
    ) -> Result<IpAddr, String> {
        let target = match destination.parse::<IpAddr>() {
            Ok(IpAddr::V6(address)) => format!("[{address}]:80"),
            _ => format!("{destination}:80"),
        };
        let remote = target
            .to_socket_addrs()
            .map_err(|error| format!("cannot resolve {destination}: {error}"))?
            .find(|address| IpFamily::of_address(&address.ip()) == family)
            .ok_or_else(|| format!("{destination} has no IPv{} address", family.version()))?;
        let local = match family {
            IpFamily::V4 => "0.0.0.0:0",
            IpFamily::V6 => "[::]:0",
        };
        let socket = UdpSocket::bind(local).map_err(|error| error.to_string())?;
        socket
            .connect(remote)
            .map_err(|error| format!("no route to {remote}: {error}"))?;
        socket
            .local_addr()
            .map(|address| address.ip())
            .map_err(|error| error.to_string())
    }
}

/// Runs start-up once, before any watcher starts.
pub async fn run(config: &Config, store: &AnyDatastore) -> Result<StartupOutcome, StartupError> {
    run_with(config, store, &SystemHost).await
}

/// [`run`] against a given host.
pub async fn run_with(
    config: &Config,
    store: &AnyDatastore,
    host: &dyn Host,
) -> Result<StartupOutcome, StartupError> {
    let node_name = crate::run_args::node_name_from_system(&config.node_name);
    if node_name.is_empty() {
        return Err(StartupError::NoNodeName);
    }
    tracing::info!(node = %node_name, "starting");
    if config.wait_for_datastore {
        wait_for_datastore(store).await;
    }
    let interfaces = host.interfaces().map_err(StartupError::Interfaces)?;
    register_node(config, store, &node_name, &interfaces, host).await?;
    pools::ensure_default_pools(config, store, &interfaces).await?;
    pools::ensure_default_configuration(store, &node_name).await?;
    let node = refresh_tunnel_addresses(config, store, &node_name).await?;
    write_nodename_file(&config.node_name.nodename_file, &node_name)?;
    tracing::info!(node = %node_name, "start-up complete");
    Ok(StartupOutcome { node_name, node })
}

/// Addresses, interfaces and AS: computed, checked for conflicts, written.
async fn register_node(
    config: &Config,
    store: &AnyDatastore,
    node_name: &str,
    interfaces: &[HostInterface],
    host: &dyn Host,
) -> Result<(), StartupError> {
    let stored = node_store::read_node(store, node_name).await?.record.node();
    let reach =
        |destination: &str, family: IpFamily| host.source_address_towards(destination, family);
    let registration = register::plan_registration(config, &stored, interfaces, &reach)?;
    let changed = registration.ipv4_address != stored.ipv4_address
        || registration.ipv6_address != stored.ipv6_address;
    if changed && !config.disable_node_ip_check {
        let nodes = node_store::list_nodes(store).await?;
        if let Some(conflict) = register::find_conflict(
            node_name,
            registration.ipv4_address,
            registration.ipv6_address,
            &nodes,
        ) {
            return Err(StartupError::AddressConflict {
                node: node_name.to_string(),
                address: conflict.address,
                other_node: conflict.other_node,
            });
        }
    }
    let node = node_store::update_node(store, node_name, |node| registration.apply(node)).await?;
    tracing::info!(
        node = node_name,
        ipv4 = ?node.ipv4_address,
        ipv6 = ?node.ipv6_address,
        as_number = ?node.as_number,
        "registered the node"
    );
    Ok(())
}

/// Polls the datastore with backoff until a read is answered; logs each change of state once.
pub async fn wait_for_datastore(store: &AnyDatastore) {
    const FIRST_DELAY: Duration = Duration::from_millis(100);
    const MAX_DELAY: Duration = Duration::from_secs(5);
    let mut delay = FIRST_DELAY;
    let mut waiting = false;
    loop {
        // Any answer, "not found" included, proves the datastore is reachable.
        match store.get::<IPPool>(&pools_probe_name()).await {
            Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Invalid { .. }) => {
                if waiting {
                    tracing::info!("datastore is reachable again");
                }
                return;
            }
            Err(error) => {
                if !waiting {
                    tracing::warn!(%error, "datastore unreachable; waiting for it");
                    waiting = true;
                }
                // Backoff between polls of an unreachable datastore.
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
}

fn pools_probe_name() -> String {
    starling_model::config::DefaultPoolConfig::IPV4_NAME.to_string()
}

/// Every valid pool (an invalid one is skipped with a warning, as the daemon does).
async fn load_pools(store: &AnyDatastore) -> Result<Vec<IpPool>, StoreError> {
    Ok(store
        .list::<IPPool>()
        .await?
        .into_iter()
        .filter_map(|stored| match IpPool::from_resource(&stored.value) {
            Ok(pool) => Some(pool),
            Err(error) => {
                tracing::warn!(%error, "ignoring invalid IP pool");
                None
            }
        })
        .collect())
}

/// Keeps the node's tunnel addresses right after pools or the node changed (§8.4); returns the
/// node as now registered.
pub async fn refresh_tunnel_addresses(
    _config: &Config,
    store: &AnyDatastore,
    node_name: &str,
) -> Result<CalicoNode, StartupError> {
    let tunnel_error = |source: IpamError| StartupError::Tunnel {
        node: node_name.to_string(),
        source,
    };
    let store_error = |action: &str| {
        let action = action.to_string();
        move |source| StartupError::Store { action, source }
    };
    let node = node_store::read_node(store, node_name).await?.record.node();
    let pools = load_pools(store)
        .await
        .map_err(store_error("listing IP pools"))?;
    let ipam_config = read_ipam_config(store)
        .await
        .map_err(store_error("reading the IPAM configuration"))?;
    let reserved = read_reservations(store)
        .await
        .map_err(store_error("listing IP reservations"))?;
    let allocator = Allocator::new(store.clone(), node_name);
    let tunnels = reconcile_tunnel_addresses(
        &allocator,
        &node,
        &pools,
        ipam_config,
        &reserved,
        Utc::now(),
    )
    .await
    .map_err(tunnel_error)?;
    let mut wanted = node.clone();
    if !tunnels.apply_to(&mut wanted) {
        return Ok(node);
    }
    let written = node_store::update_node(store, node_name, |current| {
        tunnels.apply_to(current);
        None
    })
    .await;
    match written {
        Ok(node) => {
            tracing::info!(
                node = node_name,
                ipip = ?node.ipv4_ipip_tunnel_addr,
                vxlan = ?node.ipv4_vxlan_tunnel_addr,
                vxlan_v6 = ?node.ipv6_vxlan_tunnel_addr,
                "tunnel addresses updated"
            );
            Ok(node)
        }
        Err(error) => {
            // Addresses allocated in this pass must not leak when the node cannot record them.
            let fresh: Vec<IpAddr> = [
                (wanted.ipv4_ipip_tunnel_addr, node.ipv4_ipip_tunnel_addr),
                (wanted.ipv4_vxlan_tunnel_addr, node.ipv4_vxlan_tunnel_addr),
            ]
            .into_iter()
            .filter(|(new, old)| new != old)
            .filter_map(|(new, _)| new.map(IpAddr::V4))
            .chain(
                (wanted.ipv6_vxlan_tunnel_addr != node.ipv6_vxlan_tunnel_addr)
                    .then_some(wanted.ipv6_vxlan_tunnel_addr)
                    .flatten()
                    .map(IpAddr::V6),
            )
            .collect();
            if let Err(release) = starling_ipam::release::release_addresses(store, &fresh).await {
                tracing::warn!(%release, "could not release tunnel addresses after a failed node write");
            }
            Err(error)
        }
    }
}

/// Sets the Kubernetes `NetworkUnavailable` condition (`CalicoIsUp` / `CalicoIsDown`); a no-op
/// on etcd.
pub async fn set_network_unavailable(
    store: &AnyDatastore,
    node_name: &str,
    unavailable: bool,
) -> Result<(), StartupError> {
    match store {
        AnyDatastore::Kube(kube) => {
            condition::set_condition(kube.client(), node_name, unavailable).await
        }
        AnyDatastore::Etcd(_) | AnyDatastore::Memory(_) => Ok(()),
    }
}

/// Writes the node name where calico-node keeps it (creating the directory), replacing the file
/// atomically so a concurrent reader never sees half a name.
pub fn write_nodename_file(path: &Path, node_name: &str) -> Result<(), StartupError> {
    let error = |source| StartupError::NodenameFile {
        path: path.display().to_string(),
        source,
    };
    if let Some(directory) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(directory).map_err(error)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, node_name).map_err(error)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644))
            .map_err(error)?;
    }
    std::fs::rename(&temporary, path).map_err(error)
}
