//! Helpers for the scripted FSM tests: a session configuration, a peer OPEN, and a `Script`
//! that feeds (input, seconds) steps and compares the exact outputs.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use starling_bgp::codec::*;
use starling_bgp::fsm::*;
use starling_model::AsNumber;

pub const LOCAL_AS: AsNumber = AsNumber(64512);

pub fn config() -> FsmConfig {
    let mut config = FsmConfig::new(LOCAL_AS, LOCAL_AS, Ipv4Addr::new(10, 0, 0, 1));
    config.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
    config
}

pub fn peer_open(hold_time: u16) -> Open {
    Open::new(
        LOCAL_AS,
        hold_time,
        Ipv4Addr::new(10, 0, 0, 2),
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::RouteRefresh,
            Capability::GracefulRestart(GracefulRestart {
                restarting: true,
                notification: false,
                restart_time: 120,
                families: vec![GracefulRestartFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                }],
            }),
        ],
    )
}

pub struct Script {
    pub fsm: Fsm,
    pub start: Instant,
}

impl Script {
    pub fn new(config: FsmConfig) -> Script {
        Script {
            fsm: Fsm::new(config),
            start: Instant::now(),
        }
    }

    pub fn at(&self, seconds: f64) -> Instant {
        self.start + Duration::from_secs_f64(seconds)
    }

    /// Runs each step and compares the outputs exactly.
    pub fn run(&mut self, steps: Vec<(Input, f64, Vec<Output>)>) {
        for (index, (input, seconds, expected)) in steps.into_iter().enumerate() {
            let description = format!(
                "step {index}: {input:?} at {seconds} s in {}",
                self.fsm.state()
            );
            let outputs = self.fsm.handle(input, self.at(seconds));
            assert_eq!(outputs, expected, "{description}");
        }
    }

    pub fn start_timer(&self, timer: Timer, seconds: f64) -> Output {
        Output::StartTimer {
            timer,
            deadline: self.at(seconds),
        }
    }

    /// Drives an active session to Established with a peer proposing `hold` seconds.
    pub fn establish(&mut self, hold: u16) -> Negotiated {
        self.fsm.handle(Input::ManualStart, self.at(0.0));
        self.fsm
            .handle(Input::TimerExpired(Timer::ConnectRetry), self.at(2.0));
        self.fsm.handle(Input::TcpConnectionConfirmed, self.at(2.0));
        self.fsm.handle(
            Input::MessageReceived(Message::Open(peer_open(hold))),
            self.at(3.0),
        );
        let outputs = self
            .fsm
            .handle(Input::MessageReceived(Message::Keepalive), self.at(3.0));
        assert_eq!(self.fsm.state(), State::Established);
        outputs
            .into_iter()
            .find_map(|output| match output {
                Output::Established(negotiated) => Some(*negotiated),
                _ => None,
            })
            .expect("Established output")
    }
}

pub fn notification(code: u8, subcode: u8, data: Vec<u8>) -> Output {
    Output::Send(Message::Notification(Notification::new(
        code, subcode, data,
    )))
}

pub fn received(message: Message) -> Input {
    Input::MessageReceived(message)
}

pub fn expected_negotiated(hold: u64) -> Negotiated {
    Negotiated {
        peer_as: LOCAL_AS,
        peer_identifier: Ipv4Addr::new(10, 0, 0, 2),
        hold_time: Duration::from_secs(hold),
        keepalive_interval: Some(Duration::from_secs(hold / 3)),
        families: vec![Family::IPV4_UNICAST],
        four_octet_as: true,
        route_refresh: true,
        peer_graceful_restart: peer_open(90).graceful_restart().cloned(),
    }
}

pub fn rejection_outputs(script: &Script, data: Notification, at: f64) -> Vec<Output> {
    vec![
        Output::Send(Message::Notification(data.clone())),
        Output::CloseConnection,
        Output::StopTimer(Timer::Hold),
        Output::Down {
            reason: DownReason::NotificationSent(data),
            was_established: false,
        },
        script.start_timer(Timer::ErrorWait, at + 5.0),
    ]
}

pub fn assert_open_rejected(config: FsmConfig, open: Open, expected: Notification) {
    let mut script = Script::new(config);
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    script
        .fsm
        .handle(Input::TcpConnectionConfirmed, script.at(0.0));
    let outputs = rejection_outputs(&script, expected, 1.0);
    script.run(vec![(received(Message::Open(open)), 1.0, outputs)]);
    assert_eq!(script.fsm.state(), State::Idle);
}
