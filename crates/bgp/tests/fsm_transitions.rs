//! Session FSM transitions as scripted tables: each step is (input, time in seconds) and the
//! exact outputs it must produce — timers, hold-timer expiry, backoff, passive mode, an
//! unexpected message in every state, notifications, stop and collision dump.

#[path = "bgp_support/fsm_script.rs"]
mod fsm_script;

use std::time::Duration;

use starling_bgp::codec::*;
use starling_bgp::fsm::*;

use fsm_script::*;

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
fn reconfiguring_an_established_session_waits_for_the_next_connection() {
    let mut script = Script::new(config());
    script.establish(90);
    let mut changed = config();
    changed.graceful_restart = Some(GracefulRestartConfig {
        restart_time: Duration::from_secs(4),
        restarting: false,
        forwarding_preserved: true,
    });
    let before = script.fsm.local_open().clone();
    script.fsm.reconfigure(changed.clone());
    assert_eq!(script.fsm.state(), State::Established, "no reset");
    assert_eq!(
        *script.fsm.local_open(),
        before,
        "the live session keeps its OPEN"
    );
    // The connection drops: the next OPEN carries the new restart time.
    script
        .fsm
        .handle(Input::TcpConnectionFails, script.at(10.0));
    assert_eq!(script.fsm.config(), &changed);
    assert_ne!(*script.fsm.local_open(), before);
}
