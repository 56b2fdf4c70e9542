//! The speaker's single actor: owns the RIB, every session's FSM slots, the listeners and the
//! timers, and reacts to commands, accepted and completed connections, frames and timer expiry.
//! Everything that touches the RIB happens here, so no locks are needed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use super::learned::LearnedTable;
use super::{Command, SpeakerConfig};
use crate::bgp::codec::{Family, Message};
use crate::bgp::fsm::{
    collision_survivor, ConnectionOrigin, DownReason, Fsm, FsmConfig, GracefulRestartConfig, Input,
    Negotiated, State,
};
use crate::bgp::peering::SessionSpec;
use crate::bgp::policy::{CalicoRibPolicy, RouteKind};
use crate::bgp::rib::{Candidate, PeerConfig, PeerId, Rib, RibConfig};
use crate::bgp::session::{
    connect, spawn_connection, ConnectSettings, Connection, ConnectionEvent, ConnectionId, Slot,
};
use crate::bgp::sockopt;
use crate::dataplane::spec::LearnedRoute;
use crate::metrics::Metrics;

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
    sessions: BTreeMap<String, SessionState>,
    connection_owner: HashMap<ConnectionId, String>,
    next_connection: ConnectionId,
    next_peer: u32,
    listeners: Vec<Listener>,
    listener_key: Option<(Option<IpAddr>, u16)>,
    keyed_peers: BTreeSet<IpAddr>,
    originated: BTreeSet<IpNet>,
    learned: LearnedTable,
    learned_sender: watch::Sender<Arc<Vec<LearnedRoute>>>,
    internal_sender: mpsc::UnboundedSender<Internal>,
    connection_sender: mpsc::UnboundedSender<(ConnectionId, ConnectionEvent)>,
    closing: Vec<Connection>,
}

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
    learned_sender: watch::Sender<Arc<Vec<LearnedRoute>>>,
) {
    let (internal_sender, mut internal) = mpsc::unbounded_channel();
    let (connection_sender, mut connection_events) = mpsc::unbounded_channel();
    let mut actor = Actor {
        rib: Rib::new(rib_config(&initial)),
        config: initial.clone(),
        metrics,
        restarting,
        sessions: BTreeMap::new(),
        connection_owner: HashMap::new(),
        next_connection: 1,
        next_peer: 1,
        listeners: Vec::new(),
        listener_key: None,
        keyed_peers: BTreeSet::new(),
        originated: BTreeSet::new(),
        learned: LearnedTable::default(),
        learned_sender,
        internal_sender,
        connection_sender,
        closing: Vec::new(),
    };
    actor.configure(initial, true);
    loop {
        let deadline = actor.next_deadline();
        let sleep = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Configure(config)) => actor.configure(*config, false),
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
            _ = sleep => actor.timers(Instant::now()),
        }
        actor.after_event();
        // Publish once a burst of events has been handled rather than after every UPDATE.
        if connection_events.is_empty() && internal.is_empty() {
            actor.learned.publish(&actor.learned_sender);
            actor.refresh_metrics();
        }
    }
}

impl Actor {
    fn policy_export(&mut self, id: PeerId) -> crate::bgp::rib::ExportBatch {
        let policy = CalicoRibPolicy {
            policy: &self.config.policy,
            classify: |_: &IpNet, _: &Candidate| (RouteKind::LocalBlockOrWorkload, false),
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
        }
    }

    /// Applies a configuration: rebuilds everything when the speaker's identity changed,
    /// otherwise only the sessions, originated routes and policy that differ.
    fn configure(&mut self, config: SpeakerConfig, first: bool) {
        let identity_changed = !first
            && (config.router_id != self.config.router_id
                || config.local_as != self.config.local_as
                || config.graceful_restart_time != self.config.graceful_restart_time
                || cluster_id(&config) != cluster_id(&self.config));
        if identity_changed {
            let names: Vec<String> = self.sessions.keys().cloned().collect();
            for name in names {
                self.remove_session(&name);
            }
            self.rib = Rib::new(rib_config(&config));
            self.originated.clear();
        }
        let policy_changed = first || config.policy != self.config.policy;
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
        let stale: Vec<String> = self
            .sessions
            .iter()
            .filter(|(name, state)| {
                wanted.get(*name) != Some(&(state.spec.clone(), state.password.clone()))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            self.remove_session(&name);
        }
        for (name, (spec, password)) in wanted {
            if !self.sessions.contains_key(&name) {
                self.add_session(name, spec, password);
            }
        }
        self.apply_passwords();
        // Originated routes.
        let wanted: BTreeSet<IpNet> = self.config.originated.iter().map(|p| p.trunc()).collect();
        let mut changed = Vec::new();
        for prefix in self.originated.difference(&wanted) {
            changed.extend(self.rib.withdraw_local(*prefix));
        }
        for prefix in wanted.difference(&self.originated) {
            changed.extend(
                self.rib
                    .originate(*prefix, crate::bgp::rib::RouteAttributes::local()),
            );
        }
        self.originated = wanted;
        if policy_changed {
            // A full (diffing) export re-evaluates every prefix under the new policy.
            for state in self.sessions.values() {
                let local = state
                    .primary
                    .connection
                    .as_ref()
                    .map(|connection| connection.local_address.ip());
                self.rib
                    .add_peer(state.peer_id, self.peer_config(&state.spec, local));
            }
            self.learned.refresh_all(&self.rib, &self.config.policy);
        } else {
            self.learned
                .refresh(&self.rib, &self.config.policy, &changed);
        }
        self.export_all();
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
        };
        self.sessions.insert(name.clone(), state);
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
        if let Some(state) = self.sessions.remove(name) {
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

    /// One listener per address family (or one on the bind address), re-created when the
    /// address or port changes.
    fn ensure_listeners(&mut self) {
        let key = (self.config.listen_address, self.config.listen_port);
        if self.listener_key == Some(key) {
            return;
        }
        self.listeners.clear();
        self.keyed_peers.clear();
        self.listener_key = Some(key);
        let addresses: Vec<SocketAddr> = match self.config.listen_address {
            Some(address) => vec![SocketAddr::new(address, self.config.listen_port)],
            None => vec![
                SocketAddr::new(
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                    self.config.listen_port,
                ),
                SocketAddr::new(
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                    self.config.listen_port,
                ),
            ],
        };
        for address in addresses {
            match bind_listener(address) {
                Ok(listener) => {
                    let socket = Arc::new(listener);
                    let accept_socket = socket.clone();
                    let sender = self.internal_sender.clone();
                    let task = tokio::spawn(async move {
                        loop {
                            match accept_socket.accept().await {
                                Ok((stream, peer)) => {
                                    if sender.send(Internal::Accepted(stream, peer)).is_err() {
                                        return;
                                    }
                                }
                                Err(error) => {
                                    tracing::warn!(%error, "BGP listener accept failed");
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                }
                            }
                        }
                    });
                    tracing::info!(%address, "BGP listening");
                    self.listeners.push(Listener {
                        socket,
                        ipv6: address.is_ipv6(),
                        task,
                    });
                }
                Err(error) => tracing::warn!(%address, %error, "cannot listen for BGP"),
            }
        }
    }

    /// TCP-MD5 keys on the listeners for every peer with a password; removed for the others.
    fn apply_passwords(&mut self) {
        let wanted: BTreeMap<IpAddr, String> = self
            .sessions
            .values()
            .filter_map(|s| Some((s.spec.peer_address, s.password.clone()?)))
            .collect();
        for listener in &self.listeners {
            for (peer, password) in &wanted {
                if peer.is_ipv6() && !listener.ipv6 {
                    continue;
                }
                if let Err(error) = sockopt::set_md5_password(
                    &*listener.socket,
                    listener.ipv6,
                    *peer,
                    Some(password),
                ) {
                    tracing::warn!(%error, "cannot set the TCP MD5 password on the listener");
                }
            }
            for peer in self.keyed_peers.iter().filter(|p| !wanted.contains_key(p)) {
                let _ = sockopt::set_md5_password(&*listener.socket, listener.ipv6, *peer, None);
            }
        }
        self.keyed_peers = wanted.into_keys().collect();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.sessions
            .values()
            .flat_map(|state| {
                [
                    state.primary.next_deadline(),
                    state.secondary.as_ref().and_then(Slot::next_deadline),
                    state.stale_deadline,
                ]
            })
            .flatten()
            .min()
    }

    fn timers(&mut self, now: Instant) {
        let names: Vec<String> = self.sessions.keys().cloned().collect();
        for name in names {
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

    fn internal(&mut self, event: Internal) {
        match event {
            Internal::Accepted(stream, peer) => self.accepted(stream, peer),
            Internal::Connected {
                session,
                generation,
                result,
            } => self.connected(session, generation, result),
        }
    }

    fn accepted(&mut self, stream: TcpStream, peer: SocketAddr) {
        let address = canonical(peer.ip());
        let Some(name) = self
            .sessions
            .iter()
            .find(|(_, s)| s.spec.peer_address == address)
            .map(|(name, _)| name.clone())
        else {
            tracing::info!(peer = %address, "refused BGP connection from an unknown peer");
            return;
        };
        let Some(state) = self.sessions.get_mut(&name) else {
            return;
        };
        if let (Some(hops), Ok(local)) = (state.spec.ttl_security, stream.local_addr()) {
            if let Err(error) = sockopt::set_ttl_security(&stream, local, address, hops) {
                tracing::warn!(session = %name, %error, "cannot apply TTL security");
            }
        }
        let primary_state = state.primary.fsm.state();
        if state.primary.connection.is_none() && primary_state != State::Established {
            // Take the incoming connection; any outgoing attempt in flight is abandoned.
            state.connect_generation += 1;
            if primary_state == State::Idle {
                self.handle(&name, Which::Primary, Input::ManualStart);
            }
            if self.attach(&name, Which::Primary, stream, ConnectionOrigin::Remote) {
                self.handle(&name, Which::Primary, Input::TcpConnectionConfirmed);
            }
        } else if state.secondary.is_none() && primary_state != State::Established {
            // Collision: run the second connection until one side's OPEN decides (§6.8).
            let spec = state.spec.clone();
            let mut slot = Slot::new(Fsm::new(self.fsm_config(&spec)));
            slot.started_passive = true;
            if let Some(state) = self.sessions.get_mut(&name) {
                state.secondary = Some(slot);
            }
            self.handle(&name, Which::Secondary, Input::ManualStartPassive);
            if self.attach(&name, Which::Secondary, stream, ConnectionOrigin::Remote) {
                self.handle(&name, Which::Secondary, Input::TcpConnectionConfirmed);
            }
        } else {
            tracing::debug!(session = %name, "refused a further connection from the peer");
        }
    }

    fn connected(&mut self, name: String, generation: u64, result: std::io::Result<TcpStream>) {
        let Some(state) = self.sessions.get_mut(&name) else {
            return;
        };
        if state.connect_generation != generation
            || state.primary.connection.is_some()
            || !matches!(state.primary.fsm.state(), State::Connect | State::Active)
        {
            return;
        }
        match result {
            Ok(stream) => {
                if self.attach(&name, Which::Primary, stream, ConnectionOrigin::Local) {
                    self.handle(&name, Which::Primary, Input::TcpConnectionConfirmed);
                }
            }
            Err(error) => {
                state.last_error = Some(format!("Socket: {error}"));
                self.handle(&name, Which::Primary, Input::TcpConnectionFails);
            }
        }
    }

    fn attach(
        &mut self,
        name: &str,
        which: Which,
        stream: TcpStream,
        origin: ConnectionOrigin,
    ) -> bool {
        let id = self.next_connection;
        self.next_connection += 1;
        match spawn_connection(stream, id, origin, self.connection_sender.clone()) {
            Ok(connection) => {
                self.connection_owner.insert(id, name.to_string());
                if let Some(slot) = self.slot_mut(name, which) {
                    slot.connection = Some(connection);
                }
                true
            }
            Err(error) => {
                tracing::warn!(session = %name, %error, "cannot use the BGP connection");
                false
            }
        }
    }

    fn connection_event(&mut self, id: ConnectionId, event: ConnectionEvent) {
        let Some(name) = self.connection_owner.get(&id).cloned() else {
            return;
        };
        let Some(state) = self.sessions.get_mut(&name) else {
            return;
        };
        let which = if state.primary.connection_id() == Some(id) {
            Which::Primary
        } else if state.secondary.as_ref().and_then(Slot::connection_id) == Some(id) {
            Which::Secondary
        } else {
            return;
        };
        match event {
            ConnectionEvent::Closed(reason) => {
                state.last_error = Some(format!("Socket: {reason}"));
                self.handle(&name, which, Input::TcpConnectionFails);
            }
            ConnectionEvent::FramingError(error) => self.malformed(&name, which, error),
            ConnectionEvent::Frame(bytes) => {
                let options = match self.slot_mut(&name, which) {
                    Some(slot) => slot.fsm.codec_options(),
                    None => return,
                };
                match Message::decode(&bytes, &options) {
                    Ok(Message::Open(open)) => self.open_received(&name, which, open),
                    Ok(message) => self.handle(&name, which, Input::MessageReceived(message)),
                    Err(error) => self.malformed(&name, which, error),
                }
            }
        }
    }

    fn malformed(&mut self, name: &str, which: Which, error: crate::bgp::codec::DecodeError) {
        if let Some(state) = self.sessions.get_mut(name) {
            if !state.malformed_logged {
                state.malformed_logged = true;
                tracing::warn!(session = %name, %error, "malformed BGP message; sending NOTIFICATION");
            }
        }
        self.metrics
            .bgp_notifications_total
            .with_label_values(&[name, "malformed"])
            .inc();
        self.handle(name, which, Input::DecodeFailed(error));
    }

    /// Connection collision detection when an OPEN arrives (RFC 4271 §6.8).
    fn open_received(&mut self, name: &str, which: Which, open: crate::bgp::codec::Open) {
        let Some(state) = self.sessions.get(name) else {
            return;
        };
        let (this, other) = match which {
            Which::Primary => (Some(&state.primary), state.secondary.as_ref()),
            Which::Secondary => (state.secondary.as_ref(), Some(&state.primary)),
        };
        let other_live = other.is_some_and(|slot| {
            slot.connection.is_some()
                && matches!(slot.fsm.state(), State::OpenSent | State::OpenConfirm)
        });
        if other_live {
            let origin = this
                .and_then(|slot| slot.connection.as_ref())
                .map(|connection| connection.origin);
            let survivor = collision_survivor(
                self.config.router_id,
                state.spec.local_as,
                open.bgp_identifier,
                state.spec.peer_as,
            );
            let other_which = match which {
                Which::Primary => Which::Secondary,
                Which::Secondary => Which::Primary,
            };
            if origin == Some(survivor) {
                self.handle(name, other_which, Input::CollisionDump);
            } else {
                self.handle(name, which, Input::CollisionDump);
                return;
            }
        }
        self.handle(name, which, Input::MessageReceived(Message::Open(open)));
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

mod perform;

fn bind_listener(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        let socket = TcpSocket::new_v6()?;
        sockopt::set_ipv6_only(&socket)?;
        socket
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Spawns an outgoing connection attempt whose result comes back as an event.
fn spawn_connect(
    sender: mpsc::UnboundedSender<Internal>,
    session: String,
    generation: u64,
    settings: ConnectSettings,
) {
    tokio::spawn(async move {
        let result = match tokio::time::timeout(Duration::from_secs(5), connect(settings)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            )),
        };
        let _ = sender.send(Internal::Connected {
            session,
            generation,
            result,
        });
    });
}

fn negotiated_restart_time(negotiated: &Negotiated) -> Option<Duration> {
    let restart = negotiated.peer_graceful_restart.as_ref()?;
    let family_kept = restart
        .families
        .iter()
        .any(|entry| negotiated.families.contains(&entry.family));
    family_kept.then(|| Duration::from_secs(u64::from(restart.restart_time)))
}

fn graceful_reason(reason: &DownReason) -> bool {
    matches!(
        reason,
        DownReason::HoldTimerExpired | DownReason::ConnectionLost
    )
}
