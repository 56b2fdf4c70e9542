//! BFD (RFC 5880, asynchronous mode; RFC 5881 single hop), sans-IO like [`crate::fsm`]:
//! [`Session::handle`] takes one input and the current time and returns what to do. The caller
//! owns the UDP socket (port 3784, TTL 255) and demultiplexes received packets to sessions by
//! your-discriminator, or by peer address while it is 0.
//!
//! Timer changes run a Poll sequence (§6.8.3): a faster transmit rate or a longer receive
//! interval takes effect at once (safe for both sides), a slower transmit rate or a shorter
//! receive interval only when the peer's Final arrives. While not Up the advertised transmit
//! interval is at least 1 s. Transmit jitter (§6.8.7) comes from a small deterministic generator
//! seeded by the local discriminator, so tests are reproducible.

mod packet;

use std::time::{Duration, Instant};

pub use packet::{to_micros, ControlPacket, Diag, PacketError, SessionState, CONTROL_PACKET_LEN};

/// The UDP port single-hop BFD Control packets go to (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;
/// §6.8.3: the transmit interval advertised while the session is not Up.
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// Timers a session asks the caller to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    Transmit,
    Detection,
}

/// Local timing parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdTiming {
    pub desired_min_tx: Duration,
    pub required_min_rx: Duration,
    pub detect_mult: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Begin sending (state Down).
    Start,
    /// A validated packet demultiplexed to this session.
    Received(ControlPacket),
    TimerExpired(Timer),
    /// New local timing; runs a Poll sequence when Up.
    Reconfigure(BfdTiming),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send(ControlPacket),
    StartTimer {
        timer: Timer,
        deadline: Instant,
    },
    StopTimer(Timer),
    /// The local state changed; `diag` says why (for Down).
    StateChanged {
        state: SessionState,
        diag: Diag,
    },
}

/// One BFD session (the RFC's state variables, §6.8.1).
#[derive(Debug, Clone)]
pub struct Session {
    state: SessionState,
    remote_state: SessionState,
    local_discr: u32,
    remote_discr: u32,
    diag: Diag,
    /// What is configured.
    timing: BfdTiming,
    /// Values used for our transmit rate and detection time right now (§6.8.3 lag).
    active_tx: Duration,
    active_rx: Duration,
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_detect_mult: u8,
    poll: bool,
    rng: u32,
    started: bool,
}

impl Session {
    /// `local_discriminator` must be nonzero and unique among the caller's sessions.
    pub fn new(local_discriminator: u32, timing: BfdTiming) -> Session {
        let advertised = advertised_tx(SessionState::Down, timing);
        Session {
            state: SessionState::Down,
            remote_state: SessionState::Down,
            local_discr: local_discriminator,
            remote_discr: 0,
            diag: Diag::NONE,
            timing,
            active_tx: advertised,
            active_rx: timing.required_min_rx,
            // §6.8.1: initial bfd.RemoteMinRxInterval is 1 µs.
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: Duration::ZERO,
            remote_detect_mult: 0,
            poll: false,
            rng: local_discriminator.max(1),
            started: false,
        }
    }

    pub fn state(&self) -> SessionState {
        self.state
    }
    pub fn local_discriminator(&self) -> u32 {
        self.local_discr
    }
    pub fn remote_discriminator(&self) -> u32 {
        self.remote_discr
    }
    pub fn diag(&self) -> Diag {
        self.diag
    }
    pub fn timing(&self) -> BfdTiming {
        self.timing
    }
    /// Whether a Poll sequence is waiting for the peer's Final.
    pub fn polling(&self) -> bool {
        self.poll
    }

    /// Detection time (§6.8.4, asynchronous mode); `None` before the peer was heard.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_detect_mult > 0).then(|| {
            self.active_rx.max(self.remote_desired_tx) * u32::from(self.remote_detect_mult)
        })
    }

    /// Interval between periodic packets before jitter (§6.8.7); `None` while the peer asks
    /// for no packets (RequiredMinRxInterval 0).
    pub fn transmit_interval(&self) -> Option<Duration> {
        (!self.remote_min_rx.is_zero()).then(|| self.active_tx.max(self.remote_min_rx))
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Start => {
                if !self.started {
                    self.started = true;
                    self.send(false, now, &mut out);
                }
            }
            Input::Received(packet) => self.receive(packet, now, &mut out),
            Input::TimerExpired(Timer::Transmit) => {
                if self.started {
                    self.send(false, now, &mut out);
                }
            }
            Input::TimerExpired(Timer::Detection) => {
                // §6.8.1: forget the peer's discriminator when the detection time passes.
                self.remote_discr = 0;
                self.remote_detect_mult = 0;
                if matches!(self.state, SessionState::Init | SessionState::Up) {
                    self.change_state(
                        SessionState::Down,
                        Diag::CONTROL_DETECTION_TIME_EXPIRED,
                        now,
                        &mut out,
                    );
                }
            }
            Input::Reconfigure(timing) => {
                if timing != self.timing {
                    self.timing = timing;
                    self.retune(now, &mut out);
                }
            }
        }
        out
    }

    fn receive(&mut self, packet: ControlPacket, now: Instant, out: &mut Vec<Output>) {
        self.remote_discr = packet.my_discriminator;
        self.remote_state = packet.state;
        self.remote_min_rx = packet.required_min_rx();
        self.remote_desired_tx = packet.desired_min_tx();
        self.remote_detect_mult = packet.detect_mult;
        if packet.final_ && self.poll {
            // The Poll sequence ends: the configured values now hold for both directions.
            self.poll = false;
            self.active_tx = advertised_tx(self.state, self.timing);
            self.active_rx = self.timing.required_min_rx;
        }
        if let Some(detection) = self.detection_time() {
            out.push(Output::StartTimer {
                timer: Timer::Detection,
                deadline: now + detection,
            });
        }
        if self.state == SessionState::AdminDown {
            return;
        }
        let before = self.state;
        match (self.state, packet.state) {
            (SessionState::Down, SessionState::AdminDown) => {}
            (_, SessionState::AdminDown) | (SessionState::Up, SessionState::Down) => {
                self.change_state(SessionState::Down, Diag::NEIGHBOR_SIGNALED_DOWN, now, out)
            }
            (SessionState::Down, SessionState::Down) => {
                self.change_state(SessionState::Init, Diag::NONE, now, out)
            }
            (SessionState::Down, SessionState::Init)
            | (SessionState::Init, SessionState::Init | SessionState::Up) => {
                self.change_state(SessionState::Up, Diag::NONE, now, out)
            }
            _ => {}
        }
        // §6.8.6: answer a Poll with a Final at once (a state change already sent a packet,
        // which carries the Final too).
        if packet.poll && self.state == before {
            self.send(true, now, out);
        } else if packet.poll {
            if let Some(Output::Send(sent)) =
                out.iter_mut().rev().find(|o| matches!(o, Output::Send(_)))
            {
                sent.final_ = true;
                sent.poll = false;
            }
        }
    }

    fn change_state(
        &mut self,
        state: SessionState,
        diag: Diag,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        self.state = state;
        if diag != Diag::NONE || state == SessionState::Up {
            self.diag = diag;
        }
        out.push(Output::StateChanged { state, diag });
        if matches!(state, SessionState::Down) && diag == Diag::CONTROL_DETECTION_TIME_EXPIRED {
            out.push(Output::StopTimer(Timer::Detection));
        }
        // Entering or leaving Up changes the advertised transmit interval (1 s floor).
        self.retune(now, out);
    }

    /// Apply `self.timing` for the current state: immediate where safe, else by Poll.
    fn retune(&mut self, now: Instant, out: &mut Vec<Output>) {
        let tx = advertised_tx(self.state, self.timing);
        let rx = self.timing.required_min_rx;
        if tx < self.active_tx {
            self.active_tx = tx;
        }
        if rx > self.active_rx {
            self.active_rx = rx;
        }
        if self.state == SessionState::Up {
            // Only an Up session needs the peer's agreement; otherwise take everything now.
            self.poll = true;
        } else {
            self.poll = false;
            self.active_tx = tx;
            self.active_rx = rx;
        }
        self.send(false, now, out);
    }

    /// Send a packet now and restart the periodic schedule from now.
    fn send(&mut self, final_: bool, now: Instant, out: &mut Vec<Output>) {
        if !self.started {
            return;
        }
        let tx = advertised_tx(self.state, self.timing);
        out.push(Output::Send(ControlPacket {
            diag: self.diag,
            state: self.state,
            poll: self.poll && !final_,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.timing.detect_mult,
            my_discriminator: self.local_discr,
            your_discriminator: self.remote_discr,
            desired_min_tx_us: to_micros(tx),
            required_min_rx_us: to_micros(self.timing.required_min_rx),
            required_min_echo_rx_us: 0,
        }));
        match self.transmit_interval() {
            Some(interval) => {
                let jittered = self.jitter(interval);
                out.push(Output::StartTimer {
                    timer: Timer::Transmit,
                    deadline: now + jittered,
                });
            }
            None => out.push(Output::StopTimer(Timer::Transmit)),
        }
    }

    /// §6.8.7: 75–100% of the interval, at most 90% with detect multiplier 1.
    fn jitter(&mut self, interval: Duration) -> Duration {
        // xorshift32: deterministic, good enough to desynchronise sessions.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        let (low, span) = if self.timing.detect_mult == 1 {
            (75, 15)
        } else {
            (75, 25)
        };
        let percent = low + (x % (span + 1));
        interval * percent / 100
    }
}

fn advertised_tx(state: SessionState, timing: BfdTiming) -> Duration {
    if state == SessionState::Up {
        timing.desired_min_tx
    } else {
        timing.desired_min_tx.max(SLOW_TX)
    }
}
