//! The node daemon (`starling run`): the one module that knows every channel.
//!
//! Order: HTTP health (and metrics) first so probes answer early; start-up (retried with
//! backoff while it fails, reported not ready); then the watchers, the state loop, the
//! dataplane driver on its own thread, the BGP speaker (backend `bird`), the tunnel-address
//! refresher and the control socket. Health reporters: `startup`, `datastore` (all kinds in
//! sync), `dataplane` (first full apply done), `bgp` (reference §7.2). `NetworkUnavailable` is
//! cleared once everything is ready and set again on shutdown.
//!
//! Shutdown (SIGTERM/SIGINT or [`DaemonHandle::shutdown`]): watchers stop, the speaker closes
//! its sessions gracefully (peers keep our routes for the restart time), the dataplane thread
//! ends without touching the kernel, so routes stay in place for the next start.

mod connect;
pub mod control;
pub mod dataplane;
pub mod health;
pub mod ipam_service;
pub mod policy;
mod services;
mod state_loop;

pub use connect::{connect, services_api};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;

use crate::bgp::speaker::SpeakerHandle;
use crate::dataplane::driver::DriverStatus;
use crate::datastore::AnyDatastore;
use crate::health::HealthRegistry;
use crate::metrics::Metrics;
use crate::policy::inputs::InputKind;
use crate::route_deltas::{self, DeltaSender};
use crate::startup::{self, StartupOutcome};
use crate::syncer::{Backoff, Syncer, SyncerContext};
use dataplane::{DataplaneOptions, KernelMode};
use starling_calc::compute::Computed;
use starling_calc::spec::Desired;
use starling_calc::state::ClusterState;
use starling_model::config::{Config, NetworkingBackend};

const STARTUP_REPORTER: &str = "startup";
const DATAPLANE_REPORTER: &str = "dataplane";
const BGP_REPORTER: &str = "bgp";

/// How the node gets registered.
pub enum StartupMode {
    /// calico-node's start-up (`crate::startup::run`).
    Run,
    /// Already registered (tests, or a supervisor that did it): use this outcome.
    Given(StartupOutcome),
}

/// Daemon settings that are not calico-node's configuration.
pub struct DaemonOptions {
    pub startup: StartupMode,
    pub kernel: KernelMode,
    /// `STARLING_MTU_FILE` (default `/var/lib/calico/mtu`).
    pub mtu_file: Option<PathBuf>,
    /// `/proc/sys`, or `None` to leave sysctls alone.
    pub sysctl_root: Option<PathBuf>,
    pub manage_nat: bool,
    /// calico-node's readiness threshold for BGP (reference §7.2).
    pub bgp_grace: Duration,
    /// Enforce network policy in nftables (the policy thread, health reporter `policy`).
    /// Production always does; in-process tests on the fake kernel must not (nft would program
    /// the test's own namespace).
    pub policy: bool,
}

impl DaemonOptions {
    /// The production settings, with `STARLING_MTU_FILE` honoured.
    pub fn from_environment(variables: &BTreeMap<String, String>) -> DaemonOptions {
        let mtu_file = variables
            .get("STARLING_MTU_FILE")
            .map(|path| path.trim())
            .filter(|path| !path.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(crate::dataplane::mtu::MTU_FILE));
        DaemonOptions {
            startup: StartupMode::Run,
            kernel: KernelMode::Netlink,
            mtu_file: Some(mtu_file),
            sysctl_root: Some(PathBuf::from(crate::dataplane::sysctl::PROC_SYS)),
            manage_nat: true,
            bgp_grace: health::BGP_GRACE,
            policy: true,
        }
    }
}

/// A running daemon.
pub struct DaemonHandle {
    /// The latest computation (dataplane input, desired state, speaker configuration).
    pub computed: watch::Receiver<Option<Arc<Computed>>>,
    pub driver_status: watch::Receiver<DriverStatus>,
    pub health: HealthRegistry,
    pub metrics: Metrics,
    pub health_address: SocketAddr,
    pub metrics_address: Option<SocketAddr>,
    stopping: watch::Sender<bool>,
    task: JoinHandle<()>,
    servers: Vec<JoinHandle<()>>,
}

impl DaemonHandle {
    /// Stops everything as on SIGTERM and waits for it.
    pub async fn shutdown(mut self) {
        self.stopping.send_replace(true);
        if let Err(error) = (&mut self.task).await {
            tracing::error!(%error, "daemon task ended abnormally");
        }
        for server in self.servers.drain(..) {
            server.abort();
        }
    }
}

/// `starling run`: runs until SIGTERM or SIGINT, then shuts down cleanly.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let variables: BTreeMap<String, String> = std::env::vars().collect();
    let options = DaemonOptions::from_environment(&variables);
    let store = connect(&config).await?;
    let daemon = start(config, store, options).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
    daemon.shutdown().await;
    Ok(())
}

async fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let addresses = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving {host}:{port}"))?;
    listen_address(addresses).with_context(|| format!("{host} has no address"))
}

/// The address to listen on among a name's addresses: the first IPv4 one, as Felix (Go's
/// `net.Listen`) picks, so the default `localhost` means 127.0.0.1 even where the resolver lists
/// ::1 first; the first address when there is no IPv4 one.
fn listen_address(addresses: impl IntoIterator<Item = SocketAddr>) -> Option<SocketAddr> {
    let mut first = None;
    for address in addresses {
        if address.is_ipv4() {
            return Some(address);
        }
        first = first.or(Some(address));
    }
    first
}

/// Starts the daemon on the current runtime and returns once its servers are bound.
pub async fn start(
    config: Config,
    store: AnyDatastore,
    options: DaemonOptions,
) -> anyhow::Result<DaemonHandle> {
    let metrics = Metrics::new();
    let health = HealthRegistry::new();
    health.register(STARTUP_REPORTER, None, Instant::now());

    let mut servers = Vec::new();
    let health_host = config.felix.health_host.as_deref().unwrap_or("localhost");
    let health_port = config.felix.health_port.unwrap_or(9099);
    let listener = crate::http::bind(resolve(health_host, health_port).await?)
        .await
        .with_context(|| format!("binding the health endpoint {health_host}:{health_port}"))?;
    let health_address = listener.local_addr()?;
    let router = crate::http::health_router(health.clone());
    servers.push(tokio::spawn(async move {
        if let Err(error) = crate::http::serve(listener, router).await {
            tracing::error!(%error, "health endpoint failed");
        }
    }));
    let mut metrics_address = None;
    if config.felix.prometheus_metrics_enabled == Some(true) {
        let host = config
            .felix
            .prometheus_metrics_host
            .as_deref()
            .unwrap_or("");
        let port = config.felix.prometheus_metrics_port.unwrap_or(9091);
        let listener = crate::http::bind(resolve(host, port).await?)
            .await
            .with_context(|| format!("binding the metrics endpoint {host}:{port}"))?;
        metrics_address = Some(listener.local_addr()?);
        let router = crate::http::metrics_router(metrics.clone());
        servers.push(tokio::spawn(async move {
            if let Err(error) = crate::http::serve(listener, router).await {
                tracing::error!(%error, "metrics endpoint failed");
            }
        }));
    }

    let (desired_sender, desired) = watch::channel(Arc::new(Desired::empty(config.route_protocol)));
    let resync_interval = config
        .felix
        .route_refresh_interval
        .filter(|interval| !interval.is_zero())
        .unwrap_or(Duration::from_secs(90));
    // Learned BGP routes go from the speaker straight to the dataplane, as per-prefix deltas.
    let (route_deltas, learned) = route_deltas::channel();
    let dataplane = dataplane::spawn(
        DataplaneOptions {
            kernel: options.kernel,
            mtu_file: options.mtu_file,
            sysctl_root: options.sysctl_root,
            manage_nat: options.manage_nat,
            resync_interval,
            learned: Some(learned),
        },
        desired,
        config.route_protocol,
        metrics.clone(),
    )
    .context("starting the dataplane thread")?;
    // Spawned here, like the dataplane thread, so that it runs in the caller's namespace.
    let policy = match (&store, options.policy) {
        (AnyDatastore::Memory(_), true) => {
            tracing::warn!("the in-memory datastore holds no policy: policy is not enforced");
            None
        }
        (_, true) => Some(
            policy::spawn(metrics.clone(), health.clone(), resync_interval)
                .context("starting the policy thread")?,
        ),
        (_, false) => None,
    };
    let (stopping_sender, stopping) = watch::channel(false);
    let (computed_sender, computed) = watch::channel(None);
    let driver_status = dataplane.status.clone();

    let main = Main {
        config,
        store,
        startup: options.startup,
        bgp_grace: options.bgp_grace,
        resync_interval,
        metrics: metrics.clone(),
        health: health.clone(),
        stopping,
        desired: desired_sender,
        computed: computed_sender,
        dataplane,
        route_deltas,
        policy,
    };
    let task = tokio::spawn(main.run());
    Ok(DaemonHandle {
        computed,
        driver_status,
        health,
        metrics,
        health_address,
        metrics_address,
        stopping: stopping_sender,
        task,
        servers,
    })
}

/// Everything the daemon's main task owns.
struct Main {
    config: Config,
    store: AnyDatastore,
    startup: StartupMode,
    bgp_grace: Duration,
    resync_interval: Duration,
    metrics: Metrics,
    health: HealthRegistry,
    stopping: watch::Receiver<bool>,
    desired: watch::Sender<Arc<Desired>>,
    computed: watch::Sender<Option<Arc<Computed>>>,
    dataplane: dataplane::DataplaneHandle,
    route_deltas: DeltaSender,
    policy: Option<policy::PolicyHandle>,
}

impl Main {
    /// Start-up, retried with backoff; `None` when asked to stop first.
    async fn startup(&mut self) -> Option<StartupOutcome> {
        let mode = std::mem::replace(&mut self.startup, StartupMode::Run);
        if let StartupMode::Given(outcome) = mode {
            return Some(outcome);
        }
        let mut backoff = Backoff::new();
        loop {
            match startup::run(&self.config, &self.store).await {
                Ok(outcome) => return Some(outcome),
                Err(error) => {
                    tracing::warn!(%error, "start-up failed; retrying");
                    self.health.report(
                        STARTUP_REPORTER,
                        true,
                        false,
                        &format!("start-up failed: {error}"),
                        Instant::now(),
                    );
                }
            }
            tokio::select! {
                _ = self.stopping.changed() => return None,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Starts the policy watchers and hands them to the policy thread; returns where to send
    /// explain requests.
    fn start_policy(
        &mut self,
        node_name: &str,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> Option<mpsc::Sender<policy::PolicyRequest>> {
        let handle = self.policy.take()?;
        let (sink, updates) = mpsc::channel(1024);
        let (kinds, watchers) = match &self.store {
            AnyDatastore::Etcd(store) => (
                InputKind::ETCD.to_vec(),
                crate::policy::watch::spawn_etcd(store, sink),
            ),
            AnyDatastore::Kube(store) => (
                InputKind::KUBE.to_vec(),
                crate::policy::watch::spawn_kube(&store.client(), sink),
            ),
            AnyDatastore::Memory(_) => return None,
        };
        tasks.extend(watchers);
        let start = policy::PolicyStart {
            node_name: node_name.to_string(),
            kinds,
            updates,
        };
        if handle.start.send(start).is_err() {
            tracing::error!("the policy thread ended before it started: policy is not enforced");
            return None;
        }
        Some(handle.requests)
    }

    async fn run(mut self) {
        let started = Instant::now();
        let Some(outcome) = self.startup().await else {
            return;
        };
        let node_name = outcome.node_name.clone();
        self.health.report(
            STARTUP_REPORTER,
            true,
            true,
            "node registered",
            Instant::now(),
        );
        tracing::info!(node = %node_name, "start-up complete; watching the datastore");

        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        let (updates_sender, updates) = mpsc::channel(1024);
        let services_api = services_api(&self.config, &self.store).await;
        let mut syncer = Syncer::spawn(
            &self.store,
            services_api,
            &node_name,
            &self.config.namespace,
            SyncerContext {
                updates: updates_sender,
                metrics: self.metrics.clone(),
            },
        );
        let bgp_enabled = self.config.networking_backend == NetworkingBackend::Bird;
        let speaker: Arc<Mutex<Option<SpeakerHandle>>> = Arc::new(Mutex::new(None));
        let (tunnel_trigger, tunnel_generation) = watch::channel(0u64);
        let (full_desired_published, full_published) = watch::channel(None);

        tasks.push(tokio::spawn(refresh_tunnels(
            self.config.clone(),
            self.store.clone(),
            node_name.clone(),
            tunnel_generation,
        )));
        tasks.push(tokio::spawn(dataplane_health(
            self.health.clone(),
            self.dataplane.status.clone(),
            full_published,
            self.resync_interval + Duration::from_secs(60),
        )));
        if bgp_enabled {
            tasks.push(tokio::spawn(bgp_health(
                self.health.clone(),
                speaker.clone(),
                started,
                self.bgp_grace,
            )));
        }
        let policy_requests = self.start_policy(&node_name, &mut tasks);
        let control_state = control::ControlState {
            node_name: node_name.clone(),
            bgp_enabled,
            speaker: speaker.clone(),
            ipam: Arc::new(ipam_service::build(
                self.store.clone(),
                &node_name,
                outcome.node.clone(),
                self.computed.subscribe(),
                self.metrics.clone(),
            )),
            policy: policy_requests,
        };
        tasks.push(tokio::spawn(control::serve(
            self.config.control_socket.clone(),
            control_state,
        )));
        tasks.push(tokio::spawn(once_ready(
            self.health.clone(),
            self.store.clone(),
            node_name.clone(),
        )));

        self.health.register(
            state_loop::DATASTORE_REPORTER,
            Some(state_loop::DATASTORE_TIMEOUT),
            Instant::now(),
        );
        let state_loop = state_loop::StateLoop {
            config: self.config.clone(),
            node_name: node_name.clone(),
            registered: outcome.node,
            state: ClusterState::new(),
            updates,
            host_interfaces: self.dataplane.host_interfaces.clone(),
            desired: self.desired,
            computed: self.computed,
            speaker: speaker.clone(),
            route_deltas: self.route_deltas.clone(),
            tunnel_trigger,
            full_desired_published,
            driver_status: self.dataplane.status.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            stopping: self.stopping.clone(),
            services: services::ServiceRoutes::new(self.metrics.clone()),
        };
        // The loop returns when asked to stop; dropping it drops the desired-state sender,
        // which ends the dataplane thread with the kernel left as it is.
        state_loop.run().await;

        tracing::info!("stopping: watchers, BGP sessions (graceful restart), control socket");
        syncer.stop();
        for task in tasks {
            task.abort();
        }
        if let Err(error) = startup::set_network_unavailable(&self.store, &node_name, true).await {
            tracing::warn!(%error, "could not set NetworkUnavailable on shutdown");
        }
        if let Some(handle) = speaker.lock().await.take() {
            handle.shutdown(true).await;
        }
        let _ = std::fs::remove_file(&self.config.control_socket);
    }
}

/// A named thread running `body` on a current-thread runtime of its own. The thread joins the
/// caller's network namespace (threads inherit it), which is why the dataplane and policy
/// threads are spawned from `start`.
pub(crate) fn spawn_runtime_thread<F>(
    name: &str,
    body: impl FnOnce() -> F + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: std::future::Future<Output = ()>,
{
    let thread_name = name.to_string();
    std::thread::Builder::new()
        .name(thread_name.clone())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(body()),
                Err(error) => {
                    tracing::error!(%error, thread = %thread_name, "cannot start the thread's runtime")
                }
            }
        })
}

async fn refresh_tunnels(
    config: Config,
    store: AnyDatastore,
    node_name: String,
    mut generation: watch::Receiver<u64>,
) {
    while generation.changed().await.is_ok() {
        match startup::refresh_tunnel_addresses(&config, &store, &node_name).await {
            Ok(node) => tracing::debug!(node = %node.name, "tunnel addresses checked"),
            Err(error) => tracing::debug!(%error, "tunnel addresses not refreshed"),
        }
    }
}

async fn dataplane_health(
    health: HealthRegistry,
    mut status: watch::Receiver<DriverStatus>,
    mut full_published: watch::Receiver<Option<u64>>,
    timeout: Duration,
) {
    health.register(DATAPLANE_REPORTER, Some(timeout), Instant::now());
    let mut applied = false;
    loop {
        let published_before_pass = *full_published.borrow_and_update();
        let current = status.borrow_and_update().clone();
        // A pass that was already running when the state was published may have applied the
        // previous state; the driver then runs another pass at once, so this is early by at
        // most that one pass.
        if let Some(pass) = published_before_pass {
            applied |= current.passes > pass && current.converged;
        }
        let detail = match (&current.last_error, applied) {
            (Some(error), _) => format!("last pass failed: {error}"),
            (None, true) => format!("applied ({} passes)", current.passes),
            (None, false) => "waiting for the first full apply".to_string(),
        };
        health.report(DATAPLANE_REPORTER, true, applied, &detail, Instant::now());
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            changed = full_published.changed(), if published_before_pass.is_none() => {
                if changed.is_err() { return }
            }
        }
    }
}

async fn bgp_health(
    health: HealthRegistry,
    speaker: Arc<Mutex<Option<SpeakerHandle>>>,
    started: Instant,
    grace: Duration,
) {
    health.register(BGP_REPORTER, Some(Duration::from_secs(30)), Instant::now());
    loop {
        let peers = match speaker.lock().await.as_ref() {
            Some(handle) => Some(handle.status().await),
            None => None,
        };
        let (ready, detail) = match peers {
            Some(peers) => health::bgp_readiness(started.elapsed(), grace, &peers),
            None => (
                false,
                "BGP speaker not started (no router ID yet)".to_string(),
            ),
        };
        health.report(BGP_REPORTER, true, ready, &detail, Instant::now());
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Once every reporter is ready: gives back start-up memory and clears the Node's
/// NetworkUnavailable condition.
async fn once_ready(health: HealthRegistry, store: AnyDatastore, node_name: String) {
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    loop {
        poll.tick().await;
        if health.summary(Instant::now()).ready {
            break;
        }
    }
    let released = crate::memory::release_startup_memory();
    tracing::info!(
        released_kib = released,
        "ready: released the executable's start-up pages"
    );
    match startup::set_network_unavailable(&store, &node_name, false).await {
        Ok(()) => tracing::info!("node is ready: NetworkUnavailable cleared"),
        Err(error) => tracing::warn!(%error, "could not clear NetworkUnavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::listen_address;
    use std::net::SocketAddr;

    fn addresses(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn listen_address_prefers_ipv4_like_felix() {
        let both = addresses(&["[::1]:9099", "127.0.0.1:9099"]);
        assert_eq!(
            listen_address(both),
            Some("127.0.0.1:9099".parse().unwrap())
        );
        let v6 = addresses(&["[::1]:9099", "[fe80::1]:9099"]);
        assert_eq!(listen_address(v6), Some("[::1]:9099".parse().unwrap()));
        assert_eq!(listen_address(Vec::new()), None);
    }
}
