//! Connection intake of the speaker actor: listeners (one per address family, TCP-MD5 keys
//! for every peer address), accepted connections matched to sessions (unknown peers refused),
//! outgoing connects, frames decoded with the session's negotiated options, and connection
//! collision resolution (RFC 4271 §6.8) when an OPEN arrives.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::{canonical, Actor, Internal, Listener, Which};
use crate::bgp::session::{
    connect, spawn_connection, ConnectSettings, ConnectionEvent, ConnectionId, Slot,
};
use crate::bgp::sockopt;
use starling_bgp::codec::Message;
use starling_bgp::fsm::{collision_survivor, ConnectionOrigin, Fsm, Input, State};

impl Actor {
    /// One listener per address family (or one on the bind address), re-created when the
    /// address or port changes.
    pub(super) fn ensure_listeners(&mut self) {
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
    pub(super) fn apply_passwords(&mut self) {
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

    pub(super) fn internal(&mut self, event: Internal) {
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
        if state.disabled_by_limit {
            tracing::debug!(session = %name, "refused a connection: disabled by its import limit");
            return;
        }
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

    pub(super) fn connection_event(&mut self, id: ConnectionId, event: ConnectionEvent) {
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

    fn malformed(&mut self, name: &str, which: Which, error: starling_bgp::codec::DecodeError) {
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
    fn open_received(&mut self, name: &str, which: Which, open: starling_bgp::codec::Open) {
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
}

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
pub(super) fn spawn_connect(
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
