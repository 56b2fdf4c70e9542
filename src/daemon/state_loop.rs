//! The state loop: applies watcher updates to the [`ClusterState`], coalesces a burst into one
//! recomputation, and hands the results to the dataplane driver, the BGP speaker, the
//! tunnel-address refresher, the metrics and the datastore health reporter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Mutex};

use super::services::{self, ServiceRoutes};
use crate::bgp::speaker::SpeakerHandle;
use crate::health::HealthRegistry;
use crate::metrics::Metrics;
use crate::route_deltas::DeltaSender;
use starling_bgp::config::SpeakerConfig;
use starling_calc::compute::{compute, effective_bgp_config, ComputeInput, Computed};
use starling_calc::services::ServiceSettings;
use starling_calc::spec::{Desired, HostInterface, RouteClass};
use starling_calc::state::{ClusterState, Kind, Update};
use starling_model::config::Config;
use starling_model::{CalicoNode, IpPool};

pub(super) const DATASTORE_REPORTER: &str = "datastore";
/// Heartbeat period of the state loop and the timeout after which it counts as stuck.
const HEARTBEAT: Duration = Duration::from_secs(10);
pub(super) const DATASTORE_TIMEOUT: Duration = Duration::from_secs(30);

const ROUTE_CLASSES: [RouteClass; 8] = [
    RouteClass::LocalWorkload,
    RouteClass::BorrowedRemote,
    RouteClass::RemoteBlockSameSubnet,
    RouteClass::RemoteBlockVxlan,
    RouteClass::RemoteBlockIpip,
    RouteClass::RemoteBlockNoEncap,
    RouteClass::BlackholeLocalBlock,
    RouteClass::BgpLearned,
];

pub(super) struct StateLoop {
    pub config: Config,
    pub node_name: String,
    pub registered: CalicoNode,
    pub state: ClusterState,
    pub updates: mpsc::Receiver<Update>,
    pub host_interfaces: watch::Receiver<Vec<HostInterface>>,
    pub desired: watch::Sender<Arc<Desired>>,
    pub computed: watch::Sender<Option<Arc<Computed>>>,
    pub speaker: Arc<Mutex<Option<SpeakerHandle>>>,
    /// Where the speaker sends learned-route deltas (the dataplane's end of the channel).
    pub route_deltas: DeltaSender,
    pub tunnel_trigger: watch::Sender<u64>,
    /// The driver's pass count just before the first desired state with deletions allowed
    /// (datastore in sync) was published; a later converged pass has applied it.
    pub full_desired_published: watch::Sender<Option<u64>>,
    pub driver_status: watch::Receiver<crate::dataplane::driver::DriverStatus>,
    pub metrics: Metrics,
    pub health: HealthRegistry,
    pub stopping: watch::Receiver<bool>,
    pub services: ServiceRoutes,
}

impl StateLoop {
    pub async fn run(mut self) {
        let mut last_speaker: Option<SpeakerConfig> = None;
        let mut last_tunnel_inputs: Option<(Vec<IpPool>, CalicoNode)> = None;
        let mut interfaces_alive = true;
        let mut ticker = tokio::time::interval(HEARTBEAT);
        let mut dirty = true;
        loop {
            if dirty {
                self.recompute(&mut last_speaker, &mut last_tunnel_inputs)
                    .await;
                dirty = false;
            }
            self.report_health();
            tokio::select! {
                _ = self.stopping.changed() => return,
                update = self.updates.recv() => {
                    let Some(update) = update else { return };
                    dirty |= self.apply(update).await;
                    // Coalesce the burst: everything already queued goes into one computation.
                    while let Ok(update) = self.updates.try_recv() {
                        dirty |= self.apply(update).await;
                    }
                }
                alive = self.host_interfaces.changed(), if interfaces_alive => {
                    interfaces_alive = alive.is_ok();
                    dirty |= alive.is_ok();
                }
                _ = ticker.tick() => {}
            }
        }
    }

    /// Applies one update; true when the cluster state changed. Services and EndpointSlices
    /// go straight to service advertisement and never dirty the state.
    async fn apply(&mut self, update: Update) -> bool {
        match self.services.take(update) {
            Ok(changes) => {
                if !changes.is_empty() {
                    services::send(self.speaker.lock().await.as_ref(), changes);
                }
                false
            }
            Err(update) => self.state.apply(update),
        }
    }

    fn report_health(&self) {
        let in_sync = self.state.all_in_sync(&Kind::ALL);
        let missing: Vec<&str> = Kind::ALL
            .iter()
            .filter(|kind| !self.state.is_in_sync(**kind))
            .map(|kind| kind.name())
            .collect();
        let detail = if in_sync {
            "in sync".to_string()
        } else {
            format!("waiting for {}", missing.join(", "))
        };
        self.health
            .report(DATASTORE_REPORTER, true, in_sync, &detail, Instant::now());
    }

    async fn recompute(
        &mut self,
        last_speaker: &mut Option<SpeakerConfig>,
        last_tunnel_inputs: &mut Option<(Vec<IpPool>, CalicoNode)>,
    ) {
        let started = Instant::now();
        let interfaces = self.host_interfaces.borrow().clone();
        let computed = compute(&ComputeInput {
            state: &self.state,
            config: &self.config,
            node_name: &self.node_name,
            registered_node: Some(&self.registered),
            host_interfaces: &interfaces,
            // Learned routes bypass this computation (see `route_deltas`).
            learned_routes: &[],
        });
        self.metrics
            .desired_compute_seconds
            .observe(started.elapsed().as_secs_f64());
        self.record_metrics(&computed);

        let desired = computed.desired.clone();
        let full = desired.allow_deletions;
        let passes_before = self.driver_status.borrow().passes;
        self.desired.send_if_modified(|current| {
            let changed = **current != desired;
            if changed {
                *current = Arc::new(desired);
            }
            changed
        });
        if full {
            self.full_desired_published.send_if_modified(|published| {
                let first = published.is_none();
                if first {
                    *published = Some(passes_before);
                }
                first
            });
        }

        // Sessions are only configured from a complete view: a partial one (say, BGPPeers seen
        // before the BGPConfiguration that turns the mesh off) would open sessions only to
        // close them again a moment later.
        if let Some(speaker_config) = computed.speaker.as_ref().filter(|_| full) {
            if last_speaker.as_ref() != Some(speaker_config) {
                let mut speaker = self.speaker.lock().await;
                match speaker.as_ref() {
                    Some(handle) => handle.update(speaker_config.clone()),
                    None => {
                        // Like calico-node's `bird -R`: start in graceful-restart recovery, so
                        // after a daemon restart peers keep our routes (still in every kernel)
                        // until our End-of-RIB; on a first start the bit costs nothing.
                        let handle = SpeakerHandle::spawn_feeding(
                            speaker_config.clone(),
                            self.metrics.clone(),
                            true,
                            self.route_deltas.clone(),
                        );
                        handle.advertise_services(self.services.all());
                        *speaker = Some(handle);
                    }
                }
                *last_speaker = Some(speaker_config.clone());
            }
        }
        let settings = ServiceSettings::new(
            &effective_bgp_config(&self.state, &self.node_name),
            &computed.local_node,
        );
        let changes = self.services.set_settings(settings);
        if !changes.is_empty() {
            services::send(self.speaker.lock().await.as_ref(), changes);
        }

        let tunnel_inputs = (
            computed.dataplane.pools.clone(),
            computed.local_node.clone(),
        );
        if last_tunnel_inputs.as_ref() != Some(&tunnel_inputs) {
            *last_tunnel_inputs = Some(tunnel_inputs);
            self.tunnel_trigger
                .send_modify(|generation| *generation += 1);
        }
        self.computed.send_replace(Some(Arc::new(computed)));
    }

    fn record_metrics(&self, computed: &Computed) {
        for class in ROUTE_CLASSES {
            let count = computed
                .desired
                .routes
                .values()
                .filter(|route| route.class == class)
                .count();
            self.metrics
                .routes
                .with_label_values(&[&format!("{class:?}")])
                .set(count as i64);
        }
        self.metrics.ipam_blocks.reset();
        self.metrics.ipam_addresses_in_use.reset();
        self.metrics.ipam_pool_size.reset();
        for pool in &computed.dataplane.pools {
            let host_bits = u32::from(pool.cidr.max_prefix_len() - pool.cidr.prefix_len());
            self.metrics
                .ipam_pool_size
                .with_label_values(&[&pool.name])
                .set(2f64.powi(host_bits as i32));
            self.metrics
                .ipam_addresses_in_use
                .with_label_values(&[&pool.name])
                .set(0);
        }
        for block in self.state.blocks() {
            let Some(pool) = computed
                .dataplane
                .pools
                .iter()
                .find(|pool| pool.cidr.contains(&block.cidr))
            else {
                continue;
            };
            self.metrics
                .ipam_blocks
                .with_label_values(&[&pool.name, block.host().unwrap_or("")])
                .inc();
            self.metrics
                .ipam_addresses_in_use
                .with_label_values(&[&pool.name])
                .add(block.allocated_count() as i64);
        }
    }
}
