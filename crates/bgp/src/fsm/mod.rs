//! The BGP session state machine of RFC 4271 §8, sans-IO: [`Fsm::handle`] takes one input and
//! the current time and returns the actions to perform, in order. Timers are outputs (start with
//! a deadline / stop); their expiry comes back as [`Input::TimerExpired`]. The caller owns the
//! TCP connection and feeds what happens to it.
//!
//! One `Fsm` drives one connection at a time. Connection collisions between an outgoing and an
//! incoming connection are resolved by the caller with [`collision_survivor`] and fed to the
//! loser as [`Input::CollisionDump`].
//!
//! Timings follow Calico's BIRD template: first connect after `connect_delay` (2 s), retry every
//! `connect_retry` (5 s, doubling up to `connect_retry_max`), and after a failure an automatic
//! restart after an error wait that doubles from 5 s to 30 s and is forgotten after
//! `error_forget` without failures. A passive session never connects; it waits in Active.

mod negotiation;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub use negotiation::{
    collision_survivor, local_open, negotiate, validate_open, ConnectionOrigin, Negotiated,
    OpenRejection,
};

use crate::codec::{
    cease_subcode, error_code, fsm_subcode, CodecOptions, DecodeError, Family, Message,
    Notification, Open, RouteRefresh, Update,
};
use starling_model::AsNumber;

/// Session states (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Timers the FSM asks the caller to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    /// Delay before an automatic restart after a failure (BIRD "error wait time").
    ErrorWait,
}

/// Graceful restart settings we advertise (RFC 4724).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    pub restart_time: Duration,
    /// Set the Restart State bit: we are coming back from a restart.
    pub restarting: bool,
    /// Set the Forwarding State bit: our routes stayed in the kernel.
    pub forwarding_preserved: bool,
}

/// Per-session configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmConfig {
    pub local_as: AsNumber,
    pub peer_as: AsNumber,
    pub router_id: Ipv4Addr,
    /// Hold time we propose (BIRD default 240 s).
    pub hold_time_seconds: u16,
    /// Configured keepalive interval (Calico `keepaliveTime`); default hold/3.
    pub keepalive_time: Option<Duration>,
    /// Never initiate a connection (Calico `passive on`).
    pub passive: bool,
    pub families: Vec<Family>,
    pub graceful_restart: Option<GracefulRestartConfig>,
    pub connect_delay: Duration,
    pub connect_retry: Duration,
    pub connect_retry_max: Duration,
    pub error_wait_min: Duration,
    pub error_wait_max: Duration,
    pub error_forget: Duration,
    /// Hold timer while waiting for the peer's OPEN (RFC 4271 §8 suggests 4 minutes).
    pub open_hold_time: Duration,
}

impl FsmConfig {
    /// Calico/BIRD defaults for a session between `local_as` and `peer_as`.
    pub fn new(local_as: AsNumber, peer_as: AsNumber, router_id: Ipv4Addr) -> FsmConfig {
        FsmConfig {
            local_as,
            peer_as,
            router_id,
            hold_time_seconds: 240,
            keepalive_time: None,
            passive: false,
            families: vec![Family::IPV4_UNICAST],
            graceful_restart: Some(GracefulRestartConfig {
                restart_time: Duration::from_secs(120),
                restarting: false,
                forwarding_preserved: false,
            }),
            connect_delay: Duration::from_secs(2),
            connect_retry: Duration::from_secs(5),
            connect_retry_max: Duration::from_secs(5),
            error_wait_min: Duration::from_secs(5),
            error_wait_max: Duration::from_secs(30),
            error_forget: Duration::from_secs(300),
            open_hold_time: Duration::from_secs(240),
        }
    }
}

/// Events fed to the FSM (RFC 4271 §8.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    ManualStart,
    ManualStartPassive,
    ManualStop,
    /// A TCP connection to the peer is up (ours completed, or the peer's accepted).
    TcpConnectionConfirmed,
    /// The connection attempt failed or the established connection dropped.
    TcpConnectionFails,
    MessageReceived(Message),
    /// A received message failed to decode; its NOTIFICATION is sent.
    DecodeFailed(DecodeError),
    TimerExpired(Timer),
    /// This connection lost a collision (RFC 4271 §6.8, event 23).
    CollisionDump,
    /// The speaker found an error the FSM cannot see (a prefix limit): send this NOTIFICATION
    /// and go down.
    LocalError(Notification),
}

/// Why a session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    ManualStop,
    HoldTimerExpired,
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
    /// We detected an error and sent this NOTIFICATION.
    NotificationSent(Notification),
    ConnectionLost,
    CollisionResolution,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::ManualStop => write!(f, "stopped"),
            DownReason::HoldTimerExpired => write!(f, "hold timer expired"),
            DownReason::NotificationReceived(notification) => write!(f, "received {notification}"),
            DownReason::NotificationSent(notification) => write!(f, "sent {notification}"),
            DownReason::ConnectionLost => write!(f, "connection lost"),
            DownReason::CollisionResolution => write!(f, "connection collision"),
        }
    }
}

/// Actions for the caller, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the peer (abandoning any attempt still pending).
    Connect,
    Send(Message),
    CloseConnection,
    StartTimer {
        timer: Timer,
        deadline: Instant,
    },
    StopTimer(Timer),
    Established(Box<Negotiated>),
    /// The connection ended; `was_established` says whether routes from it must be handled.
    Down {
        reason: DownReason,
        was_established: bool,
    },
    /// An UPDATE for the RIB (Established only).
    UpdateReceived(Box<Update>),
    /// The peer asked for our routes again (RFC 2918).
    RouteRefreshRequested(RouteRefresh),
}

/// One BGP session's state machine.
#[derive(Debug, Clone)]
pub struct Fsm {
    config: FsmConfig,
    local_open: Open,
    state: State,
    running: BTreeSet<Timer>,
    negotiated: Option<Negotiated>,
    /// True between ManualStop and the next ManualStart: no automatic restart.
    stopped: bool,
    passive: bool,
    connect_attempts: u32,
    failures: u32,
    last_failure: Option<Instant>,
    /// A configuration to apply once the current connection is gone (see [`Fsm::reconfigure`]).
    pending_config: Option<FsmConfig>,
}

impl Fsm {
    pub fn new(config: FsmConfig) -> Fsm {
        let local_open = local_open(&config);
        let passive = config.passive;
        Fsm {
            config,
            local_open,
            state: State::Idle,
            running: BTreeSet::new(),
            negotiated: None,
            stopped: true,
            passive,
            connect_attempts: 0,
            failures: 0,
            last_failure: None,
            pending_config: None,
        }
    }

    /// Replaces the configuration without touching a live connection: what an OPEN carries
    /// (hold and restart times, capabilities, passive) is what the peer agreed to, so a new
    /// value takes effect on the next connection; a session that is up keeps running.
    pub fn reconfigure(&mut self, config: FsmConfig) {
        if self.has_connection() {
            self.pending_config = Some(config);
        } else {
            self.apply_config(config);
        }
    }

    fn apply_config(&mut self, config: FsmConfig) {
        self.local_open = local_open(&config);
        self.config = config;
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &FsmConfig {
        &self.config
    }

    /// The OPEN this session sends.
    pub fn local_open(&self) -> &Open {
        &self.local_open
    }

    /// Parameters agreed with the peer, once OPENs were exchanged.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Wire options for decoding and encoding on this session: the negotiated ones, or 4-octet
    /// AS before negotiation (only OPEN, KEEPALIVE and NOTIFICATION are valid then, and their
    /// format does not depend on it).
    pub fn codec_options(&self) -> CodecOptions {
        self.negotiated
            .as_ref()
            .map_or(CodecOptions::FOUR_OCTET, Negotiated::codec_options)
    }

    /// Processes one input at time `now` and returns the actions to perform, in order.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut outputs = Vec::new();
        match input {
            Input::ManualStart => self.start(false, now, &mut outputs),
            Input::ManualStartPassive => self.start(true, now, &mut outputs),
            Input::ManualStop => self.manual_stop(&mut outputs),
            Input::TcpConnectionConfirmed => self.connection_confirmed(now, &mut outputs),
            Input::TcpConnectionFails => self.connection_fails(now, &mut outputs),
            Input::MessageReceived(message) => self.message(message, now, &mut outputs),
            Input::DecodeFailed(error) => {
                if self.has_connection() {
                    let notification = error.notification();
                    self.fail(
                        DownReason::NotificationSent(notification.clone()),
                        Some(notification),
                        now,
                        &mut outputs,
                    );
                }
            }
            Input::TimerExpired(timer) => self.timer(timer, now, &mut outputs),
            Input::LocalError(notification) => {
                if self.has_connection() {
                    let reason = DownReason::NotificationSent(notification.clone());
                    self.fail(reason, Some(notification), now, &mut outputs);
                }
            }
            Input::CollisionDump => {
                if self.has_connection() {
                    let notification =
                        Notification::cease(cease_subcode::CONNECTION_COLLISION_RESOLUTION);
                    self.fail(
                        DownReason::CollisionResolution,
                        Some(notification),
                        now,
                        &mut outputs,
                    );
                }
            }
        }
        outputs
    }

    fn has_connection(&self) -> bool {
        matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        )
    }

    fn start_timer(&mut self, timer: Timer, deadline: Instant, outputs: &mut Vec<Output>) {
        self.running.insert(timer);
        outputs.push(Output::StartTimer { timer, deadline });
    }

    fn stop_timer(&mut self, timer: Timer, outputs: &mut Vec<Output>) {
        if self.running.remove(&timer) {
            outputs.push(Output::StopTimer(timer));
        }
    }

    fn stop_all_timers(&mut self, outputs: &mut Vec<Output>) {
        for timer in std::mem::take(&mut self.running) {
            outputs.push(Output::StopTimer(timer));
        }
    }

    fn retry_interval(&self) -> Duration {
        let factor = 1u32 << self.connect_attempts.saturating_sub(1).min(16);
        self.config
            .connect_retry
            .saturating_mul(factor)
            .min(self.config.connect_retry_max.max(self.config.connect_retry))
    }

    fn start(&mut self, passive: bool, now: Instant, outputs: &mut Vec<Output>) {
        if self.state != State::Idle {
            return;
        }
        self.stopped = false;
        self.passive = passive || self.config.passive;
        self.connect_attempts = 0;
        self.stop_timer(Timer::ErrorWait, outputs);
        if self.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            self.start_timer(
                Timer::ConnectRetry,
                now + self.config.connect_delay,
                outputs,
            );
        }
    }

    fn manual_stop(&mut self, outputs: &mut Vec<Output>) {
        let was_established = self.state == State::Established;
        let connected = self.has_connection();
        self.stopped = true;
        if connected {
            outputs.push(Output::Send(Message::Notification(Notification::cease(
                cease_subcode::ADMINISTRATIVE_SHUTDOWN,
            ))));
            outputs.push(Output::CloseConnection);
        }
        self.stop_all_timers(outputs);
        if self.state != State::Idle {
            outputs.push(Output::Down {
                reason: DownReason::ManualStop,
                was_established,
            });
        }
        self.state = State::Idle;
        self.negotiated = None;
        if let Some(config) = self.pending_config.take() {
            self.apply_config(config);
        }
        self.failures = 0;
    }

    fn connection_confirmed(&mut self, now: Instant, outputs: &mut Vec<Output>) {
        match self.state {
            State::Connect | State::Active => {
                self.stop_timer(Timer::ConnectRetry, outputs);
                outputs.push(Output::Send(Message::Open(self.local_open.clone())));
                self.start_timer(Timer::Hold, now + self.config.open_hold_time, outputs);
                self.state = State::OpenSent;
            }
            // A second connection while one is in progress is the caller's collision to
            // resolve; this FSM keeps its connection.
            _ => {}
        }
    }

    fn connection_fails(&mut self, now: Instant, outputs: &mut Vec<Output>) {
        match self.state {
            State::Connect => {
                // Wait for the retry timer; meanwhile accept an incoming connection.
                self.state = State::Active;
            }
            State::OpenSent | State::OpenConfirm | State::Established => {
                self.fail(DownReason::ConnectionLost, None, now, outputs)
            }
            State::Idle | State::Active => {}
        }
    }

    fn timer(&mut self, timer: Timer, now: Instant, outputs: &mut Vec<Output>) {
        if !self.running.remove(&timer) {
            // A stale expiry of a timer we already stopped.
            return;
        }
        match (timer, self.state) {
            (Timer::ConnectRetry, State::Connect | State::Active) => {
                self.connect_attempts = self.connect_attempts.saturating_add(1);
                outputs.push(Output::Connect);
                let interval = self.retry_interval();
                self.start_timer(Timer::ConnectRetry, now + interval, outputs);
                self.state = State::Connect;
            }
            (Timer::Hold, State::OpenSent | State::OpenConfirm | State::Established) => self.fail(
                DownReason::HoldTimerExpired,
                Some(Notification::hold_timer_expired()),
                now,
                outputs,
            ),
            (Timer::Keepalive, State::OpenConfirm | State::Established) => {
                outputs.push(Output::Send(Message::Keepalive));
                if let Some(interval) = self.negotiated.as_ref().and_then(|n| n.keepalive_interval)
                {
                    self.start_timer(Timer::Keepalive, now + interval, outputs);
                }
            }
            (Timer::ErrorWait, State::Idle) if !self.stopped => {
                let passive = self.passive;
                self.start(passive, now, outputs);
            }
            _ => {}
        }
    }

    fn message(&mut self, message: Message, now: Instant, outputs: &mut Vec<Output>) {
        match self.state {
            // No connection is known to the FSM: RFC 4271 §8.2.2 drops and goes Idle.
            State::Idle => {}
            State::Connect | State::Active => {
                outputs.push(Output::CloseConnection);
                self.go_idle(DownReason::ConnectionLost, now, outputs);
            }
            State::OpenSent => match message {
                Message::Open(open) => self.open_received(open, now, outputs),
                Message::Notification(notification) => self.fail(
                    DownReason::NotificationReceived(notification),
                    None,
                    now,
                    outputs,
                ),
                _ => self.fsm_error(fsm_subcode::UNEXPECTED_MESSAGE_IN_OPEN_SENT, now, outputs),
            },
            State::OpenConfirm => match message {
                Message::Keepalive => {
                    self.restart_hold_timer(now, outputs);
                    self.state = State::Established;
                    self.connect_attempts = 0;
                    if let Some(negotiated) = &self.negotiated {
                        outputs.push(Output::Established(Box::new(negotiated.clone())));
                    }
                }
                Message::Notification(notification) => self.fail(
                    DownReason::NotificationReceived(notification),
                    None,
                    now,
                    outputs,
                ),
                _ => self.fsm_error(
                    fsm_subcode::UNEXPECTED_MESSAGE_IN_OPEN_CONFIRM,
                    now,
                    outputs,
                ),
            },
            State::Established => match message {
                Message::Keepalive => self.restart_hold_timer(now, outputs),
                Message::Update(update) => {
                    self.restart_hold_timer(now, outputs);
                    outputs.push(Output::UpdateReceived(update));
                }
                Message::RouteRefresh(refresh) => {
                    self.restart_hold_timer(now, outputs);
                    outputs.push(Output::RouteRefreshRequested(refresh));
                }
                Message::Notification(notification) => self.fail(
                    DownReason::NotificationReceived(notification),
                    None,
                    now,
                    outputs,
                ),
                Message::Open(_) => {
                    self.fsm_error(fsm_subcode::UNEXPECTED_MESSAGE_IN_ESTABLISHED, now, outputs)
                }
            },
        }
    }

    fn open_received(&mut self, open: Open, now: Instant, outputs: &mut Vec<Output>) {
        match validate_open(&self.config, &self.local_open, &open) {
            Err(rejection) => {
                let notification = rejection.notification();
                self.fail(
                    DownReason::NotificationSent(notification.clone()),
                    Some(notification),
                    now,
                    outputs,
                );
            }
            Ok(negotiated) => {
                outputs.push(Output::Send(Message::Keepalive));
                self.stop_timer(Timer::Hold, outputs);
                if !negotiated.hold_time.is_zero() {
                    self.start_timer(Timer::Hold, now + negotiated.hold_time, outputs);
                }
                if let Some(interval) = negotiated.keepalive_interval {
                    self.start_timer(Timer::Keepalive, now + interval, outputs);
                }
                self.negotiated = Some(negotiated);
                self.state = State::OpenConfirm;
            }
        }
    }

    fn restart_hold_timer(&mut self, now: Instant, outputs: &mut Vec<Output>) {
        let hold = self
            .negotiated
            .as_ref()
            .map(|n| n.hold_time)
            .unwrap_or_default();
        if !hold.is_zero() {
            self.start_timer(Timer::Hold, now + hold, outputs);
        }
    }

    fn fsm_error(&mut self, subcode: u8, now: Instant, outputs: &mut Vec<Output>) {
        let notification = Notification::new(error_code::FINITE_STATE_MACHINE, subcode, Vec::new());
        self.fail(
            DownReason::NotificationSent(notification.clone()),
            Some(notification),
            now,
            outputs,
        );
    }

    /// Ends the connection: optional NOTIFICATION, close, stop timers, report, and schedule the
    /// automatic restart.
    fn fail(
        &mut self,
        reason: DownReason,
        notification: Option<Notification>,
        now: Instant,
        outputs: &mut Vec<Output>,
    ) {
        if let Some(notification) = notification {
            outputs.push(Output::Send(Message::Notification(notification)));
        }
        outputs.push(Output::CloseConnection);
        self.go_idle(reason, now, outputs);
    }

    fn go_idle(&mut self, reason: DownReason, now: Instant, outputs: &mut Vec<Output>) {
        let was_established = self.state == State::Established;
        self.stop_all_timers(outputs);
        outputs.push(Output::Down {
            reason,
            was_established,
        });
        self.state = State::Idle;
        self.negotiated = None;
        if let Some(config) = self.pending_config.take() {
            self.apply_config(config);
        }
        if self
            .last_failure
            .is_some_and(|last| now.saturating_duration_since(last) > self.config.error_forget)
        {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.last_failure = Some(now);
        if !self.stopped {
            let factor = 1u32 << (self.failures - 1).min(16);
            let wait = self
                .config
                .error_wait_min
                .saturating_mul(factor)
                .min(self.config.error_wait_max);
            self.start_timer(Timer::ErrorWait, now + wait, outputs);
        }
    }
}
