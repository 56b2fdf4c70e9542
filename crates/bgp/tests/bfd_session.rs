//! BFD session state machine (RFC 5880 §6.2, §6.8.3, §6.8.6, §6.8.7), driven by a simulated
//! clock: two sessions exchange packets over a link that can be cut in either direction.

use std::time::{Duration, Instant};

use starling_bgp::bfd::{
    BfdTiming, ControlPacket, Diag, Input, Output, Session, SessionState, Timer,
};

const FAST: BfdTiming = BfdTiming {
    desired_min_tx: Duration::from_millis(100),
    required_min_rx: Duration::from_millis(100),
    detect_mult: 3,
};

struct Side {
    session: Session,
    transmit: Option<Instant>,
    detection: Option<Instant>,
    changes: Vec<(Instant, SessionState, Diag)>,
    sent: Vec<ControlPacket>,
}

impl Side {
    fn new(discriminator: u32) -> Side {
        Side {
            session: Session::new(discriminator, FAST),
            transmit: None,
            detection: None,
            changes: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn feed(&mut self, input: Input, now: Instant) -> Vec<ControlPacket> {
        let mut packets = Vec::new();
        for output in self.session.handle(input, now) {
            match output {
                Output::Send(p) => packets.push(p),
                Output::StartTimer {
                    timer: Timer::Transmit,
                    deadline,
                } => self.transmit = Some(deadline),
                Output::StartTimer {
                    timer: Timer::Detection,
                    deadline,
                } => self.detection = Some(deadline),
                Output::StopTimer(Timer::Transmit) => self.transmit = None,
                Output::StopTimer(Timer::Detection) => self.detection = None,
                Output::StateChanged { state, diag } => self.changes.push((now, state, diag)),
            }
        }
        self.sent.extend(packets.iter().copied());
        packets
    }
}

struct Sim {
    now: Instant,
    sides: [Side; 2],
    /// Whether packets from side i reach the other side.
    link: [bool; 2],
}

impl Sim {
    fn new() -> Sim {
        let start = Instant::now();
        Sim {
            now: start,
            sides: [Side::new(11), Side::new(22)],
            link: [true, true],
        }
    }

    fn deliver(&mut self, from: usize, packets: Vec<ControlPacket>) {
        let mut queue: Vec<(usize, ControlPacket)> =
            packets.into_iter().map(|p| (from, p)).collect();
        while !queue.is_empty() {
            let (from, packet) = queue.remove(0);
            if !self.link[from] {
                continue;
            }
            let to = 1 - from;
            let replies = self.sides[to].feed(Input::Received(packet), self.now);
            queue.extend(replies.into_iter().map(|p| (to, p)));
        }
    }

    fn input(&mut self, side: usize, input: Input) {
        let packets = self.sides[side].feed(input, self.now);
        self.deliver(side, packets);
    }

    fn start(&mut self) {
        self.input(0, Input::Start);
        self.input(1, Input::Start);
    }

    /// Fire every timer due up to `until`, in deadline order.
    fn run_until(&mut self, until: Instant) {
        loop {
            let next = (0..2)
                .flat_map(|i| {
                    [
                        self.sides[i].transmit.map(|d| (d, i, Timer::Transmit)),
                        self.sides[i].detection.map(|d| (d, i, Timer::Detection)),
                    ]
                })
                .flatten()
                .filter(|(d, _, _)| *d <= until)
                .min();
            let Some((deadline, side, timer)) = next else {
                break;
            };
            self.now = deadline;
            match timer {
                Timer::Transmit => self.sides[side].transmit = None,
                Timer::Detection => self.sides[side].detection = None,
            }
            self.input(side, Input::TimerExpired(timer));
        }
        self.now = until;
    }

    fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    fn state(&self, side: usize) -> SessionState {
        self.sides[side].session.state()
    }
}

#[test]
fn slow_transmit_while_not_up() {
    let mut side = Side::new(5);
    let now = Instant::now();
    let sent = side.feed(Input::Start, now);
    assert_eq!(sent.len(), 1);
    let p = sent[0];
    assert_eq!(
        (p.state, p.my_discriminator, p.your_discriminator),
        (SessionState::Down, 5, 0)
    );
    assert_eq!(p.desired_min_tx_us, 1_000_000, "at least 1 s while not Up");
    assert_eq!(p.required_min_rx_us, 100_000);
    assert_eq!(p.detect_mult, 3);
    // Periodic packets keep coming every 750–1000 ms (jittered).
    let mut last = now;
    for _ in 0..20 {
        let deadline = side.transmit.unwrap();
        let gap = deadline - last;
        assert!(
            gap >= Duration::from_millis(750) && gap <= Duration::from_millis(1000),
            "{gap:?}"
        );
        side.transmit = None;
        assert_eq!(
            side.feed(Input::TimerExpired(Timer::Transmit), deadline)
                .len(),
            1
        );
        last = deadline;
    }
    assert_eq!(side.session.state(), SessionState::Down);
}

#[test]
fn three_way_handshake_comes_up_and_speeds_up() {
    let mut side_a = Side::new(1);
    let mut side_b = Side::new(2);
    let t = Instant::now();
    let a_down = side_a.feed(Input::Start, t)[0];
    let b_down = side_b.feed(Input::Start, t)[0];
    // B hears A Down -> Init, echoing A's discriminator.
    let b_init = side_b.feed(Input::Received(a_down), t);
    assert_eq!(side_b.session.state(), SessionState::Init);
    assert_eq!(
        (b_init[0].state, b_init[0].your_discriminator),
        (SessionState::Init, 1)
    );
    // A hears B Down -> Init, then B Init -> Up.
    side_a.feed(Input::Received(b_down), t);
    assert_eq!(side_a.session.state(), SessionState::Init);
    let a_up = side_a.feed(Input::Received(b_init[0]), t);
    assert_eq!(side_a.session.state(), SessionState::Up);
    assert_eq!(
        side_a.changes.iter().map(|c| c.1).collect::<Vec<_>>(),
        [SessionState::Init, SessionState::Up]
    );
    // Coming Up lowers the transmit interval: a Poll announcing the fast rate.
    assert_eq!(a_up[0].state, SessionState::Up);
    assert!(a_up[0].poll);
    assert_eq!(a_up[0].desired_min_tx_us, 100_000);
    let b_reply = side_b.feed(Input::Received(a_up[0]), t);
    assert_eq!(side_b.session.state(), SessionState::Up);
    assert!(
        b_reply.iter().any(|p| p.final_ && !p.poll),
        "B answers the Poll with a Final"
    );
}

#[test]
fn sessions_come_up_and_stay_up() {
    let mut sim = Sim::new();
    sim.start();
    sim.run_for(Duration::from_secs(3));
    assert_eq!(
        (sim.state(0), sim.state(1)),
        (SessionState::Up, SessionState::Up)
    );
    for side in &sim.sides {
        assert!(!side.session.polling(), "Poll sequences finished");
        assert_eq!(
            side.session.detection_time(),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            side.session.transmit_interval(),
            Some(Duration::from_millis(100))
        );
        assert_eq!(side.changes.last().map(|c| c.1), Some(SessionState::Up));
    }
    let before = sim.sides[0].sent.len();
    sim.run_for(Duration::from_secs(10));
    assert_eq!(
        (sim.state(0), sim.state(1)),
        (SessionState::Up, SessionState::Up)
    );
    // 75–100 ms apart: between 100 and 134 packets in 10 s.
    let sent = sim.sides[0].sent.len() - before;
    assert!((100..=134).contains(&sent), "{sent} packets in 10 s");
}

#[test]
fn detection_timeout_goes_down_with_diag_1() {
    let mut sim = Sim::new();
    sim.start();
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.state(0), SessionState::Up);
    let cut = sim.now;
    sim.link = [false, false];
    sim.run_for(Duration::from_secs(2));
    for side in &sim.sides {
        let (at, state, diag) = *side.changes.last().unwrap();
        assert_eq!(
            (state, diag),
            (SessionState::Down, Diag::CONTROL_DETECTION_TIME_EXPIRED)
        );
        let detected = at - cut;
        assert!(
            detected <= Duration::from_millis(300),
            "detected after {detected:?}"
        );
        assert!(
            detected >= Duration::from_millis(200),
            "detected after {detected:?}"
        );
        assert_eq!(side.session.remote_discriminator(), 0);
    }
    // Down again advertises the slow rate and the diagnostic.
    let last = sim.sides[0].sent.last().unwrap();
    assert_eq!(
        (last.state, last.diag, last.desired_min_tx_us),
        (SessionState::Down, Diag(1), 1_000_000)
    );
    // The link heals: the sessions come back Up.
    sim.link = [true, true];
    sim.run_for(Duration::from_secs(4));
    assert_eq!(
        (sim.state(0), sim.state(1)),
        (SessionState::Up, SessionState::Up)
    );
}

#[test]
fn remote_signalling_down_gives_diag_3() {
    let mut sim = Sim::new();
    sim.start();
    sim.run_for(Duration::from_secs(3));
    // Only A -> B is cut: B times out (diag 1) and tells A, which goes Down with diag 3.
    sim.link = [false, true];
    sim.run_for(Duration::from_millis(400));
    assert_eq!(
        sim.sides[1].changes.last().map(|c| (c.1, c.2)),
        Some((SessionState::Down, Diag(1)))
    );
    let a_down: Vec<_> = sim.sides[0]
        .changes
        .iter()
        .filter(|c| c.1 == SessionState::Down)
        .collect();
    assert_eq!(a_down.len(), 1);
    assert_eq!(a_down[0].2, Diag::NEIGHBOR_SIGNALED_DOWN);
    assert!(a_down[0].0 - sim.sides[1].changes.last().unwrap().0 < Duration::from_millis(1));
}

#[test]
fn admin_down_from_peer_is_neighbor_down() {
    let mut side = Side::new(9);
    let t = Instant::now();
    side.feed(Input::Start, t);
    let peer = |state, your| ControlPacket {
        diag: Diag::NONE,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: 77,
        your_discriminator: your,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: 1_000_000,
        required_min_echo_rx_us: 0,
    };
    side.feed(Input::Received(peer(SessionState::Init, 9)), t);
    assert_eq!(side.session.state(), SessionState::Up);
    side.feed(Input::Received(peer(SessionState::AdminDown, 9)), t);
    assert_eq!(
        side.changes.last().map(|c| (c.1, c.2)),
        Some((SessionState::Down, Diag(3)))
    );
    // AdminDown while Down changes nothing.
    side.feed(Input::Received(peer(SessionState::AdminDown, 9)), t);
    assert_eq!(side.changes.len(), 2);
    // Detection time: remote mult × max(local required RX 100 ms, remote desired TX 1 s).
    assert_eq!(side.session.detection_time(), Some(Duration::from_secs(3)));
}

#[test]
fn poll_final_on_interval_change() {
    let mut sim = Sim::new();
    sim.start();
    sim.run_for(Duration::from_secs(3));
    let slower = BfdTiming {
        desired_min_tx: Duration::from_millis(300),
        ..FAST
    };
    // Hold the reply back to see the state between Poll and Final.
    sim.link = [true, false];
    sim.input(0, Input::Reconfigure(slower));
    let poll = *sim.sides[0].sent.last().unwrap();
    assert!(poll.poll && !poll.final_);
    assert_eq!(poll.desired_min_tx_us, 300_000);
    assert!(sim.sides[0].session.polling());
    // An increase of the transmit interval waits for the Final.
    assert_eq!(
        sim.sides[0].session.transmit_interval(),
        Some(Duration::from_millis(100))
    );
    // B saw the Poll and already uses the new interval for its detection time.
    assert_eq!(
        sim.sides[1].session.detection_time(),
        Some(Duration::from_millis(900))
    );
    let final_ = *sim.sides[1].sent.last().unwrap();
    assert!(final_.final_ && !final_.poll);
    // Periodic packets during the sequence keep the P bit.
    sim.run_for(Duration::from_millis(150));
    assert!(sim.sides[0].sent.last().unwrap().poll);
    // Let B's packets through: A's next periodic Poll gets a Final that ends the sequence.
    sim.link = [true, true];
    sim.run_for(Duration::from_millis(200));
    assert!(!sim.sides[0].session.polling());
    assert_eq!(
        sim.sides[0].session.transmit_interval(),
        Some(Duration::from_millis(300))
    );
    sim.run_for(Duration::from_secs(5));
    assert_eq!(
        (sim.state(0), sim.state(1)),
        (SessionState::Up, SessionState::Up)
    );
    assert!(
        !sim.sides[0]
            .changes
            .iter()
            .any(|c| c.1 == SessionState::Down),
        "the retune never took the session down"
    );
}

#[test]
fn reconfigure_while_down_applies_at_once() {
    let mut side = Side::new(3);
    let t = Instant::now();
    side.feed(Input::Start, t);
    let sent = side.feed(
        Input::Reconfigure(BfdTiming {
            required_min_rx: Duration::from_millis(50),
            ..FAST
        }),
        t,
    );
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].poll);
    assert_eq!(sent[0].required_min_rx_us, 50_000);
    assert!(!side.session.polling());
}
