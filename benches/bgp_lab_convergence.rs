//! BGP receive convergence of the real daemon against BIRD 2 in the same run (root, etcd, BIRD
//! needed; prints why it skips otherwise). Starling is `starling run` exactly as `starling lab`
//! starts it (a one-node `bgp` lab: node namespace, private etcd, Calico resources); a BGPPeer
//! written to the lab's etcd makes it peer with the injector. BIRD runs in a namespace of its
//! own with the same injector setup.
//!
//! The injector announces PREFIXES IPv4 /24s over iBGP: gobgpd with its RIB preloaded from an
//! MRT file before the receiver peers (`support/gobgp_injector.rs`; in the lab it runs in the
//! bridge namespace, 192.0.2.254), or, without gobgpd or with `codec`, the benchmark's codec
//! speaker (`support/codec_peer.rs`), which withdraws by closing the session.
//!
//! Measured for each receiver, with kernel route notifications of its BGP routes (protocol 81
//! for Starling, `bird` for BIRD) counted by a netlink monitor in the receiver's namespace
//! (`support/route_monitor.rs`):
//! - time from the session Established (gobgpd's view, polled every 20 ms) until every prefix
//!   is in the receiver's kernel;
//! - VmRSS growth: right after the receiver is told to peer, before any route, against the
//!   moment all are in the kernel, and against the end of the idle period (the table held);
//! - route writes until then (one per route is the minimum) and during IDLE seconds after;
//! - withdraw: the injector withdraws everything (`gobgp global rib del all`), time until the
//!   kernel has none of them left.
//!
//! Run: `cargo bench --bench bgp_lab_convergence [-- PREFIXES [IDLE_SECONDS]] [-- codec]`
//! (default 100 000 prefixes, 100 s idle; release build: the lab's daemon is this build's
//! `starling`).

#[path = "support/bench_lab.rs"]
mod bench_lab;
#[path = "../tests/support/bgp_daemons.rs"]
mod bgp_daemons;
#[path = "../tests/support/bgp_peers.rs"]
mod bgp_peers;
#[allow(dead_code)] // the counting half is the reflector benchmark's
#[path = "support/codec_peer.rs"]
mod codec_peer;
#[path = "support/gobgp_injector.rs"]
mod gobgp_injector;
#[path = "../tests/support/metrics_scrape.rs"]
mod metrics_scrape;
#[path = "support/proc_status.rs"]
mod proc_status;
#[path = "../tests/support/requirements.rs"]
mod requirements;
#[allow(dead_code)] // the mesh benchmark's presence count
#[path = "support/route_monitor.rs"]
mod route_monitor;

use std::io::{BufReader, BufWriter};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bgp_daemons::{bird_bgp, bird_config, Bird};
use bgp_peers::Lab;
use codec_peer::{drain, MiniPeer};
use gobgp_injector::GoBgpInjector;
use ipnet::{IpNet, Ipv4Net};
use route_monitor::{RouteMonitor, Writes};
use serde_json::json;
use starling::lab::{self, topology, Mode};

const AS: u32 = 64512;
const NAME: &str = "bgp_lab_convergence";
/// The kernel route protocol of BGP routes: Starling's own (81), `proto bird` (12) for BIRD.
const STARLING_PROTOCOL: u8 = 81;
const BIRD_PROTOCOL: u8 = 12;
const LIMIT: Duration = Duration::from_secs(600);

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if !requirements::require_root(NAME)
        || !requirements::require_programs(NAME, &["etcd", "bird", "birdc"])
    {
        return;
    }
    let numbers: Vec<u64> = arguments.iter().filter_map(|a| a.parse().ok()).collect();
    let prefixes = numbers.first().copied().unwrap_or(100_000) as usize;
    let idle = Duration::from_secs(numbers.get(1).copied().unwrap_or(100));
    assert!(
        prefixes <= 131_072,
        "at most 131 072 prefixes: the /24s must fit in {}",
        route_monitor::RANGE
    );
    let codec = arguments.iter().any(|argument| argument == "codec");
    let routes = generate_prefixes(prefixes);
    println!("{NAME}: {prefixes} prefixes, idle period {idle:?}");

    let starling = starling_run(&routes, idle, codec);
    let bird = bird_run(&routes, idle, codec);
    for (name, measured) in [("Starling (starling run)", &starling), ("BIRD 2", &bird)] {
        println!(
            "{name}, {}: {}",
            measured.injector,
            measured.describe(prefixes)
        );
    }
    let ratio = |starling: f64, bird: f64| starling / bird.max(f64::MIN_POSITIVE);
    println!(
        "ratios Starling/BIRD: Established to all in kernel {:.2}, RSS growth {:.2} \
         (after idle {:.2}), \
         route writes {:.2}, idle writes {} vs {}, withdraw {:.2}",
        ratio(
            starling.converged.as_secs_f64(),
            bird.converged.as_secs_f64()
        ),
        ratio(starling.rss_growth_kib(), bird.rss_growth_kib()),
        ratio(starling.rss_idle_growth_kib(), bird.rss_idle_growth_kib()),
        ratio(starling.writes.total() as f64, bird.writes.total() as f64),
        starling.idle.total(),
        bird.idle.total(),
        ratio(
            starling.withdrawn.as_secs_f64(),
            bird.withdrawn.as_secs_f64()
        ),
    );
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

/// A one-node `bgp` lab; the injector in the bridge namespace; a BGPPeer to it.
fn starling_run(routes: &[IpNet], idle: Duration, codec: bool) -> Measurement {
    let (options, state, _guard) = bench_lab::up("convbench", 1, Mode::Bgp, 0);
    let names = options.names().expect("lab names");
    let directory = tempfile::tempdir().unwrap();
    let injector_namespace = names.bridge_ns();
    let node_namespace = names.node_ns(1);
    let receiver = state.node_address(1);
    let injector = Injector::prepare(
        codec,
        &injector_namespace,
        directory.path(),
        topology::BRIDGE_ADDRESS,
        receiver,
        routes,
    );
    let pid = state.daemon_pids[0];
    let metric_before = daemon_route_writes(&node_namespace);
    let measured = measure(
        &node_namespace,
        STARLING_PROTOCOL,
        routes.len(),
        idle,
        injector,
        || {
            let peer = json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "BGPPeer",
                "metadata": {"name": "injector", "uid": "b9c1f3a2-0b1e-4c55-9f6e-000000000011",
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"peerIP": topology::BRIDGE_ADDRESS.to_string(), "asNumber": AS},
            });
            lab::etcd::put_all(
                &names,
                &state.etcd_endpoints,
                vec![(
                    "/calico/resources/v3/projectcalico.org/bgppeers/injector".to_string(),
                    peer,
                )],
            )
            .expect("writing the BGPPeer");
            pid
        },
    );
    // The daemon's own count, as a check on the monitor's (it counts every route it writes,
    // the node's own routes too).
    match (metric_before, daemon_route_writes(&node_namespace)) {
        (Some(before), Some(after)) => println!(
            "  Starling's starling_dataplane_writes_total{{object=\"route\"}} grew by {} over \
             the run; the monitor saw {} writes of the benchmark's routes",
            after - before,
            measured.writes.total() + measured.idle.total() + measured.withdraw_writes.total()
        ),
        _ => println!("  Starling's metrics endpoint did not answer"),
    }
    measured
}

/// The daemon's `starling_dataplane_writes_total{object="route"}` from its metrics endpoint
/// (127.0.0.1:9091 in the node namespace, as the lab enables it); None when it does not answer.
fn daemon_route_writes(namespace: &str) -> Option<u64> {
    let text = metrics_scrape::metrics_text(namespace, 9091)?;
    // Absent until the first route write.
    let value =
        metrics_scrape::series_value(&text, "starling_dataplane_writes_total{object=\"route\"}")
            .unwrap_or(0.0);
    Some(value as u64)
}

/// BIRD in namespace 0 of a two-namespace lab, the injector in namespace 1.
fn bird_run(routes: &[IpNet], idle: Duration, codec: bool) -> Measurement {
    let directory = tempfile::tempdir().unwrap();
    let lab = Lab::new("conv", 2);
    let own = Lab::address(0);
    let injector = Injector::prepare(
        codec,
        lab.namespace(1),
        directory.path(),
        Lab::address(1),
        own,
        routes,
    );
    let mut bird = None;
    let measured = measure(
        lab.namespace(0),
        BIRD_PROTOCOL,
        routes.len(),
        idle,
        injector,
        || {
            let protocol = bird_bgp("injector", own, AS, Lab::address(1), AS, "");
            let started = Bird::start(
                lab.namespace(0),
                directory.path(),
                "bird",
                &bird_config(own, &[], &protocol),
            );
            let pid = std::fs::read_to_string(started.socket.with_extension("pid"))
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .expect("BIRD's pid file");
            bird = Some(started);
            pid
        },
    );
    drop(bird);
    measured
}

/// What one receiver run measured.
struct Measurement {
    injector: &'static str,
    converged: Duration,
    rss_before_kib: u64,
    rss_after_kib: u64,
    rss_idle_kib: u64,
    writes: Writes,
    idle: Writes,
    idle_seconds: u64,
    withdrawn: Duration,
    withdraw_writes: Writes,
    overflowed: bool,
}

impl Measurement {
    fn rss_growth_kib(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64
    }

    fn rss_idle_growth_kib(&self) -> f64 {
        self.rss_idle_kib.saturating_sub(self.rss_before_kib) as f64
    }

    fn describe(&self, count: usize) -> String {
        let mib = |kib: u64| kib as f64 / 1024.0;
        format!(
            "Established to all {count} in kernel {:.2} s; RSS {:.1} -> {:.1} MiB (+{:.1}), \
             +{:.1} after the idle period; \
             route writes {} ({} add, {} del; {:.3} per route); {} in {} s idle; \
             withdraw to none in kernel {:.2} s ({} deletes){}",
            self.converged.as_secs_f64(),
            mib(self.rss_before_kib),
            mib(self.rss_after_kib),
            mib(self.rss_after_kib.saturating_sub(self.rss_before_kib)),
            mib(self.rss_idle_kib.saturating_sub(self.rss_before_kib)),
            self.writes.total(),
            self.writes.added,
            self.writes.deleted,
            self.writes.total() as f64 / count.max(1) as f64,
            self.idle.total(),
            self.idle_seconds,
            self.withdrawn.as_secs_f64(),
            self.withdraw_writes.deleted,
            if self.overflowed {
                "; the monitor lost notifications (ENOBUFS): write counts are lower bounds"
            } else {
                ""
            }
        )
    }
}

/// Starts the monitor, runs `start` (tells the receiver to peer; returns its pid), then
/// measures convergence, memory, writes, the idle period and the withdrawal.
fn measure(
    namespace: &str,
    protocol: u8,
    count: usize,
    idle: Duration,
    mut injector: Injector,
    start: impl FnOnce() -> u32,
) -> Measurement {
    let monitor = RouteMonitor::start(namespace, protocol);
    let pid = start();
    let rss_before_kib = proc_status::rss_kib(pid);
    injector.connect();
    let established = injector.wait_established();
    let done = wait_until("all routes in the kernel", || {
        let writes = monitor.writes();
        // The notification count gates the (costly) full kernel listing.
        (monitor.overflowed() || writes.added >= count as u64)
            && route_monitor::kernel_count(namespace, protocol) >= count
    });
    let writes = monitor.writes();
    let rss_after_kib = proc_status::rss_kib(pid);
    std::thread::sleep(idle);
    let idle_writes = monitor.writes().since(writes);
    let rss_idle_kib = proc_status::rss_kib(pid);

    let before_withdraw = monitor.writes();
    let withdraw_started = Instant::now();
    injector.withdraw_all();
    let gone = wait_until("no route left in the kernel", || {
        let deleted = monitor.writes().since(before_withdraw).deleted;
        (monitor.overflowed() || deleted >= count as u64)
            && route_monitor::kernel_count(namespace, protocol) == 0
    });
    Measurement {
        injector: injector.describe(),
        converged: done.saturating_duration_since(established),
        rss_before_kib,
        rss_after_kib,
        rss_idle_kib,
        writes,
        idle: idle_writes,
        idle_seconds: idle.as_secs(),
        withdrawn: gone - withdraw_started,
        withdraw_writes: monitor.writes().since(before_withdraw),
        overflowed: monitor.overflowed(),
    }
}

/// Polls `check` every 10 ms; the instant it first held. Panics after [`LIMIT`].
fn wait_until(what: &str, mut check: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + LIMIT;
    loop {
        if check() {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{what}: not within {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The route source: preloaded gobgpd, or the codec speaker (connects once the receiver was
/// told to peer, announces, withdraws by closing the session).
enum Injector {
    GoBgp(GoBgpInjector),
    Codec {
        namespace: String,
        own: Ipv4Addr,
        receiver: Ipv4Addr,
        routes: Vec<IpNet>,
        established: Option<mpsc::Receiver<Instant>>,
        close: Option<mpsc::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl Injector {
    fn prepare(
        codec: bool,
        namespace: &str,
        directory: &Path,
        own: Ipv4Addr,
        receiver: Ipv4Addr,
        routes: &[IpNet],
    ) -> Injector {
        if !codec {
            match GoBgpInjector::preload(namespace, directory, own, AS, receiver, routes) {
                Ok(injector) => return Injector::GoBgp(injector),
                Err(error) => println!("  GoBGP injector unavailable ({error}); codec injector"),
            }
        }
        Injector::Codec {
            namespace: namespace.to_string(),
            own,
            receiver,
            routes: routes.to_vec(),
            established: None,
            close: None,
            thread: None,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Injector::GoBgp(_) => "GoBGP injector (MRT-preloaded)",
            Injector::Codec { .. } => "codec injector (withdraws by closing the session)",
        }
    }

    /// The codec speaker connects now (gobgpd is passive: the receiver connects to it).
    fn connect(&mut self) {
        let Injector::Codec {
            namespace,
            own,
            receiver,
            routes,
            established,
            close,
            thread,
        } = self
        else {
            return;
        };
        let (established_sender, established_receiver) = mpsc::channel();
        let (close_sender, close_receiver) = mpsc::channel::<()>();
        let (namespace, own, receiver) = (namespace.clone(), *own, *receiver);
        let routes = std::mem::take(routes);
        *thread = Some(std::thread::spawn(move || {
            starling::netns::run_in(&namespace, move || {
                let mut peer = MiniPeer::connect(own, receiver);
                let _ = established_sender.send(Instant::now());
                drain(MiniPeer {
                    reader: BufReader::new(peer.reader.get_ref().try_clone().unwrap()),
                    writer: BufWriter::new(peer.writer.get_ref().try_clone().unwrap()),
                    buffer: std::mem::take(&mut peer.buffer),
                });
                peer.announce(own, &routes);
                let _ = close_receiver.recv();
                let _ = peer.writer.get_ref().shutdown(std::net::Shutdown::Both);
            })
            .unwrap();
        }));
        *established = Some(established_receiver);
        *close = Some(close_sender);
    }

    fn wait_established(&mut self) -> Instant {
        match self {
            Injector::GoBgp(injector) => {
                wait_until("session Established", || injector.established())
            }
            Injector::Codec { established, .. } => established
                .as_ref()
                .and_then(|receiver| receiver.recv_timeout(LIMIT).ok())
                .expect("the codec injector's session"),
        }
    }

    fn withdraw_all(&mut self) {
        match self {
            Injector::GoBgp(injector) => injector.withdraw_all(),
            Injector::Codec { close, thread, .. } => {
                if let Some(sender) = close.take() {
                    let _ = sender.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}
