//! BGP convergence benchmark, Starling against BIRD 2 in the same run (root only; prints why it
//! skips otherwise). Run with `cargo bench --bench bgp_convergence [-- PREFIXES] [-- codec]`
//! (default 100 000 prefixes).
//!
//! 1. Receiver: a GoBGP injector announces PREFIXES IPv4 /24s over iBGP to the receiver
//!    (Starling or BIRD) in its own namespace. gobgpd's global RIB is preloaded from an MRT
//!    TABLE_DUMP_V2 file before the receiver starts (`support/gobgp_injector.rs`), so GoBGP's
//!    loading speed is not measured. Measured: the time from the receiver's start, and from the
//!    session becoming Established (as gobgpd reports it, polled every 20 ms), until all
//!    prefixes are in the receiver's kernel; and the receiver's resident memory afterwards
//!    (Starling runs as a child process of this benchmark so its RSS is its own). gobgpd is
//!    passive; both receivers connect 2 s after their start (Starling's fixed first-connect
//!    delay, BIRD configured to match), so the times from start compare.
//! 2. Route reflector: one client announces PREFIXES, the reflector passes them to 10 clients;
//!    measured is the time until the last client has them all.
//!
//! The reflector's clients, and the fallback injector of (1) when gobgpd cannot be driven (not
//! installed, MRT injection fails) or `codec` is passed, are a minimal BGP speaker written with
//! Starling's codec over blocking TCP; that fallback measures from its first UPDATE.

#[path = "../tests/support/bgp_daemons.rs"]
mod bgp_daemons;
#[path = "../tests/support/bgp_peers.rs"]
mod bgp_peers;
#[path = "support/codec_peer.rs"]
mod codec_peer;
#[path = "support/gobgp_injector.rs"]
mod gobgp_injector;
#[path = "support/proc_status.rs"]
mod proc_status;
#[path = "../tests/support/requirements.rs"]
mod requirements;

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bgp_daemons::*;
use bgp_peers::*;
use codec_peer::{drain, MiniPeer};
use gobgp_injector::GoBgpInjector;
use ipnet::{IpNet, Ipv4Net};
use starling::netns;

const AS: u32 = 64512;
const CLIENTS: usize = 10;

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if arguments.first().map(String::as_str) == Some("child-speaker") {
        child_speaker(&arguments[1..]);
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        println!("skipping bgp_convergence: needs root (network namespaces)");
        return;
    }
    if requirements::find_program("bird").is_none() {
        println!("skipping bgp_convergence: bird is not installed");
        return;
    }
    let prefixes: usize = arguments
        .iter()
        .find_map(|argument| argument.parse().ok())
        .unwrap_or(100_000);
    let codec_only = arguments.iter().any(|argument| argument == "codec");
    println!("bgp_convergence with {prefixes} prefixes");
    let routes = generate_prefixes(prefixes);

    let starling = receiver_run(&routes, Receiver::Starling, codec_only);
    let bird = receiver_run(&routes, Receiver::Bird, codec_only);
    let alone = receiver_run(&routes, Receiver::StarlingSpeakerOnly, codec_only);
    println!(
        "receiver, Starling speaker alone (routes handed to the dataplane, not installed), {}: {}, {} MiB RSS",
        alone.injector,
        alone.describe(),
        alone.rss_kib / 1024
    );
    println!(
        "receiver, {}: Starling {}, {} MiB RSS; BIRD {}, {} MiB RSS",
        starling.injector,
        starling.describe(),
        starling.rss_kib / 1024,
        bird.describe(),
        bird.rss_kib / 1024,
    );
    println!(
        "receiver ratios Starling/BIRD: time from {} {:.2}{}, memory {:.2}",
        if starling.from_established.is_some() {
            "start"
        } else {
            "the first UPDATE"
        },
        starling.from_start.as_secs_f64() / bird.from_start.as_secs_f64(),
        match (starling.from_established, bird.from_established) {
            (Some(starling), Some(bird)) => format!(
                ", time from Established {:.2}",
                starling.as_secs_f64() / bird.as_secs_f64()
            ),
            _ => String::new(),
        },
        starling.rss_kib as f64 / bird.rss_kib.max(1) as f64
    );

    let starling_reflect = reflector_run(&routes, Receiver::Starling);
    let bird_reflect = reflector_run(&routes, Receiver::Bird);
    println!(
        "reflector to {CLIENTS} clients: Starling {:.2} s; BIRD {:.2} s; ratio Starling/BIRD {:.2}",
        starling_reflect.as_secs_f64(),
        bird_reflect.as_secs_f64(),
        starling_reflect.as_secs_f64() / bird_reflect.as_secs_f64()
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receiver {
    Starling,
    /// The Starling speaker without kernel programming: done when it has published every
    /// route for the dataplane (separates the speaker's time and memory from the dataplane's).
    StarlingSpeakerOnly,
    Bird,
}

/// `count` distinct /24s from 20.0.0.0 upwards.
fn generate_prefixes(count: usize) -> Vec<IpNet> {
    (0..count)
        .map(|index| {
            let base = u32::from(Ipv4Addr::new(20, 0, 0, 0)) + (index as u32) * 256;
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(base), 24).unwrap())
        })
        .collect()
}

/// Starts the speaker under test in `namespace` as a child process (Starling) or a BIRD
/// daemon, with passive sessions to `peers`; `reflector` makes them route-reflector clients.
enum Running {
    Starling(Child),
    Bird(Bird),
}

impl Running {
    fn rss_kib(&self) -> u64 {
        let pid = match self {
            Running::Starling(child) => child.id(),
            Running::Bird(bird) => {
                let pid_file = bird.socket.with_extension("pid");
                std::fs::read_to_string(pid_file)
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                    .unwrap_or(0)
            }
        };
        proc_status::rss_kib(pid)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Running::Starling(child) = self {
            // Closing stdin asks the child to stop; kill is the fallback.
            drop(child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start(
    kind: Receiver,
    lab: &Lab,
    directory: &std::path::Path,
    peers: &[usize],
    reflector: bool,
    expected: usize,
) -> Running {
    let own = Lab::address(0);
    match kind {
        Receiver::Starling | Receiver::StarlingSpeakerOnly => {
            let mode = match (kind, reflector) {
                (Receiver::StarlingSpeakerOnly, _) => format!("speaker-only:{expected}"),
                (_, true) => "reflector".to_string(),
                (_, false) => "plain".to_string(),
            };
            let mut command = Command::new(std::env::current_exe().unwrap());
            command
                .arg("child-speaker")
                .arg(lab.namespace(0))
                .arg(mode)
                .args(peers.iter().map(|peer| Lab::address(*peer).to_string()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            Running::Starling(command.spawn().unwrap())
        }
        Receiver::Bird => {
            let mut protocols = String::new();
            for peer in peers {
                let extra = if reflector {
                    "passive on; rr client; rr cluster id 224.0.0.1;"
                } else {
                    // Active, gobgpd waits passively. Starling's first connect comes 2 s after
                    // its start (Calico's BIRD template); BIRD waits as long, so the times
                    // from start compare.
                    "connect delay time 2;"
                };
                protocols.push_str(&bird_bgp(
                    &format!("peer{peer}"),
                    own,
                    AS,
                    Lab::address(*peer),
                    AS,
                    extra,
                ));
            }
            Running::Bird(Bird::start(
                lab.namespace(0),
                directory,
                "bird",
                &bird_config(own, &[], &protocols),
            ))
        }
    }
}

/// Benchmark mode of this executable: the Starling speaker (plus dataplane, unless
/// `speaker-only:N`, which prints `converged` once N routes were published) in a namespace
/// until stdin closes.
fn child_speaker(arguments: &[String]) {
    let namespace = &arguments[0];
    let reflector = arguments[1] == "reflector";
    let speaker_only: Option<usize> = arguments[1]
        .strip_prefix("speaker-only:")
        .and_then(|count| count.parse().ok());
    let own = Lab::address(0);
    let sessions = arguments[2..]
        .iter()
        .map(|peer| {
            let mut spec = session(peer.parse().unwrap(), AS, AS, own);
            // Receiver runs connect to the passive gobgpd (or the codec injector, which
            // connects too); the reflector waits for its clients.
            spec.passive = reflector;
            if reflector {
                spec.route_reflector_client_cluster_id = Some(Ipv4Addr::new(224, 0, 0, 1));
            }
            spec
        })
        .collect();
    let mut config = speaker_config(0, AS, &[], sessions);
    // Reflect everything the benchmark announces (Calico reflects pool routes).
    config.policy.pools[0].cidr = "0.0.0.0/0".parse().unwrap();
    let speaker = match speaker_only {
        Some(expected) => {
            let speaker = Starling::start_without_dataplane(namespace, config);
            while speaker.learned_count() < expected {
                std::thread::sleep(Duration::from_millis(20));
            }
            println!("converged");
            let _ = std::io::stdout().flush();
            speaker
        }
        None => Starling::start(namespace, config),
    };
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    speaker.stop(false);
}

/// What one receiver run measured.
struct Measurement {
    injector: &'static str,
    /// From the receiver's start (codec fallback: from the first UPDATE) until every route is
    /// in its kernel (speaker-only: handed to the dataplane).
    from_start: Duration,
    /// From gobgpd seeing the session Established until the same point (GoBGP injector only).
    from_established: Option<Duration>,
    rss_kib: u64,
}

impl Measurement {
    fn describe(&self) -> String {
        match self.from_established {
            Some(established) => format!(
                "{:.2} s from its start ({:.2} s from Established)",
                self.from_start.as_secs_f64(),
                established.as_secs_f64()
            ),
            None => format!(
                "{:.2} s from the first UPDATE",
                self.from_start.as_secs_f64()
            ),
        }
    }
}

fn receiver_run(routes: &[IpNet], kind: Receiver, codec_only: bool) -> Measurement {
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("bench", 2);
    if !codec_only {
        match GoBgpInjector::preload(
            lab.namespace(1),
            directory.path(),
            Lab::address(1),
            AS,
            Lab::address(0),
            routes,
        ) {
            Ok(injector) => {
                return gobgp_receiver_run(&lab, directory.path(), routes.len(), kind, injector)
            }
            Err(error) => {
                println!("  GoBGP injector unavailable ({error}); using the codec injector")
            }
        }
    }
    codec_receiver_run(&lab, directory.path(), routes, kind)
}

/// Starts the receiver against the preloaded gobgpd; a watcher thread notes when gobgpd sees
/// the session Established while this thread waits for the routes.
fn gobgp_receiver_run(
    lab: &Lab,
    directory: &std::path::Path,
    count: usize,
    kind: Receiver,
    injector: GoBgpInjector,
) -> Measurement {
    let begin = Instant::now();
    let mut running = start(kind, lab, directory, &[1], false, count);
    let (established, done) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                if injector.established() {
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        });
        let done = wait_for_routes(kind, &mut running, lab, count, begin);
        (watcher.join().unwrap(), done)
    });
    let done = done.unwrap_or_else(|| panic!("{kind:?} never got all routes"));
    let measurement = Measurement {
        injector: "GoBGP injector (MRT-preloaded)",
        from_start: done - begin,
        from_established: established.map(|at| done.saturating_duration_since(at)),
        rss_kib: running.rss_kib(),
    };
    println!(
        "  {kind:?} receiver: {count} routes done {}, RSS {} KiB",
        measurement.describe(),
        measurement.rss_kib
    );
    drop(running);
    drop(injector);
    measurement
}

/// Waits until the receiver has `count` routes in its kernel (speaker-only: until the child
/// reports them published); the instant it saw that, or None after 600 s.
fn wait_for_routes(
    kind: Receiver,
    running: &mut Running,
    lab: &Lab,
    count: usize,
    begin: Instant,
) -> Option<Instant> {
    if let (Receiver::StarlingSpeakerOnly, Running::Starling(child)) = (kind, &mut *running) {
        let mut line = String::new();
        let stdout = child.stdout.take()?;
        let read = std::io::BufRead::read_line(&mut BufReader::new(stdout), &mut line);
        return (read.is_ok() && line.trim() == "converged").then(Instant::now);
    }
    let protocol = match kind {
        Receiver::Bird => "bird",
        _ => "81",
    };
    let deadline = begin + Duration::from_secs(600);
    while Instant::now() < deadline {
        if kernel_route_count(lab.namespace(0), protocol) >= count {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The fallback: the codec injector connects to the already running receiver and announces;
/// measured from its first UPDATE.
fn codec_receiver_run(
    lab: &Lab,
    directory: &std::path::Path,
    routes: &[IpNet],
    kind: Receiver,
) -> Measurement {
    let mut running = start(kind, lab, directory, &[1], false, routes.len());
    let injector = Lab::address(1);
    let injector_namespace = lab.namespace(1).to_string();
    let routes = routes.to_vec();
    let count = routes.len();
    let (started_sender, started) = std::sync::mpsc::channel();
    let injector_thread = std::thread::spawn(move || {
        netns::run_in(&injector_namespace, move || {
            let mut peer = MiniPeer::connect(injector, Lab::address(0));
            let writer_stream = peer.writer.get_ref().try_clone().unwrap();
            let reader = MiniPeer {
                reader: BufReader::new(peer.reader.get_ref().try_clone().unwrap()),
                writer: BufWriter::new(writer_stream),
                buffer: std::mem::take(&mut peer.buffer),
            };
            drain(reader);
            let _ = started_sender.send(Instant::now());
            peer.announce(injector, &routes);
            // Returned, so the session stays up until the receiver has everything.
            peer
        })
        .unwrap()
    });
    let begin = started.recv().unwrap();
    let done = wait_for_routes(kind, &mut running, lab, count, begin)
        .unwrap_or_else(|| panic!("{kind:?} never got all routes"));
    let measurement = Measurement {
        injector: "codec injector (fallback)",
        from_start: done - begin,
        from_established: None,
        rss_kib: running.rss_kib(),
    };
    println!(
        "  {kind:?} receiver: {count} routes done {}, RSS {} KiB",
        measurement.describe(),
        measurement.rss_kib
    );
    let peer = injector_thread.join().unwrap();
    drop(running);
    drop(peer);
    measurement
}

fn reflector_run(routes: &[IpNet], kind: Receiver) -> Duration {
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("rr", CLIENTS + 2);
    let peers: Vec<usize> = (1..=CLIENTS + 1).collect();
    let running = start(kind, &lab, directory.path(), &peers, true, routes.len());
    let count = routes.len();
    let reflector = Lab::address(0);
    // Receiving clients first, so their sessions are up before the announcement.
    let (ready_sender, ready) = std::sync::mpsc::channel();
    let mut receivers = Vec::new();
    for index in 2..=CLIENTS + 1 {
        let namespace = lab.namespace(index).to_string();
        let ready_sender = ready_sender.clone();
        receivers.push(std::thread::spawn(move || {
            netns::run_in(&namespace, move || {
                let mut peer = MiniPeer::connect(Lab::address(index), reflector);
                let _ = ready_sender.send(());
                let complete = peer.count_until(count);
                (complete, Instant::now())
            })
            .unwrap()
        }));
    }
    for _ in 2..=CLIENTS + 1 {
        ready.recv().unwrap();
    }
    let namespace = lab.namespace(1).to_string();
    let routes = routes.to_vec();
    let begin = Instant::now();
    let announcer = std::thread::spawn(move || {
        netns::run_in(&namespace, move || {
            let mut peer = MiniPeer::connect(Lab::address(1), reflector);
            peer.announce(Lab::address(1), &routes);
            peer
        })
        .unwrap()
    });
    let mut last = begin;
    for receiver in receivers {
        let (complete, at) = receiver.join().unwrap();
        assert!(complete, "{kind:?}: a client lost its session");
        last = last.max(at);
    }
    let elapsed = last - begin;
    println!(
        "  {kind:?} reflector: last of {CLIENTS} clients had {count} routes after {:.2} s",
        elapsed.as_secs_f64()
    );
    drop(announcer.join());
    drop(running);
    elapsed
}
