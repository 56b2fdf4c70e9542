//! Carrying out FSM outputs: connections, timers, and the RIB side of Established, Down,
//! UPDATE and ROUTE-REFRESH; plus exports, status rows, metrics and shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{graceful_reason, negotiated_restart_time, spawn_connect, Actor, SessionState, Which};
use crate::bgp::session::{ConnectSettings, Slot};
use crate::status::PeerStatus;
use starling_bgp::codec::{Message, Update};
use starling_bgp::fsm::{DownReason, Fsm, Input, Negotiated, Output, State};
use starling_bgp::policy::{CalicoRibPolicy, RouteKind};
use starling_bgp::rib::{Candidate, PeerSession};

impl Actor {
    pub(super) fn perform(&mut self, name: &str, which: Which, output: Output) {
        match output {
            Output::Connect => {
                let Some(state) = self.sessions.get_mut(name) else {
                    return;
                };
                state.connect_generation += 1;
                let settings = ConnectSettings {
                    peer: SocketAddr::new(state.spec.peer_address, state.spec.peer_port),
                    source: state.spec.source_address,
                    password: state.password.clone(),
                    ttl_security: state.spec.ttl_security,
                };
                spawn_connect(
                    self.internal_sender.clone(),
                    name.to_string(),
                    state.connect_generation,
                    settings,
                );
            }
            Output::Send(message) => self.send(name, which, &message),
            Output::CloseConnection => {
                if let Some(connection) =
                    self.slot_mut(name, which).and_then(|s| s.connection.take())
                {
                    self.connection_owner.remove(&connection.id);
                    self.closing.push(connection);
                }
            }
            Output::StartTimer { timer, deadline } => {
                if let Some(slot) = self.slot_mut(name, which) {
                    slot.timers.insert(timer, deadline);
                }
            }
            Output::StopTimer(timer) => {
                if let Some(slot) = self.slot_mut(name, which) {
                    slot.timers.remove(&timer);
                }
            }
            Output::Established(negotiated) => self.established(name, which, &negotiated),
            Output::Down {
                reason,
                was_established,
            } => self.down(name, which, reason, was_established),
            Output::UpdateReceived(update) => self.update_received(name, &update),
            Output::RouteRefreshRequested(_) => {
                if let Some(state) = self.sessions.get(name) {
                    self.rib.request_full_export(state.peer_id);
                    self.export_all();
                }
            }
        }
    }

    pub(super) fn send(&mut self, name: &str, which: Which, message: &Message) {
        let Some(slot) = self.slot_mut(name, which) else {
            return;
        };
        let options = slot.fsm.codec_options();
        let Some(connection) = slot.connection.as_ref() else {
            return;
        };
        match message.encode(&options) {
            Ok(bytes) => connection.send(bytes),
            Err(error) => {
                tracing::warn!(session = %name, %error, "cannot encode {}", message.name())
            }
        }
        match message {
            Message::Update(_) => self
                .metrics
                .bgp_updates_sent_total
                .with_label_values(&[name])
                .inc(),
            Message::Notification(notification) => {
                tracing::info!(session = %name, %notification, "sent NOTIFICATION");
                self.metrics
                    .bgp_notifications_total
                    .with_label_values(&[name, "sent"])
                    .inc()
            }
            _ => {}
        }
    }

    fn established(&mut self, name: &str, which: Which, negotiated: &Negotiated) {
        if which == Which::Secondary {
            // The collision winner becomes the session's connection.
            if let Some(state) = self.sessions.get_mut(name) {
                if let Some(secondary) = state.secondary.take() {
                    let old = std::mem::replace(&mut state.primary, secondary);
                    if let Some(connection) = old.connection {
                        self.connection_owner.remove(&connection.id);
                        self.closing.push(connection);
                    }
                }
            }
        }
        let Some(state) = self.sessions.get_mut(name) else {
            return;
        };
        state.peer_restart_time = negotiated_restart_time(negotiated);
        state.last_error = None;
        state.malformed_logged = false;
        let local = state
            .primary
            .connection
            .as_ref()
            .map(|connection| connection.local_address.ip());
        let id = state.peer_id;
        let spec = state.spec.clone();
        let config = self.peer_config(&spec, local);
        tracing::info!(session = %name, peer = %negotiated.peer_identifier, "BGP session established");
        self.rib.add_peer(id, config);
        let changed = self.rib.peer_established(
            id,
            PeerSession {
                router_id: negotiated.peer_identifier,
                families: negotiated.families.clone(),
                graceful_restart: negotiated.peer_graceful_restart.clone(),
            },
        );
        self.learned
            .refresh(&self.rib, &self.config.policy, &changed);
        self.export_all();
        self.sync_bfd(name, local);
    }

    fn down(&mut self, name: &str, which: Which, reason: DownReason, was_established: bool) {
        let Some(state) = self.sessions.get_mut(name) else {
            return;
        };
        if !matches!(reason, DownReason::ManualStop) {
            state.last_error = Some(reason.to_string());
        }
        if let DownReason::NotificationReceived(notification) = &reason {
            tracing::info!(session = %name, %notification, "received NOTIFICATION");
            self.metrics
                .bgp_notifications_total
                .with_label_values(&[name, "received"])
                .inc();
        }
        if which == Which::Secondary || !was_established {
            return;
        }
        let graceful = graceful_reason(&reason) && state.peer_restart_time.is_some();
        let id = state.peer_id;
        if graceful {
            let restart = state.peer_restart_time.unwrap_or_default();
            state.stale_deadline = Some(Instant::now() + restart);
            tracing::info!(session = %name, %reason, ?restart, "BGP session down; keeping routes as stale");
        } else {
            tracing::info!(session = %name, %reason, "BGP session down");
        }
        let changed = self.rib.peer_down(id, graceful);
        self.learned
            .refresh(&self.rib, &self.config.policy, &changed);
        self.export_all();
    }

    fn update_received(&mut self, name: &str, update: &Update) {
        let Some(state) = self.sessions.get_mut(name) else {
            return;
        };
        self.metrics
            .bgp_updates_received_total
            .with_label_values(&[name])
            .inc();
        if !update.problems.is_empty() && !state.malformed_logged {
            state.malformed_logged = true;
            tracing::warn!(session = %name, problems = ?update.problems, "UPDATE with attribute errors handled per RFC 7606");
        }
        let id = state.peer_id;
        let end_of_rib = update.end_of_rib_family().is_some();
        let policy = CalicoRibPolicy {
            policy: &self.config.policy,
            classify: |_: &ipnet::IpNet, _: &Candidate| (RouteKind::LocalBlockOrWorkload, false),
        };
        let changed = self.rib.apply_update(id, update, &policy);
        if end_of_rib && self.rib.stale_count(id) == 0 {
            state.stale_deadline = None;
        }
        self.check_import_limit(name);
        self.learned
            .refresh(&self.rib, &self.config.policy, &changed);
        if !changed.is_empty() {
            self.export_all();
        }
    }

    /// Sends every established peer what changed for it.
    pub(super) fn export_all(&mut self) {
        let established: Vec<(String, starling_bgp::rib::PeerId)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.primary.fsm.state() == State::Established)
            .map(|(name, s)| (name.clone(), s.peer_id))
            .collect();
        for (name, id) in established {
            let batch = self.policy_export(id);
            if batch.is_empty() {
                continue;
            }
            let Some(slot) = self.slot_mut(&name, Which::Primary) else {
                continue;
            };
            let options = slot.fsm.codec_options();
            let Some(connection) = slot.connection.as_ref() else {
                continue;
            };
            match batch.encode(&options) {
                Ok(messages) => {
                    let count = messages.len() as u64;
                    // One write for the whole batch keeps system calls down on large tables.
                    connection.send(messages.concat());
                    self.metrics
                        .bgp_updates_sent_total
                        .with_label_values(&[&name])
                        .inc_by(count);
                }
                Err(error) => tracing::warn!(session = %name, %error, "cannot encode export"),
            }
        }
    }

    /// Housekeeping after each event, for the sessions it changed: collision leftovers, FSMs
    /// to replace, closed connections.
    pub(super) fn after_event(&mut self) {
        for name in self.sessions.take_changed() {
            let mut restart = false;
            if let Some(state) = self.sessions.get_mut_tidying(&name) {
                tidy_slots(state);
                restart = state.primary.started_passive
                    && state.primary.fsm.state() == State::Idle
                    && !state.spec.passive;
                let now_state = state.primary.fsm.state();
                if now_state != state.last_state {
                    if (now_state == State::Established) != (state.last_state == State::Established)
                    {
                        state.since = chrono::Local::now();
                    }
                    state.last_state = now_state;
                }
            }
            if restart {
                // An FSM that took over an incoming connection was started passive; an active
                // session gets a fresh active FSM once that connection is gone.
                let Some(state) = self.sessions.get(&name) else {
                    continue;
                };
                let fsm = Fsm::new(self.fsm_config(&state.spec));
                if let Some(state) = self.sessions.get_mut(&name) {
                    state.primary = Slot::new(fsm);
                }
                self.handle(&name, Which::Primary, Input::ManualStart);
            }
        }
        for connection in self.closing.drain(..) {
            tokio::spawn(connection.close_flushed(Duration::from_secs(2)));
        }
    }

    pub(super) fn status(&self) -> Vec<PeerStatus> {
        self.sessions
            .iter()
            .map(|(name, state)| {
                let fsm_state = state.primary.fsm.state();
                let info = match (&state.last_error, fsm_state) {
                    (Some(error), state) if state != State::Established => {
                        format!("{state} {error}")
                    }
                    _ => fsm_state.to_string(),
                };
                PeerStatus {
                    address: state.spec.peer_address,
                    peer_type: state.spec.kind.label().to_string(),
                    state: if fsm_state == State::Established {
                        "up"
                    } else {
                        "start"
                    }
                    .to_string(),
                    since: state.since.format("%H:%M:%S").to_string(),
                    info,
                    bfd: self.bfd.state(name).map(|s| s.to_string()),
                }
            })
            .collect()
    }

    pub(super) fn refresh_metrics(&self) {
        self.metrics.bgp_sessions.reset();
        for (name, state) in self.sessions.iter() {
            let fsm_state = state.primary.fsm.state().to_string();
            self.metrics
                .bgp_sessions
                .with_label_values(&[fsm_state.as_str()])
                .inc();
            let received = self.rib.received_count(state.peer_id) as i64;
            self.metrics
                .bgp_prefixes_received
                .with_label_values(&[name.as_str()])
                .set(received);
            self.metrics
                .bgp_prefixes_accepted
                .with_label_values(&[name.as_str()])
                .set(self.rib.accepted_count(state.peer_id) as i64);
            self.metrics
                .bgp_prefixes_advertised
                .with_label_values(&[name.as_str()])
                .set(self.rib.advertised_count(state.peer_id) as i64);
        }
    }

    pub(super) async fn shutdown(&mut self, graceful: bool) {
        self.listeners.clear();
        self.bfd.shutdown().await;
        let names: Vec<String> = self.sessions.keys().cloned().collect();
        for name in &names {
            if graceful {
                // No Cease: the peers see the connection drop and keep our routes (RFC 4724).
                if let Some(state) = self.sessions.get_mut(name) {
                    for slot in std::iter::once(&mut state.primary).chain(state.secondary.as_mut())
                    {
                        if let Some(connection) = slot.connection.take() {
                            self.closing.push(connection);
                        }
                    }
                }
            } else {
                self.handle(name, Which::Primary, Input::ManualStop);
                if self
                    .sessions
                    .get(name)
                    .is_some_and(|s| s.secondary.is_some())
                {
                    self.handle(name, Which::Secondary, Input::ManualStop);
                }
            }
        }
        let closing: Vec<_> = self.closing.drain(..).collect();
        futures::future::join_all(
            closing
                .into_iter()
                .map(|connection| connection.close_flushed(Duration::from_secs(2))),
        )
        .await;
        self.sessions.clear();
    }
}

/// Drops a second slot that lost its connection, and promotes it when the primary lost its
/// own connection during a collision.
fn tidy_slots(state: &mut SessionState) {
    let Some(secondary) = state.secondary.as_ref() else {
        return;
    };
    if secondary.connection.is_none() {
        state.secondary = None;
        return;
    }
    if state.primary.connection.is_none() && state.primary.fsm.state() != State::Established {
        if let Some(secondary) = state.secondary.take() {
            state.primary = secondary;
            state.primary.started_passive = !state.spec.passive;
        }
    }
}
