//! Session FSM tests as scripted tables: each step is (input, time in seconds) and the exact
//! outputs it must produce.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use starling::bgp::codec::*;
use starling::bgp::fsm::*;
use starling::model::AsNumber;

const LOCAL_AS: AsNumber = AsNumber(64512);

fn config() -> FsmConfig {
    let mut config = FsmConfig::new(LOCAL_AS, LOCAL_AS, Ipv4Addr::new(10, 0, 0, 1));
    config.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
    config
}

fn peer_open(hold_time: u16) -> Open {
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

struct Script {
    fsm: Fsm,
    start: Instant,
}

impl Script {
    fn new(config: FsmConfig) -> Script {
        Script {
            fsm: Fsm::new(config),
            start: Instant::now(),
        }
    }

    fn at(&self, seconds: f64) -> Instant {
        self.start + Duration::from_secs_f64(seconds)
    }

    /// Runs each step and compares the outputs exactly.
    fn run(&mut self, steps: Vec<(Input, f64, Vec<Output>)>) {
        for (index, (input, seconds, expected)) in steps.into_iter().enumerate() {
            let description = format!(
                "step {index}: {input:?} at {seconds} s in {}",
                self.fsm.state()
            );
            let outputs = self.fsm.handle(input, self.at(seconds));
            assert_eq!(outputs, expected, "{description}");
        }
    }

    fn start_timer(&self, timer: Timer, seconds: f64) -> Output {
        Output::StartTimer {
            timer,
            deadline: self.at(seconds),
        }
    }

    /// Drives an active session to Established with a peer proposing `hold` seconds.
    fn establish(&mut self, hold: u16) -> Negotiated {
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

fn notification(code: u8, subcode: u8, data: Vec<u8>) -> Output {
    Output::Send(Message::Notification(Notification::new(
        code, subcode, data,
    )))
}

fn received(message: Message) -> Input {
    Input::MessageReceived(message)
}

fn expected_negotiated(hold: u64) -> Negotiated {
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

#[test]
fn active_session_reaches_established_and_keeps_alive() {
    let mut script = Script::new(config());
    let local_open = script.fsm.local_open().clone();
    let update = Update::end_of_rib(Family::IPV4_UNICAST);
    let steps = vec![
        (
            Input::ManualStart,
            0.0,
            vec![script.start_timer(Timer::ConnectRetry, 2.0)],
        ),
        (
            Input::TimerExpired(Timer::ConnectRetry),
            2.0,
            vec![
                Output::Connect,
                script.start_timer(Timer::ConnectRetry, 7.0),
            ],
        ),
        (
            Input::TcpConnectionConfirmed,
            2.5,
            vec![
                Output::StopTimer(Timer::ConnectRetry),
                Output::Send(Message::Open(local_open)),
                script.start_timer(Timer::Hold, 242.5),
            ],
        ),
        (
            received(Message::Open(peer_open(90))),
            3.0,
            vec![
                Output::Send(Message::Keepalive),
                Output::StopTimer(Timer::Hold),
                script.start_timer(Timer::Hold, 93.0),
                script.start_timer(Timer::Keepalive, 33.0),
            ],
        ),
        (
            received(Message::Keepalive),
            4.0,
            vec![
                script.start_timer(Timer::Hold, 94.0),
                Output::Established(Box::new(expected_negotiated(90))),
            ],
        ),
        (
            Input::TimerExpired(Timer::Keepalive),
            33.0,
            vec![
                Output::Send(Message::Keepalive),
                script.start_timer(Timer::Keepalive, 63.0),
            ],
        ),
        (
            received(update.clone().into()),
            40.0,
            vec![
                script.start_timer(Timer::Hold, 130.0),
                Output::UpdateReceived(Box::new(update)),
            ],
        ),
        (
            received(Message::RouteRefresh(RouteRefresh::new(
                Family::IPV4_UNICAST,
            ))),
            41.0,
            vec![
                script.start_timer(Timer::Hold, 131.0),
                Output::RouteRefreshRequested(RouteRefresh::new(Family::IPV4_UNICAST)),
            ],
        ),
    ];
    script.run(steps);
    assert_eq!(script.fsm.state(), State::Established);
}

#[test]
fn hold_timer_expiry_in_established_resets_and_restarts_after_error_wait() {
    let mut script = Script::new(config());
    script.establish(90);
    let steps = vec![
        (
            Input::TimerExpired(Timer::Hold),
            93.0,
            vec![
                notification(4, 0, vec![]),
                Output::CloseConnection,
                Output::StopTimer(Timer::Keepalive),
                Output::Down {
                    reason: DownReason::HoldTimerExpired,
                    was_established: true,
                },
                script.start_timer(Timer::ErrorWait, 98.0),
            ],
        ),
        (
            Input::TimerExpired(Timer::ErrorWait),
            98.0,
            vec![script.start_timer(Timer::ConnectRetry, 100.0)],
        ),
    ];
    script.run(steps);
    assert_eq!(script.fsm.state(), State::Connect);
}

#[test]
fn hold_timer_expiry_in_open_sent_and_open_confirm() {
    let mut script = Script::new(config());
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    script
        .fsm
        .handle(Input::TcpConnectionConfirmed, script.at(1.0));
    let steps = vec![(
        Input::TimerExpired(Timer::Hold),
        241.0,
        vec![
            notification(4, 0, vec![]),
            Output::CloseConnection,
            Output::Down {
                reason: DownReason::HoldTimerExpired,
                was_established: false,
            },
            script.start_timer(Timer::ErrorWait, 246.0),
        ],
    )];
    script.run(steps);

    let mut script = Script::new(config());
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    script
        .fsm
        .handle(Input::TcpConnectionConfirmed, script.at(1.0));
    script
        .fsm
        .handle(received(Message::Open(peer_open(9))), script.at(1.0));
    assert_eq!(script.fsm.state(), State::OpenConfirm);
    let steps = vec![(
        Input::TimerExpired(Timer::Hold),
        10.0,
        vec![
            notification(4, 0, vec![]),
            Output::CloseConnection,
            Output::StopTimer(Timer::Keepalive),
            Output::Down {
                reason: DownReason::HoldTimerExpired,
                was_established: false,
            },
            script.start_timer(Timer::ErrorWait, 15.0),
        ],
    )];
    script.run(steps);
}

#[test]
fn error_wait_doubles_up_to_thirty_seconds_and_is_forgotten() {
    let mut script = Script::new(config());
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    let mut now = 0.0;
    for expected_wait in [5.0, 10.0, 20.0, 30.0, 30.0] {
        script
            .fsm
            .handle(Input::TcpConnectionConfirmed, script.at(now));
        let outputs = script
            .fsm
            .handle(received(Message::Keepalive), script.at(now));
        assert_eq!(
            outputs.last(),
            Some(&script.start_timer(Timer::ErrorWait, now + expected_wait))
        );
        now += expected_wait;
        script
            .fsm
            .handle(Input::TimerExpired(Timer::ErrorWait), script.at(now));
        assert_eq!(script.fsm.state(), State::Active);
    }
    // After error_forget (300 s) without failures the wait starts again at 5 s.
    now += 301.0;
    script
        .fsm
        .handle(Input::TcpConnectionConfirmed, script.at(now));
    let outputs = script
        .fsm
        .handle(received(Message::Keepalive), script.at(now));
    assert_eq!(
        outputs.last(),
        Some(&script.start_timer(Timer::ErrorWait, now + 5.0))
    );
}

#[test]
fn connect_failure_waits_for_retry_with_backoff() {
    let mut config = config();
    config.connect_retry_max = Duration::from_secs(40);
    let mut script = Script::new(config);
    let steps = vec![
        (
            Input::ManualStart,
            0.0,
            vec![script.start_timer(Timer::ConnectRetry, 2.0)],
        ),
        (
            Input::TimerExpired(Timer::ConnectRetry),
            2.0,
            vec![
                Output::Connect,
                script.start_timer(Timer::ConnectRetry, 7.0),
            ],
        ),
        (Input::TcpConnectionFails, 3.0, vec![]),
        (
            Input::TimerExpired(Timer::ConnectRetry),
            7.0,
            vec![
                Output::Connect,
                script.start_timer(Timer::ConnectRetry, 17.0),
            ],
        ),
        (Input::TcpConnectionFails, 8.0, vec![]),
        (
            Input::TimerExpired(Timer::ConnectRetry),
            17.0,
            vec![
                Output::Connect,
                script.start_timer(Timer::ConnectRetry, 37.0),
            ],
        ),
        (
            Input::TimerExpired(Timer::ConnectRetry),
            37.0,
            vec![
                Output::Connect,
                script.start_timer(Timer::ConnectRetry, 77.0),
            ],
        ),
        (
            Input::TimerExpired(Timer::ConnectRetry),
            77.0,
            vec![
                Output::Connect,
                script.start_timer(Timer::ConnectRetry, 117.0),
            ],
        ),
    ];
    script.run(steps);
}

#[test]
fn default_connect_retry_is_bird_fixed_five_seconds() {
    let mut script = Script::new(config());
    script.fsm.handle(Input::ManualStart, script.at(0.0));
    let steps = vec![
        (
            Input::TimerExpired(Timer::ConnectRetry),
            2.0,
            vec![
                Output::Connect,
                script.start_timer(Timer::ConnectRetry, 7.0),
            ],
        ),
        (Input::TcpConnectionFails, 3.0, vec![]),
        (
            Input::TimerExpired(Timer::ConnectRetry),
            7.0,
            vec![
                Output::Connect,
                script.start_timer(Timer::ConnectRetry, 12.0),
            ],
        ),
    ];
    script.run(steps);
    assert_eq!(script.fsm.state(), State::Connect);
}

#[test]
fn passive_session_never_connects_and_accepts_incoming() {
    let mut config = config();
    config.passive = true;
    let mut script = Script::new(config);
    let local_open = script.fsm.local_open().clone();
    let steps = vec![
        (Input::ManualStart, 0.0, vec![]),
        (Input::TcpConnectionFails, 1.0, vec![]),
        (
            Input::TcpConnectionConfirmed,
            10.0,
            vec![
                Output::Send(Message::Open(local_open)),
                script.start_timer(Timer::Hold, 250.0),
            ],
        ),
    ];
    script.run(steps);
    assert_eq!(script.fsm.state(), State::OpenSent);
}

#[test]
fn zero_hold_time_runs_no_timers() {
    let mut script = Script::new(config());
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    script
        .fsm
        .handle(Input::TcpConnectionConfirmed, script.at(0.0));
    let steps = vec![
        (
            received(Message::Open(peer_open(0))),
            1.0,
            vec![
                Output::Send(Message::Keepalive),
                Output::StopTimer(Timer::Hold),
            ],
        ),
        (
            received(Message::Keepalive),
            2.0,
            vec![Output::Established(Box::new(Negotiated {
                hold_time: Duration::ZERO,
                keepalive_interval: None,
                ..expected_negotiated(90)
            }))],
        ),
    ];
    script.run(steps);
}

#[test]
fn configured_keepalive_is_used_up_to_a_third_of_hold() {
    let local = local_open(&config());
    let negotiated = negotiate(&local, &peer_open(90), Some(Duration::from_secs(10)));
    assert_eq!(negotiated.keepalive_interval, Some(Duration::from_secs(10)));
    let negotiated = negotiate(&local, &peer_open(90), Some(Duration::from_secs(60)));
    assert_eq!(negotiated.keepalive_interval, Some(Duration::from_secs(30)));
    let negotiated = negotiate(&local, &peer_open(300), None);
    assert_eq!(
        negotiated.hold_time,
        Duration::from_secs(240),
        "hold is the minimum of both"
    );
    assert_eq!(negotiated.keepalive_interval, Some(Duration::from_secs(80)));
    let negotiated = negotiate(&local, &peer_open(3), None);
    assert_eq!(negotiated.keepalive_interval, Some(Duration::from_secs(1)));
}

#[test]
fn negotiation_intersects_families_and_records_peer_restart() {
    let local = local_open(&config());
    let negotiated = negotiate(&local, &peer_open(90), None);
    assert_eq!(negotiated.families, vec![Family::IPV4_UNICAST]);
    assert!(negotiated.four_octet_as);
    assert!(negotiated.route_refresh);
    assert!(negotiated.peer_preserved_forwarding(Family::IPV4_UNICAST));
    assert!(!negotiated.peer_preserved_forwarding(Family::IPV6_UNICAST));
    assert_eq!(negotiated.codec_options(), CodecOptions::FOUR_OCTET);

    let old_peer = Open {
        version: 4,
        my_as: 64512,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: vec![],
    };
    let negotiated = negotiate(&local, &old_peer, None);
    assert_eq!(
        negotiated.families,
        vec![Family::IPV4_UNICAST],
        "no MP capability means IPv4"
    );
    assert!(!negotiated.four_octet_as);
    assert!(!negotiated.route_refresh);
    assert_eq!(negotiated.peer_graceful_restart, None);
}

fn rejection_outputs(script: &Script, data: Notification, at: f64) -> Vec<Output> {
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

fn assert_open_rejected(config: FsmConfig, open: Open, expected: Notification) {
    let mut script = Script::new(config);
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    script
        .fsm
        .handle(Input::TcpConnectionConfirmed, script.at(0.0));
    let outputs = rejection_outputs(&script, expected, 1.0);
    script.run(vec![(received(Message::Open(open)), 1.0, outputs)]);
    assert_eq!(script.fsm.state(), State::Idle);
}

#[test]
fn open_with_unsupported_version() {
    let mut open = peer_open(90);
    open.version = 3;
    assert_open_rejected(config(), open, Notification::new(2, 1, vec![0, 4]));
}

#[test]
fn open_from_wrong_as() {
    let open = Open::new(AsNumber(65000), 90, Ipv4Addr::new(10, 0, 0, 2), vec![]);
    assert_open_rejected(config(), open, Notification::new(2, 2, vec![]));
}

#[test]
fn open_with_inconsistent_two_octet_field() {
    // The 4-octet capability says 4200000000 but the 2-octet field is not AS_TRANS.
    let mut config = config();
    config.peer_as = AsNumber(4_200_000_000);
    let mut open = Open::new(
        AsNumber(4_200_000_000),
        90,
        Ipv4Addr::new(10, 0, 0, 2),
        vec![],
    );
    assert!(validate_open(&config, &local_open(&config), &open).is_ok());
    open.my_as = 65000;
    assert_open_rejected(config.clone(), open, Notification::new(2, 2, vec![]));
    // A peer without the 4-octet capability cannot be a 4-octet AS.
    let two_octet_only = Open {
        version: 4,
        my_as: 23456,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 2),
        capabilities: vec![],
    };
    assert_open_rejected(config, two_octet_only, Notification::new(2, 2, vec![]));
}

#[test]
fn open_with_unacceptable_hold_time() {
    assert_open_rejected(config(), peer_open(2), Notification::new(2, 6, vec![]));
    assert_open_rejected(config(), peer_open(1), Notification::new(2, 6, vec![]));
}

#[test]
fn open_with_bad_identifier() {
    let mut open = peer_open(90);
    open.bgp_identifier = Ipv4Addr::UNSPECIFIED;
    assert_open_rejected(config(), open, Notification::new(2, 3, vec![]));
    // iBGP peer claiming our own identifier.
    let mut open = peer_open(90);
    open.bgp_identifier = Ipv4Addr::new(10, 0, 0, 1);
    assert_open_rejected(config(), open.clone(), Notification::new(2, 3, vec![]));
    // The same identifier is allowed between different ASes (RFC 6286 §2.2).
    let mut external = config();
    external.peer_as = AsNumber(65001);
    let open = Open::new(AsNumber(65001), 90, Ipv4Addr::new(10, 0, 0, 1), vec![]);
    assert!(validate_open(&external, &local_open(&external), &open).is_ok());
}

#[test]
fn open_rejection_display_names_the_problem() {
    let rejection = OpenRejection::BadPeerAs {
        received: AsNumber(65000),
        two_octet: 65000,
        expected: AsNumber(64512),
    };
    assert!(rejection.to_string().contains("65000"));
    assert!(rejection.to_string().contains("64512"));
}

#[test]
fn unexpected_message_in_idle_is_ignored() {
    let mut script = Script::new(config());
    script.run(vec![(received(Message::Keepalive), 0.0, vec![])]);
    assert_eq!(script.fsm.state(), State::Idle);
}

#[test]
fn unexpected_message_in_connect_drops_to_idle() {
    let mut script = Script::new(config());
    script.fsm.handle(Input::ManualStart, script.at(0.0));
    let steps = vec![(
        received(Message::Keepalive),
        1.0,
        vec![
            Output::CloseConnection,
            Output::StopTimer(Timer::ConnectRetry),
            Output::Down {
                reason: DownReason::ConnectionLost,
                was_established: false,
            },
            script.start_timer(Timer::ErrorWait, 6.0),
        ],
    )];
    script.run(steps);
    assert_eq!(script.fsm.state(), State::Idle);
}

#[test]
fn unexpected_message_in_active_drops_to_idle() {
    let mut script = Script::new(config());
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    let steps = vec![(
        received(Message::Keepalive),
        1.0,
        vec![
            Output::CloseConnection,
            Output::Down {
                reason: DownReason::ConnectionLost,
                was_established: false,
            },
            script.start_timer(Timer::ErrorWait, 6.0),
        ],
    )];
    script.run(steps);
}

#[test]
fn unexpected_message_in_open_sent_is_fsm_error_1() {
    let mut script = Script::new(config());
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    script
        .fsm
        .handle(Input::TcpConnectionConfirmed, script.at(0.0));
    let outputs = rejection_outputs(&script, Notification::new(5, 1, vec![]), 1.0);
    script.run(vec![(received(Message::Keepalive), 1.0, outputs)]);
}

#[test]
fn unexpected_message_in_open_confirm_is_fsm_error_2() {
    let mut script = Script::new(config());
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    script
        .fsm
        .handle(Input::TcpConnectionConfirmed, script.at(0.0));
    script
        .fsm
        .handle(received(Message::Open(peer_open(90))), script.at(0.0));
    let data = Notification::new(5, 2, vec![]);
    let steps = vec![(
        received(Update::end_of_rib(Family::IPV4_UNICAST).into()),
        1.0,
        vec![
            Output::Send(Message::Notification(data.clone())),
            Output::CloseConnection,
            Output::StopTimer(Timer::Hold),
            Output::StopTimer(Timer::Keepalive),
            Output::Down {
                reason: DownReason::NotificationSent(data),
                was_established: false,
            },
            script.start_timer(Timer::ErrorWait, 6.0),
        ],
    )];
    script.run(steps);
}

#[test]
fn unexpected_open_in_established_is_fsm_error_3() {
    let mut script = Script::new(config());
    script.establish(90);
    let data = Notification::new(5, 3, vec![]);
    let steps = vec![(
        received(Message::Open(peer_open(90))),
        10.0,
        vec![
            Output::Send(Message::Notification(data.clone())),
            Output::CloseConnection,
            Output::StopTimer(Timer::Hold),
            Output::StopTimer(Timer::Keepalive),
            Output::Down {
                reason: DownReason::NotificationSent(data),
                was_established: true,
            },
            script.start_timer(Timer::ErrorWait, 15.0),
        ],
    )];
    script.run(steps);
}

#[test]
fn notification_received_in_established_sends_nothing_back() {
    let mut script = Script::new(config());
    script.establish(90);
    let cease = Notification::cease(cease_subcode::ADMINISTRATIVE_RESET);
    let steps = vec![(
        received(Message::Notification(cease.clone())),
        10.0,
        vec![
            Output::CloseConnection,
            Output::StopTimer(Timer::Hold),
            Output::StopTimer(Timer::Keepalive),
            Output::Down {
                reason: DownReason::NotificationReceived(cease),
                was_established: true,
            },
            script.start_timer(Timer::ErrorWait, 15.0),
        ],
    )];
    script.run(steps);
}

#[test]
fn decode_error_sends_its_notification() {
    let mut script = Script::new(config());
    script.establish(90);
    let error = DecodeError::BadMessageType { message_type: 9 };
    let data = Notification::new(1, 3, vec![9]);
    let steps = vec![(
        Input::DecodeFailed(error),
        10.0,
        vec![
            Output::Send(Message::Notification(data.clone())),
            Output::CloseConnection,
            Output::StopTimer(Timer::Hold),
            Output::StopTimer(Timer::Keepalive),
            Output::Down {
                reason: DownReason::NotificationSent(data),
                was_established: true,
            },
            script.start_timer(Timer::ErrorWait, 15.0),
        ],
    )];
    script.run(steps);
}

#[test]
fn connection_loss_in_established() {
    let mut script = Script::new(config());
    script.establish(90);
    let steps = vec![(
        Input::TcpConnectionFails,
        10.0,
        vec![
            Output::CloseConnection,
            Output::StopTimer(Timer::Hold),
            Output::StopTimer(Timer::Keepalive),
            Output::Down {
                reason: DownReason::ConnectionLost,
                was_established: true,
            },
            script.start_timer(Timer::ErrorWait, 15.0),
        ],
    )];
    script.run(steps);
}

#[test]
fn manual_stop_in_established_does_not_restart() {
    let mut script = Script::new(config());
    script.establish(90);
    let steps = vec![
        (
            Input::ManualStop,
            10.0,
            vec![
                notification(6, 2, vec![]),
                Output::CloseConnection,
                Output::StopTimer(Timer::Hold),
                Output::StopTimer(Timer::Keepalive),
                Output::Down {
                    reason: DownReason::ManualStop,
                    was_established: true,
                },
            ],
        ),
        // A late timer expiry after the stop changes nothing.
        (Input::TimerExpired(Timer::Keepalive), 33.0, vec![]),
        (Input::TimerExpired(Timer::ErrorWait), 40.0, vec![]),
    ];
    script.run(steps);
    assert_eq!(script.fsm.state(), State::Idle);
}

#[test]
fn collision_loser_sends_cease_7() {
    let mut script = Script::new(config());
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    script
        .fsm
        .handle(Input::TcpConnectionConfirmed, script.at(0.0));
    script
        .fsm
        .handle(received(Message::Open(peer_open(90))), script.at(0.0));
    let data = Notification::cease(cease_subcode::CONNECTION_COLLISION_RESOLUTION);
    let steps = vec![(
        Input::CollisionDump,
        1.0,
        vec![
            Output::Send(Message::Notification(data)),
            Output::CloseConnection,
            Output::StopTimer(Timer::Hold),
            Output::StopTimer(Timer::Keepalive),
            Output::Down {
                reason: DownReason::CollisionResolution,
                was_established: false,
            },
            script.start_timer(Timer::ErrorWait, 6.0),
        ],
    )];
    script.run(steps);
}

#[test]
fn collision_keeps_connection_of_higher_identifier() {
    let low = Ipv4Addr::new(10, 0, 0, 1);
    let high = Ipv4Addr::new(10, 0, 0, 2);
    assert_eq!(
        collision_survivor(high, LOCAL_AS, low, LOCAL_AS),
        ConnectionOrigin::Local
    );
    assert_eq!(
        collision_survivor(low, LOCAL_AS, high, LOCAL_AS),
        ConnectionOrigin::Remote
    );
    // Compared as numbers, not text: 9.0.0.0 < 10.0.0.0.
    assert_eq!(
        collision_survivor(
            Ipv4Addr::new(9, 0, 0, 0),
            LOCAL_AS,
            Ipv4Addr::new(10, 0, 0, 0),
            LOCAL_AS
        ),
        ConnectionOrigin::Remote
    );
    // Equal identifiers: the larger AS wins (RFC 6286 §2.3).
    assert_eq!(
        collision_survivor(low, AsNumber(65001), low, AsNumber(65000)),
        ConnectionOrigin::Local
    );
    assert_eq!(
        collision_survivor(low, AsNumber(65000), low, AsNumber(65001)),
        ConnectionOrigin::Remote
    );
}

#[test]
fn second_connection_while_in_open_sent_is_left_to_the_caller() {
    let mut script = Script::new(config());
    script.fsm.handle(Input::ManualStartPassive, script.at(0.0));
    script
        .fsm
        .handle(Input::TcpConnectionConfirmed, script.at(0.0));
    script.run(vec![(Input::TcpConnectionConfirmed, 1.0, vec![])]);
    assert_eq!(script.fsm.state(), State::OpenSent);
}

#[test]
fn local_open_advertises_configured_capabilities() {
    let mut config = config();
    config.local_as = AsNumber(4_200_000_000);
    let open = local_open(&config);
    assert_eq!(open.my_as, 23456);
    assert_eq!(open.asn(), AsNumber(4_200_000_000));
    assert_eq!(open.hold_time, 240);
    assert_eq!(
        open.families(),
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert!(open.supports_route_refresh());
    let restart = open.graceful_restart().unwrap();
    assert_eq!(restart.restart_time, 120);
    assert_eq!(restart.families.len(), 2);
    config.graceful_restart = None;
    assert_eq!(local_open(&config).graceful_restart(), None);
}
