//! The speaker's single actor: owns the RIB, every session's FSM slots, the listeners and the
//! timers, and reacts to commands, accepted and completed connections, frames and timer expiry.
//! Everything that touches the RIB happens here, so no locks are needed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::learned::LearnedTable;
use super::{Command, SpeakerConfig};
use crate::bgp::session::{Connection, ConnectionId, EventSender, Slot, INBOUND_EVENTS};
use crate::metrics::Metrics;
use crate::route_deltas::DeltaSender;
use starling_bgp::codec::Family;
use starling_bgp::fsm::{
    DownReason, Fsm, FsmConfig, GracefulRestartConfig, Input, Negotiated, State,
};
use starling_bgp::peering::SessionSpec;
use starling_bgp::policy::{CalicoRibPolicy, PolicyScope, RouteKind};
use starling_bgp::rib::{Candidate, PeerConfig, PeerId, Rib, RibConfig};

/// Events from helper tasks (listeners and outgoing connects).
enum Internal {
    Accepted(TcpStream, SocketAddr),
    Connected {
        session: String,
        generation: u64,
        result: std::io::Result<TcpStream>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Primary,
    Secondary,
}

struct SessionState {
    spec: SessionSpec,
    password: Option<String>,
    peer_id: PeerId,
    primary: Slot,
    secondary: Option<Slot>,
    /// Results of outgoing connects from older generations are discarded.
    connect_generation: u64,
    last_error: Option<String>,
    since: chrono::DateTime<chrono::Local>,
    last_state: State,
    /// The peer's graceful restart time, when it advertised the capability (RFC 4724).
    peer_restart_time: Option<Duration>,
    /// When the stale routes of a gracefully restarting peer are swept.
    stale_deadline: Option<Instant>,
    malformed_logged: bool,
    /// The import limit was passed and reported (once per episode).
    limit_reported: bool,
    /// Down for passing its import limit (`disable`): no connection until the config changes.
    disabled_by_limit: bool,
}

struct Listener {
    socket: Arc<TcpListener>,
    ipv6: bool,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) struct Actor {
    config: SpeakerConfig,
    metrics: Metrics,
    restarting: bool,
    rib: Rib,
    sessions: Sessions,
    connection_owner: HashMap<ConnectionId, String>,
    next_connection: ConnectionId,
    next_peer: u32,
    listeners: Vec<Listener>,
    listener_key: Option<(Option<IpAddr>, u16)>,
    keyed_peers: BTreeSet<IpAddr>,
    /// Every prefix originated into the RIB: the configuration's and the Services'.
    originated: BTreeSet<IpNet>,
    /// Per-Service addresses asked for by service advertisement.
    service_routes: BTreeSet<IpNet>,
    learned: LearnedTable,
    internal_sender: mpsc::UnboundedSender<Internal>,
    connection_sender: EventSender,
    closing: Vec<Connection>,
    last_metrics: Option<Instant>,
    metrics_pending: Option<Instant>,
    bfd: bfd::BfdLink,
}

/// Shortest interval between two refreshes of the per-session route counters.
const METRICS_INTERVAL: Duration = Duration::from_millis(100);

fn cluster_id(config: &SpeakerConfig) -> Option<std::net::Ipv4Addr> {
    config
        .sessions
        .values()
        .find_map(|spec| spec.route_reflector_client_cluster_id)
}

fn rib_config(config: &SpeakerConfig) -> RibConfig {
    RibConfig {
        local_as: config.local_as,
        router_id: config.router_id,
        cluster_id: cluster_id(config),
    }
}

fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        other => other,
    }
}

pub(super) async fn run(
    initial: SpeakerConfig,
    metrics: Metrics,
    restarting: bool,
    mut commands: mpsc::UnboundedReceiver<Command>,
    route_deltas: DeltaSender,
) {
    let (internal_sender, mut internal) = mpsc::unbounded_channel();
    let (connection_sender, mut connection_events) = mpsc::channel(INBOUND_EVENTS);
    let (bfd_sender, mut bfd_events) = mpsc::unbounded_channel();
    let mut actor = Actor {
        rib: Rib::new(rib_config(&initial)),
        config: initial.clone(),
        metrics,
        restarting,
        sessions: Sessions::default(),
        connection_owner: HashMap::new(),
        next_connection: 1,
        next_peer: 1,
        listeners: Vec::new(),
        listener_key: None,
        keyed_peers: BTreeSet::new(),
        originated: BTreeSet::new(),
        service_routes: BTreeSet::new(),
        learned: LearnedTable::new(route_deltas),
        internal_sender,
        connection_sender,
        closing: Vec::new(),
        last_metrics: None,
        metrics_pending: None,
        bfd: bfd::BfdLink::new(bfd_sender),
    };
    actor.configure(initial, true);
    loop {
        let sleep = crate::bgp::sleep_until(actor.next_deadline());
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Configure(config)) => actor.configure(*config, false),
                Some(Command::ServiceRoutes(changes)) => actor.apply_service_routes(changes),
                Some(Command::Status(reply)) => { let _ = reply.send(actor.status()); }
                Some(Command::Shutdown { graceful, done }) => {
                    actor.shutdown(graceful).await;
                    let _ = done.send(());
                    return;
                }
                None => {
                    actor.shutdown(true).await;
                    return;
                }
            },
            Some(event) = internal.recv() => actor.internal(event),
            Some((id, event)) = connection_events.recv() => actor.connection_event(id, event),
            Some(event) = bfd_events.recv() => actor.bfd_event(event),
            _ = sleep => actor.timers(Instant::now()),
        }
        actor.after_event();
        // Counters once a burst of events has been handled rather than after every UPDATE.
        if connection_events.is_empty() && internal.is_empty() {
            actor.refresh_counters(Instant::now());
        }
    }
}

impl Actor {
    fn policy_export(&mut self, id: PeerId) -> starling_bgp::rib::ExportBatch {
        let policy = &self.config.policy;
        let service_routes = &self.service_routes;
        let policy = CalicoRibPolicy {
            policy,
            classify: |prefix: &IpNet, _: &Candidate| {
                let kind = if service_routes.contains(prefix) {
                    RouteKind::Service
                } else {
                    policy.classify_local(prefix)
                };
                (kind, false)
            },
        };
        self.rib.export(id, &policy)
    }

    fn fsm_config(&self, spec: &SessionSpec) -> FsmConfig {
        let mut config = FsmConfig::new(spec.local_as, spec.peer_as, self.config.router_id);
        config.keepalive_time = spec.keepalive_time;
        config.passive = spec.passive;
        config.families = vec![if spec.peer_address.is_ipv4() {
            Family::IPV4_UNICAST
        } else {
            Family::IPV6_UNICAST
        }];
        config.graceful_restart = Some(GracefulRestartConfig {
            restart_time: spec
                .graceful_restart_time
                .unwrap_or(self.config.graceful_restart_time),
            restarting: self.restarting,
            forwarding_preserved: true,
        });
        config
    }

    fn peer_config(&self, spec: &SessionSpec, local: Option<IpAddr>) -> PeerConfig {
        let local = local.or(spec.source_address).or(self.config.listen_address);
        PeerConfig {
            address: spec.peer_address,
            peer_as: spec.peer_as,
            local_as: spec.local_as,
            route_reflector_client: spec.route_reflector_client_cluster_id.is_some(),
            next_hop_mode: spec.next_hop_mode,
            local_address_v4: match local {
                Some(IpAddr::V4(v4)) => Some(v4),
                _ => None,
            },
            local_address_v6: match local {
                Some(IpAddr::V6(v6)) => Some(v6),
                _ => None,
            },
            allowed_local_as: spec.num_allowed_local_as_numbers.unwrap_or(0),
            filters: spec.filters.clone(),
            interface: local.and_then(interface_holding),
        }
    }

    /// Applies a configuration: rebuilds everything when the speaker's identity changed,
    /// otherwise only the sessions, originated routes and policy that differ. Nothing here
    /// sends a Cease to a peer that stays configured (see [`Actor::update_session`]).
    fn configure(&mut self, config: SpeakerConfig, first: bool) {
        // Router ID, AS and cluster ID are in every route we sent: peers must relearn them.
        let identity_changed = !first
            && (config.router_id != self.config.router_id
                || config.local_as != self.config.local_as
                || cluster_id(&config) != cluster_id(&self.config));
        if identity_changed {
            let names: Vec<String> = self.sessions.keys().cloned().collect();
            for name in names {
                self.remove_session(&name);
            }
            self.rib = Rib::new(rib_config(&config));
            self.originated.clear();
        }
        let scope = if first || identity_changed {
            PolicyScope::All
        } else {
            self.config.policy.changed_scope(&config.policy)
        };
        let old_interfaces = std::mem::take(&mut self.config.originated_interfaces);
        self.config = config;
        self.ensure_listeners();
        // Sessions.
        let wanted: BTreeMap<String, (SessionSpec, Option<String>)> = self
            .config
            .sessions
            .iter()
            .map(|(name, spec)| {
                (
                    name.clone(),
                    (spec.clone(), self.config.passwords.get(name).cloned()),
                )
            })
            .collect();
        let gone: Vec<String> = self
            .sessions
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.remove_session(&name);
        }
        for (name, (spec, password)) in wanted {
            if self.sessions.contains_key(&name) {
                self.update_session(&name, spec, password);
            } else {
                self.add_session(name, spec, password);
            }
        }
        self.apply_passwords();
        // Originated routes.
        let wanted: BTreeSet<IpNet> = self
            .config
            .originated
            .iter()
            .map(|p| p.trunc())
            .chain(self.service_routes.iter().copied())
            .collect();
        let mut changed = Vec::new();
        for prefix in self.originated.difference(&wanted) {
            changed.extend(self.rib.withdraw_local(*prefix));
        }
        for prefix in &wanted {
            // New routes, and kept ones whose interface changed (a pod recreated on a new veth).
            let interface = self.config.originated_interfaces.get(prefix);
            if !self.originated.contains(prefix) || old_interfaces.get(prefix) != interface {
                changed.extend(self.rib.originate_via(
                    *prefix,
                    starling_bgp::rib::RouteAttributes::local(),
                    interface.map(String::as_str),
                ));
            }
        }
        self.originated = wanted;
        match scope {
            PolicyScope::Nothing => {}
            PolicyScope::Within(cidrs) => {
                // Only the prefixes the change concerns are re-evaluated, for export and kernel.
                let affected = self.rib.prefixes_within(&cidrs);
                self.rib.reexport(&affected);
                changed.extend(affected);
            }
            PolicyScope::All => {
                let all: Vec<IpNet> = self.rib.best_routes().map(|(prefix, _)| *prefix).collect();
                self.rib.reexport(&all);
                self.learned.refresh_all(&self.rib, &self.config.policy);
            }
        }
        changed.sort();
        changed.dedup();
        self.learned
            .refresh(&self.rib, &self.config.policy, &changed);
        self.export_all();
    }

    /// Applies a changed session without dropping forwarding. Parameters carried in OPEN
    /// (keepalive, restart time, passive) wait for the next connection; export parameters
    /// (next-hop mode) re-export in place; a changed endpoint, AS, password or TTL needs a new
    /// connection, which is closed without a NOTIFICATION so both sides keep each other's
    /// routes as stale while it reconnects (RFC 4724 §4).
    fn update_session(&mut self, name: &str, spec: SessionSpec, password: Option<String>) {
        let Some(state) = self.sessions.get(name) else {
            return;
        };
        if state.spec == spec && state.password == password {
            return;
        }
        let old = &state.spec;
        let reconnect = old.peer_address != spec.peer_address
            || old.peer_port != spec.peer_port
            || old.peer_as != spec.peer_as
            || old.local_as != spec.local_as
            || old.source_address != spec.source_address
            || old.ttl_security != spec.ttl_security
            || state.password != password;
        let local = state
            .primary
            .connection
            .as_ref()
            .map(|connection| connection.local_address.ip());
        let old_peer_config = self.peer_config(old, local);
        let old_filters = old.filters.clone();
        let new_filters = spec.filters.clone();
        let peer_config = self.peer_config(&spec, local);
        let fsm_config = self.fsm_config(&spec);
        let Some(state) = self.sessions.get_mut(name) else {
            return;
        };
        state.spec = spec;
        state.password = password;
        let peer_id = state.peer_id;
        for slot in std::iter::once(&mut state.primary).chain(state.secondary.as_mut()) {
            slot.fsm.reconfigure(fsm_config.clone());
        }
        let was_disabled = std::mem::take(&mut state.disabled_by_limit);
        state.limit_reported = false;
        if peer_config != old_peer_config {
            // Exports are recomputed in full on the next export (filters, next-hop mode).
            self.rib.add_peer(peer_id, peer_config);
        }
        if old_filters != new_filters {
            self.filters_changed(name, &old_filters, &new_filters);
        }
        self.apply_import_block(name);
        // BFD newly enabled on an Established session starts now, from its local address.
        let established = self
            .sessions
            .get(name)
            .is_some_and(|state| state.primary.fsm.state() == State::Established);
        self.sync_bfd(name, local.filter(|_| established));
        tracing::info!(session = %name, reconnect, "BGP session reconfigured");
        if was_disabled {
            // A changed configuration is the operator's answer to a disabled session.
            self.handle(name, Which::Primary, Input::ManualStart);
        }
        if reconnect {
            self.handle(name, Which::Primary, Input::TcpConnectionFails);
            if self
                .sessions
                .get(name)
                .is_some_and(|state| state.secondary.is_some())
            {
                self.handle(name, Which::Secondary, Input::TcpConnectionFails);
            }
        }
    }

    fn add_session(&mut self, name: String, spec: SessionSpec, password: Option<String>) {
        let peer_id = PeerId(self.next_peer);
        self.next_peer += 1;
        self.rib.add_peer(peer_id, self.peer_config(&spec, None));
        let fsm = Fsm::new(self.fsm_config(&spec));
        let state = SessionState {
            spec,
            password,
            peer_id,
            primary: Slot::new(fsm),
            secondary: None,
            connect_generation: 0,
            last_error: None,
            since: chrono::Local::now(),
            last_state: State::Idle,
            peer_restart_time: None,
            stale_deadline: None,
            malformed_logged: false,
            limit_reported: false,
            disabled_by_limit: false,
        };
        self.report_filter_problem(&name, None, &state.spec.filters);
        self.sessions.insert(name.clone(), state);
        self.apply_import_block(&name);
        tracing::info!(session = %name, "BGP session configured");
        self.handle(&name, Which::Primary, Input::ManualStart);
    }

    fn remove_session(&mut self, name: &str) {
        self.handle(name, Which::Primary, Input::ManualStop);
        if let Some(state) = self.sessions.get(name) {
            if state.secondary.is_some() {
                self.handle(name, Which::Secondary, Input::ManualStop);
            }
        }
        self.stop_bfd(name);
        if let Some(state) = self.sessions.remove(name) {
            self.forget_filter_problem(name, &state.spec.filters);
            let changed = self.rib.remove_peer(state.peer_id);
            self.learned
                .refresh(&self.rib, &self.config.policy, &changed);
            for label in [
                &self.metrics.bgp_prefixes_received,
                &self.metrics.bgp_prefixes_accepted,
                &self.metrics.bgp_prefixes_advertised,
            ] {
                let _ = label.remove_label_values(&[name]);
            }
            tracing::info!(session = %name, "BGP session removed");
        }
        self.export_all();
    }

    /// Refreshes the route counters at most every [`METRICS_INTERVAL`] while routes change
    /// (learned routes themselves went to the dataplane already, as deltas).
    fn refresh_counters(&mut self, now: Instant) {
        if self.metrics_pending.is_none() && !self.learned.take_dirty() {
            return;
        }
        match self.last_metrics {
            Some(last) if now < last + METRICS_INTERVAL => {
                self.metrics_pending = Some(last + METRICS_INTERVAL);
            }
            _ => {
                self.last_metrics = Some(now);
                self.metrics_pending = None;
                self.refresh_metrics();
            }
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        let pending = self.metrics_pending;
        self.sessions
            .next_deadline()
            .into_iter()
            .chain(pending)
            .min()
    }

    fn timers(&mut self, now: Instant) {
        if self.metrics_pending.is_some_and(|at| at <= now) {
            self.refresh_counters(now);
        }
        for name in self.sessions.due(now) {
            for which in [Which::Primary, Which::Secondary] {
                let due = match self.slot_mut(&name, which) {
                    Some(slot) => slot.take_due(now),
                    None => continue,
                };
                for timer in due {
                    self.handle(&name, which, Input::TimerExpired(timer));
                }
            }
            let expired = self
                .sessions
                .get(&name)
                .is_some_and(|s| s.stale_deadline.is_some_and(|d| d <= now));
            if expired {
                if let Some(state) = self.sessions.get_mut(&name) {
                    state.stale_deadline = None;
                    let id = state.peer_id;
                    tracing::info!(session = %name, "graceful restart time over: stale routes swept");
                    let changed = self.rib.sweep_stale(id, None);
                    self.learned
                        .refresh(&self.rib, &self.config.policy, &changed);
                    self.export_all();
                }
            }
        }
    }

    fn slot_mut(&mut self, name: &str, which: Which) -> Option<&mut Slot> {
        let state = self.sessions.get_mut(name)?;
        match which {
            Which::Primary => Some(&mut state.primary),
            Which::Secondary => state.secondary.as_mut(),
        }
    }

    /// Feeds one input to a slot's FSM and performs the outputs.
    fn handle(&mut self, name: &str, which: Which, input: Input) {
        let now = Instant::now();
        let outputs = match self.slot_mut(name, which) {
            Some(slot) => slot.fsm.handle(input, now),
            None => return,
        };
        for output in outputs {
            self.perform(name, which, output);
        }
    }
}

mod bfd;
mod connections;
mod filters;
mod limits;
mod perform;
mod services;
mod sessions;

use connections::spawn_connect;
use sessions::Sessions;

fn negotiated_restart_time(negotiated: &Negotiated) -> Option<Duration> {
    let restart = negotiated.peer_graceful_restart.as_ref()?;
    let family_kept = restart
        .families
        .iter()
        .any(|entry| negotiated.families.contains(&entry.family));
    family_kept.then(|| Duration::from_secs(u64::from(restart.restart_time)))
}

/// The interface that has `address` (the session's local address), for `interface` filter rules.
fn interface_holding(address: IpAddr) -> Option<String> {
    let holds = |entry: &nix::ifaddrs::InterfaceAddress| {
        let Some(storage) = entry.address.as_ref() else {
            return false;
        };
        match address {
            IpAddr::V4(v4) => storage
                .as_sockaddr_in()
                .is_some_and(|found| found.ip() == v4),
            IpAddr::V6(v6) => storage
                .as_sockaddr_in6()
                .is_some_and(|found| found.ip() == v6),
        }
    };
    nix::ifaddrs::getifaddrs()
        .ok()?
        .find(|entry| holds(entry))
        .map(|entry| entry.interface_name)
}

fn graceful_reason(reason: &DownReason) -> bool {
    matches!(
        reason,
        DownReason::HoldTimerExpired | DownReason::ConnectionLost
    )
}
