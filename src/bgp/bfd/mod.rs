//! BFD's I/O edge (RFC 5881 single hop): one task owns the UDP sockets ([`socket`]) and every
//! session of the pure state machine in `starling_bgp::bfd`, runs their timers on tokio's clock
//! and reports state changes to the speaker, which decides what a Down means for BGP.
//!
//! Received packets must arrive with TTL 255 (GTSM, RFC 5881 §5), are validated by the codec and
//! go to the session named by their Your Discriminator, or while that is 0 to the session for
//! their source address. The sockets open with the first session, so a node without BFD never
//! binds port 3784. A separate task keeps the 100 ms timers away from the speaker's RIB work.

mod socket;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use socket::{Datagram, Senders};
use starling_bgp::bfd::{
    to_micros, BfdTiming, ControlPacket, Diag, Input, Output, Session, SessionState, Timer, SLOW_TX,
};
use starling_model::bgp::BfdSettings;

pub use socket::TTL;

/// A BFD session the speaker wants, keyed by the BGP session's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdPeer {
    pub name: String,
    pub peer: IpAddr,
    /// The BGP connection's local address (packets are sent from it).
    pub local: Option<IpAddr>,
    pub timing: BfdTiming,
}

/// A session's state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdEvent {
    pub name: String,
    pub previous: SessionState,
    pub state: SessionState,
    pub diag: Diag,
    /// The peer said AdminDown: it stopped BFD on purpose, which is no path failure
    /// (RFC 5882 §3.2).
    pub peer_admin_down: bool,
}

impl BfdEvent {
    /// Whether this change means the path to the peer failed.
    pub fn failed(&self) -> bool {
        self.previous == SessionState::Up
            && self.state == SessionState::Down
            && !self.peer_admin_down
    }
}

/// The annotations' settings as the state machine's timing: the interval is both our desired
/// transmit and our required receive interval.
pub fn timing(settings: &BfdSettings) -> BfdTiming {
    BfdTiming {
        desired_min_tx: settings.interval,
        required_min_rx: settings.interval,
        detect_mult: settings.multiplier,
    }
}

enum Command {
    Set(BfdPeer),
    Remove(String),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to the BFD task; dropping it stops the task without goodbye packets.
pub struct BfdHandle {
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl BfdHandle {
    /// Starts the task on the current runtime (and so in the current network namespace).
    pub fn spawn(metrics: Metrics, events: mpsc::UnboundedSender<BfdEvent>) -> BfdHandle {
        let (commands, receiver) = mpsc::unbounded_channel();
        let engine = Engine {
            metrics,
            events,
            sessions: BTreeMap::new(),
            by_name: HashMap::new(),
            next_discriminator: rand::random::<u32>() | 1,
            senders: Senders::default(),
            receivers: [None, None],
            receivers_open: false,
        };
        let task = tokio::spawn(run(engine, receiver));
        BfdHandle { commands, task }
    }

    /// Creates the session, or applies new timing (Poll sequence, no flap) or a new local
    /// address to the existing one.
    pub fn set(&self, peer: BfdPeer) {
        let _ = self.commands.send(Command::Set(peer));
    }

    /// Ends the session, telling the peer AdminDown.
    pub fn remove(&self, name: &str) {
        let _ = self.commands.send(Command::Remove(name.to_string()));
    }

    /// Tells every peer AdminDown (so none treats our going away as a path failure) and stops.
    pub async fn shutdown(self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), finished).await;
        }
    }
}

impl Drop for BfdHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Entry {
    name: String,
    peer: IpAddr,
    local: Option<IpAddr>,
    session: Session,
    transmit: Option<Instant>,
    detection: Option<Instant>,
    /// A send failure was logged (once per episode: a cut link fails every packet).
    send_failing: bool,
}

struct Engine {
    metrics: Metrics,
    events: mpsc::UnboundedSender<BfdEvent>,
    sessions: BTreeMap<u32, Entry>,
    by_name: HashMap<String, u32>,
    next_discriminator: u32,
    senders: Senders,
    /// IPv4 and IPv6 receivers on port 3784.
    receivers: [Option<UdpSocket>; 2],
    receivers_open: bool,
}

async fn receive_on(socket: Option<&UdpSocket>, buffer: &mut [u8]) -> io::Result<Datagram> {
    match socket {
        Some(socket) => socket::receive(socket, buffer).await,
        None => std::future::pending().await,
    }
}

async fn run(mut engine: Engine, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut buffer4 = [0u8; 256];
    let mut buffer6 = [0u8; 256];
    loop {
        let sleep = crate::bgp::sleep_until(engine.next_deadline());
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Set(peer)) => engine.set(peer, Instant::now()),
                Some(Command::Remove(name)) => engine.remove(&name),
                Some(Command::Shutdown(done)) => {
                    engine.remove_all();
                    let _ = done.send(());
                    return;
                }
                None => {
                    engine.remove_all();
                    return;
                }
            },
            result = receive_on(engine.receivers[0].as_ref(), &mut buffer4) => {
                engine.received(result, &buffer4, Instant::now());
            }
            result = receive_on(engine.receivers[1].as_ref(), &mut buffer6) => {
                engine.received(result, &buffer6, Instant::now());
            }
            () = sleep => engine.timers(Instant::now()),
        }
    }
}

impl Engine {
    fn next_deadline(&self) -> Option<Instant> {
        self.sessions
            .values()
            .flat_map(|entry| [entry.transmit, entry.detection])
            .flatten()
            .min()
    }

    fn open_receivers(&mut self) {
        if self.receivers_open {
            return;
        }
        for (index, ipv6) in [(0, false), (1, true)] {
            if self.receivers[index].is_some() {
                continue;
            }
            match socket::receiver(ipv6) {
                Ok(socket) => self.receivers[index] = Some(socket),
                Err(error) => {
                    let family = if ipv6 { "IPv6" } else { "IPv4" };
                    tracing::warn!(%error, family, port = starling_bgp::bfd::CONTROL_PORT, "cannot open the BFD receive socket; sessions of this family stay down");
                }
            }
        }
        // Tried again with the next new session when a family failed.
        self.receivers_open = self.receivers.iter().all(Option::is_some);
    }

    fn allocate_discriminator(&mut self) -> u32 {
        loop {
            let candidate = self.next_discriminator;
            self.next_discriminator = self.next_discriminator.wrapping_add(1);
            if candidate != 0 && !self.sessions.contains_key(&candidate) {
                return candidate;
            }
        }
    }

    fn set(&mut self, peer: BfdPeer, now: Instant) {
        if let Some(&discriminator) = self.by_name.get(&peer.name) {
            let same_peer = self
                .sessions
                .get(&discriminator)
                .is_some_and(|entry| entry.peer == peer.peer);
            if same_peer {
                let mut retime = false;
                if let Some(entry) = self.sessions.get_mut(&discriminator) {
                    entry.local = peer.local;
                    retime = entry.session.timing() != peer.timing;
                }
                if retime {
                    tracing::info!(session = %peer.name, timing = ?peer.timing, "BFD timing changed");
                    self.drive(discriminator, Input::Reconfigure(peer.timing), now, false);
                }
                self.tidy_senders();
                return;
            }
            self.remove(&peer.name);
        }
        self.open_receivers();
        let discriminator = self.allocate_discriminator();
        tracing::info!(session = %peer.name, peer = %peer.peer, local = ?peer.local, discriminator, timing = ?peer.timing, "BFD session started");
        self.metrics
            .bfd_session_state
            .with_label_values(&[peer.name.as_str()])
            .set(SessionState::Down as i64);
        self.by_name.insert(peer.name.clone(), discriminator);
        self.sessions.insert(
            discriminator,
            Entry {
                name: peer.name,
                peer: socket::canonical(peer.peer),
                local: peer.local,
                session: Session::new(discriminator, peer.timing),
                transmit: None,
                detection: None,
                send_failing: false,
            },
        );
        self.drive(discriminator, Input::Start, now, false);
    }

    fn remove(&mut self, name: &str) {
        let Some(discriminator) = self.by_name.remove(name) else {
            return;
        };
        if let Some(mut entry) = self.sessions.remove(&discriminator) {
            // §6.8.16: AdminDown tells the peer this is no failure.
            let timing = entry.session.timing();
            let goodbye = ControlPacket {
                diag: Diag::ADMINISTRATIVELY_DOWN,
                state: SessionState::AdminDown,
                poll: false,
                final_: false,
                control_plane_independent: false,
                demand: false,
                detect_mult: timing.detect_mult,
                my_discriminator: discriminator,
                your_discriminator: entry.session.remote_discriminator(),
                desired_min_tx_us: to_micros(timing.desired_min_tx.max(SLOW_TX)),
                required_min_rx_us: to_micros(timing.required_min_rx),
                required_min_echo_rx_us: 0,
            };
            self.send(&mut entry, &goodbye);
            tracing::info!(session = %name, "BFD session stopped");
        }
        let _ = self.metrics.bfd_session_state.remove_label_values(&[name]);
        self.tidy_senders();
    }

    fn remove_all(&mut self) {
        let names: Vec<String> = self.by_name.keys().cloned().collect();
        for name in names {
            self.remove(&name);
        }
    }

    fn tidy_senders(&mut self) {
        let in_use: Vec<(bool, Option<IpAddr>)> = self
            .sessions
            .values()
            .map(|entry| (entry.peer.is_ipv6(), entry.local))
            .collect();
        self.senders.retain(&in_use);
    }

    fn send(&mut self, entry: &mut Entry, packet: &ControlPacket) {
        match self.senders.send(entry.local, entry.peer, &packet.encode()) {
            Ok(()) => entry.send_failing = false,
            Err(error) => {
                if !entry.send_failing {
                    entry.send_failing = true;
                    tracing::warn!(session = %entry.name, peer = %entry.peer, local = ?entry.local, %error, "cannot send BFD packet");
                }
            }
        }
    }

    fn drop_packet(&self, reason: &str) {
        self.metrics
            .bfd_packets_dropped_total
            .with_label_values(&[reason])
            .inc();
    }

    fn received(&mut self, result: io::Result<Datagram>, buffer: &[u8], now: Instant) {
        let datagram = match result {
            Ok(datagram) => datagram,
            Err(error) => {
                tracing::debug!(%error, "BFD receive failed");
                return;
            }
        };
        // RFC 5881 §5: only packets that crossed no router are single-hop BFD.
        if datagram.ttl != Some(TTL) {
            tracing::debug!(source = %datagram.source, ttl = ?datagram.ttl, "BFD packet with TTL other than 255 dropped");
            self.drop_packet("ttl");
            return;
        }
        let packet = match ControlPacket::decode(&buffer[..datagram.length.min(buffer.len())]) {
            Ok(packet) => packet,
            Err(error) => {
                tracing::debug!(source = %datagram.source, %error, "invalid BFD packet dropped");
                self.drop_packet("malformed");
                return;
            }
        };
        let found = if packet.your_discriminator != 0 {
            self.sessions
                .get(&packet.your_discriminator)
                .filter(|entry| entry.peer == datagram.source)
                .map(|_| packet.your_discriminator)
        } else {
            self.sessions
                .iter()
                .find(|(_, entry)| entry.peer == datagram.source)
                .map(|(discriminator, _)| *discriminator)
        };
        let Some(discriminator) = found else {
            tracing::debug!(source = %datagram.source, your = packet.your_discriminator, "BFD packet for no session dropped");
            self.drop_packet("no_session");
            return;
        };
        let admin_down = packet.state == SessionState::AdminDown;
        self.drive(discriminator, Input::Received(packet), now, admin_down);
    }

    fn timers(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (discriminator, entry) in &mut self.sessions {
            // Detection first, so a packet sent in the same instant already says Down.
            if entry.detection.is_some_and(|at| at <= now) {
                entry.detection = None;
                due.push((*discriminator, Timer::Detection));
            }
            if entry.transmit.is_some_and(|at| at <= now) {
                entry.transmit = None;
                due.push((*discriminator, Timer::Transmit));
            }
        }
        for (discriminator, timer) in due {
            self.drive(discriminator, Input::TimerExpired(timer), now, false);
        }
    }

    /// Feeds one input to a session and carries out what it asks.
    fn drive(&mut self, discriminator: u32, input: Input, now: Instant, peer_admin_down: bool) {
        let Some(mut entry) = self.sessions.remove(&discriminator) else {
            return;
        };
        let mut previous = entry.session.state();
        for output in entry.session.handle(input, now) {
            match output {
                Output::Send(packet) => self.send(&mut entry, &packet),
                Output::StartTimer { timer, deadline } => match timer {
                    Timer::Transmit => entry.transmit = Some(deadline),
                    Timer::Detection => entry.detection = Some(deadline),
                },
                Output::StopTimer(Timer::Transmit) => entry.transmit = None,
                Output::StopTimer(Timer::Detection) => entry.detection = None,
                Output::StateChanged { state, diag } => {
                    tracing::info!(session = %entry.name, peer = %entry.peer, from = %previous, to = %state, %diag, "BFD session state changed");
                    self.metrics
                        .bfd_session_state
                        .with_label_values(&[entry.name.as_str()])
                        .set(state as i64);
                    self.metrics
                        .bfd_transitions_total
                        .with_label_values(&[entry.name.as_str(), &state.to_string()])
                        .inc();
                    let _ = self.events.send(BfdEvent {
                        name: entry.name.clone(),
                        previous,
                        state,
                        diag,
                        peer_admin_down,
                    });
                    previous = state;
                }
            }
        }
        self.sessions.insert(discriminator, entry);
    }
}
