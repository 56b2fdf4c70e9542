//! The real daemon as a BGP route reflector for 100 clients, against BIRD 2 as reflector in the
//! same run (root, etcd, BIRD needed; prints why it skips otherwise).
//!
//! Starling is `starling run` as `starling lab` starts it: a one-node `bgp-rr` lab, where node1
//! carries `routeReflectorClusterID` 224.0.0.1. The benchmark writes 100 global BGPPeers (its
//! clients, iBGP, no cluster id of their own) into the lab's etcd, so each becomes an `rr client`
//! of node1 (calico.md §6.3), plus an IPPool covering the clients' prefixes with a node selector
//! matching no node: a Calico reflector passes on only routes inside some pool (§6.5 rule 8), and
//! the pool keeps IPAM away. The clients are the benchmark's codec speakers
//! (`support/codec_peer.rs`) in the lab's bridge namespace, each from its own address
//! 192.0.2.101..=200 on `br0`. BIRD runs in namespace 0 of a two-namespace lab with 100
//! `rr client; rr cluster id 224.0.0.1;` sessions, the clients in namespace 1 (10.77.0.101..=200).
//! Both reflectors also install what they learn into their kernel (Starling's dataplane,
//! BIRD's kernel protocol).
//!
//! Workload: all clients connect and wait until the reflector reports every session
//! Established; then all announce K distinct /24s of their own at once. Measured from just
//! before the announcements until every client holds the 99·K prefixes of the others (each
//! client counts distinct prefixes on a reader thread of its own), the time the first client
//! was complete, and the reflector's VmRSS before the announcements and when all are complete.
//!
//! Run: `cargo bench --bench bgp_reflector_lab [-- K]` (default K = 100; release build: the
//! lab's daemon is this build's `starling`).

#[path = "support/bench_lab.rs"]
mod bench_lab;
#[path = "../tests/support/bgp_daemons.rs"]
mod bgp_daemons;
#[path = "../tests/support/bgp_peers.rs"]
mod bgp_peers;
#[allow(dead_code)] // the fallback injector's half is the other benchmarks'
#[path = "support/codec_peer.rs"]
mod codec_peer;
#[path = "support/proc_status.rs"]
mod proc_status;
#[path = "../tests/support/requirements.rs"]
mod requirements;

use std::io::{BufReader, BufWriter};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bgp_daemons::{bird_bgp, bird_config, Bird};
use bgp_peers::Lab;
use codec_peer::MiniPeer;
use ipnet::{IpNet, Ipv4Net};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};
use serde_json::json;
use starling::lab::{self, daemons::NodeFiles, resources, topology, Mode};
use starling_bgp::codec::Message;

/// The lab's cluster AS; `codec_peer` speaks as `crate::AS`.
const AS: u32 = resources::CLUSTER_AS;
const NAME: &str = "bgp_reflector_lab";
const CLIENTS: usize = 100;
/// First client address's last octet, in both labs (clear of the nodes and BIRD's lab peers).
const FIRST_CLIENT: u8 = 101;
/// The clients' prefixes are /24s from here; the extra pool is this /8.
const PREFIX_BASE: Ipv4Addr = Ipv4Addr::new(20, 0, 0, 0);
const POOL_CIDR: &str = "20.0.0.0/8";
const LIMIT: Duration = Duration::from_secs(300);
/// A client that hears nothing for this long gives up (the reflector stopped sending).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if !requirements::require_root(NAME)
        || !requirements::require_programs(NAME, &["etcd", "bird", "birdc"])
    {
        return;
    }
    let per_client = arguments
        .iter()
        .find_map(|argument| argument.parse::<usize>().ok())
        .unwrap_or(100);
    assert!(
        (1..=65_536 / CLIENTS).contains(&per_client),
        "K must be 1..={}: {CLIENTS}·K /24s must fit in {POOL_CIDR}",
        65_536 / CLIENTS
    );
    let workload = Workload { per_client };
    println!(
        "{NAME}: {CLIENTS} clients, {per_client} prefixes each; every client expects {}",
        workload.expected()
    );

    let starling = starling_run(&workload);
    let bird = bird_run(&workload);
    for (name, measured) in [("Starling (starling run)", &starling), ("BIRD 2", &bird)] {
        println!("{name} reflector: {}", measured.describe(&workload));
    }
    let ratio = |starling: f64, bird: f64| starling / bird.max(f64::MIN_POSITIVE);
    println!(
        "ratios Starling/BIRD: time to all clients complete {:.2}, first client complete {:.2}, \
         RSS growth {:.2}, RSS when complete {:.2}",
        ratio(starling.all.as_secs_f64(), bird.all.as_secs_f64()),
        ratio(starling.first.as_secs_f64(), bird.first.as_secs_f64()),
        ratio(starling.rss_growth_kib(), bird.rss_growth_kib()),
        ratio(starling.rss_after_kib as f64, bird.rss_after_kib as f64),
    );
}

/// Who announces what: client `i` owns prefix indices `i·K .. (i+1)·K`.
struct Workload {
    per_client: usize,
}

impl Workload {
    /// Prefixes every client must receive: all the others'.
    fn expected(&self) -> usize {
        (CLIENTS - 1) * self.per_client
    }

    fn total(&self) -> usize {
        CLIENTS * self.per_client
    }

    fn prefix(index: usize) -> IpNet {
        let base = u32::from(PREFIX_BASE) + (index as u32) * 256;
        IpNet::V4(Ipv4Net::new(Ipv4Addr::from(base), 24).expect("a /24 is valid"))
    }

    fn routes_of(&self, client: usize) -> Vec<IpNet> {
        (client * self.per_client..(client + 1) * self.per_client)
            .map(Workload::prefix)
            .collect()
    }

    /// The prefix's index, when it is one of the benchmark's.
    fn index_of(&self, prefix: &IpNet) -> Option<usize> {
        let IpNet::V4(net) = prefix else { return None };
        let offset = u32::from(net.addr()).checked_sub(u32::from(PREFIX_BASE))?;
        let index = (offset / 256) as usize;
        (net.prefix_len() == 24 && offset % 256 == 0 && index < self.total()).then_some(index)
    }
}

/// Client addresses: `a.b.c.101 ..= a.b.c.200` on the /24 of `subnet_member`.
fn client_addresses(subnet_member: Ipv4Addr) -> Vec<Ipv4Addr> {
    let [a, b, c, _] = subnet_member.octets();
    (0..CLIENTS)
        .map(|index| Ipv4Addr::new(a, b, c, FIRST_CLIENT + index as u8))
        .collect()
}

/// A one-node `bgp-rr` lab; the clients in its bridge namespace; 100 BGPPeers to them.
fn starling_run(workload: &Workload) -> Measurement {
    let (options, state, _guard) = bench_lab::up("rrbench", 1, Mode::BgpRr, 0);
    let names = options.names().expect("lab names");
    let bridge = names.bridge_ns();
    let reflector = state.node_address(1);
    let addresses = client_addresses(topology::BRIDGE_ADDRESS);
    for address in &addresses {
        // br0 holds the node subnet's gateway address in the bridge namespace.
        topology::ip(&[
            "-n",
            &bridge,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "br0",
        ])
        .expect("adding a client address to the bridge namespace");
    }

    // The pool first, so it is in the daemon's state before any session exists.
    let (pool_key, mut pool) = resources::pool("rr-bench", POOL_CIDR, Mode::BgpRr, "!all()");
    pool["spec"]["natOutgoing"] = json!(false);
    lab::etcd::put_all(&names, &state.etcd_endpoints, vec![(pool_key, pool)])
        .expect("writing the benchmark's IPPool");
    let peers = addresses
        .iter()
        .enumerate()
        .map(|(index, address)| {
            let name = format!("rr-client-{index}");
            let peer = json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "BGPPeer",
                "metadata": {"name": name,
                             "uid": format!("b9c1f3a2-0b1e-4c55-9f6e-{:012x}", 0x100 + index),
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {"peerIP": address.to_string(), "asNumber": AS},
            });
            (
                format!("/calico/resources/v3/projectcalico.org/bgppeers/{name}"),
                peer,
            )
        })
        .collect();
    lab::etcd::put_all(&names, &state.etcd_endpoints, peers).expect("writing the BGPPeers");

    let socket = NodeFiles::new(&options.state_dir(), 1).control_socket();
    let established = || {
        lab::node_status(&socket).map_or(0, |status| {
            status
                .peers
                .iter()
                .filter(|peer| {
                    peer.state == "up"
                        && matches!(peer.address, IpAddr::V4(v4) if addresses.contains(&v4))
                })
                .count()
        })
    };
    measure(
        workload,
        &bridge,
        &addresses,
        reflector,
        established,
        state.daemon_pids[0],
    )
}

/// BIRD in namespace 0 of a two-namespace lab, the clients in namespace 1.
fn bird_run(workload: &Workload) -> Measurement {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let lab = Lab::new("rrlab", 2);
    let own = Lab::address(0);
    let addresses = client_addresses(own);
    for address in &addresses {
        bgp_peers::run(
            "ip",
            &[
                "-n",
                lab.namespace(1),
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ],
        );
    }
    let extra = format!(
        "passive on; rr client; rr cluster id {};",
        resources::REFLECTOR_CLUSTER_ID
    );
    let protocols: String = addresses
        .iter()
        .enumerate()
        .map(|(index, address)| bird_bgp(&format!("client{index}"), own, AS, *address, AS, &extra))
        .collect();
    let bird = Bird::start(
        lab.namespace(0),
        directory.path(),
        "bird",
        &bird_config(own, &[], &protocols),
    );
    let pid = std::fs::read_to_string(bird.socket.with_extension("pid"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .expect("BIRD's pid file");
    let established = || {
        bird.try_command("show protocols").map_or(0, |text| {
            text.lines()
                .filter(|line| line.starts_with("client") && line.contains("Established"))
                .count()
        })
    };
    let measured = measure(
        workload,
        lab.namespace(1),
        &addresses,
        own,
        established,
        pid,
    );
    drop(bird);
    measured
}

/// What one reflector run measured.
struct Measurement {
    /// From just before the announcements until the last client was complete.
    all: Duration,
    first: Duration,
    rss_before_kib: u64,
    rss_after_kib: u64,
    /// Own prefixes the reflector sent back to their originator (not counted).
    echoes: usize,
}

impl Measurement {
    fn rss_growth_kib(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64
    }

    fn describe(&self, workload: &Workload) -> String {
        let mib = |kib: u64| kib as f64 / 1024.0;
        format!(
            "all {CLIENTS} clients had the {} others' prefixes after {:.2} s (first {:.2} s); \
             RSS {:.1} -> {:.1} MiB (+{:.1}){}",
            workload.expected(),
            self.all.as_secs_f64(),
            self.first.as_secs_f64(),
            mib(self.rss_before_kib),
            mib(self.rss_after_kib),
            mib(self.rss_after_kib.saturating_sub(self.rss_before_kib)),
            if self.echoes > 0 {
                format!(
                    "; {} own prefixes were sent back to their originators",
                    self.echoes
                )
            } else {
                String::new()
            }
        )
    }
}

/// What one client's reader saw.
struct Received {
    complete: Option<Instant>,
    distinct: usize,
    echoes: usize,
    /// Kept so the session stays up until every client is done.
    peer: MiniPeer,
}

/// Connects every client, waits until `established` (the reflector's own count) reaches
/// [`CLIENTS`], then lets all announce at once and times their completion.
fn measure(
    workload: &Workload,
    namespace: &str,
    addresses: &[Ipv4Addr],
    reflector: Ipv4Addr,
    mut established: impl FnMut() -> usize,
    pid: u32,
) -> Measurement {
    let peers = connect_all(namespace, addresses, reflector);
    let deadline = Instant::now() + LIMIT;
    loop {
        let count = established();
        if count >= CLIENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {count} of {CLIENTS} sessions Established on the reflector within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_before_kib = proc_status::rss_kib(pid);

    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for (client, peer) in peers.into_iter().enumerate() {
        // The writer gets fresh buffers on the same socket; the reader keeps the handshake's
        // BufReader, which may already hold the start of the reflector's updates.
        let stream = peer.writer.get_ref();
        let mut writer = MiniPeer {
            reader: BufReader::new(stream.try_clone().expect("cloning a client socket")),
            writer: BufWriter::with_capacity(
                1 << 20,
                stream.try_clone().expect("cloning a client socket"),
            ),
            buffer: Vec::new(),
        };
        let own = addresses[client];
        let routes = workload.routes_of(client);
        let start = Arc::clone(&barrier);
        writers.push(std::thread::spawn(move || {
            start.wait();
            writer.announce(own, &routes);
            writer
        }));
        let per_client = workload.per_client;
        readers.push(std::thread::spawn(move || {
            count_others(Workload { per_client }, client, peer)
        }));
    }
    let begin = Instant::now();
    barrier.wait();
    let received: Vec<Received> = readers
        .into_iter()
        .map(|reader| reader.join().expect("a client reader panicked"))
        .collect();
    let rss_after_kib = proc_status::rss_kib(pid);
    let writers: Vec<MiniPeer> = writers
        .into_iter()
        .map(|writer| writer.join().expect("a client writer panicked"))
        .collect();

    let incomplete: Vec<(usize, usize)> = received
        .iter()
        .enumerate()
        .filter(|(_, seen)| seen.complete.is_none())
        .map(|(client, seen)| (client, seen.distinct))
        .collect();
    assert!(
        incomplete.is_empty(),
        "{} clients never got all {} prefixes (client, distinct received): {:?}",
        incomplete.len(),
        workload.expected(),
        &incomplete[..incomplete.len().min(10)]
    );
    let times = received.iter().filter_map(|seen| seen.complete);
    let last = times.clone().max().expect("at least one client");
    let first = times.min().expect("at least one client");
    let echoes = received.iter().map(|seen| seen.echoes).sum();
    // Close every session only now: an early close would make the reflector withdraw.
    drop(writers);
    drop(
        received
            .into_iter()
            .map(|seen| seen.peer)
            .collect::<Vec<_>>(),
    );
    Measurement {
        all: last - begin,
        first: first - begin,
        rss_before_kib,
        rss_after_kib,
        echoes,
    }
}

/// Reads UPDATEs until the client holds every other client's prefixes (or the session ends).
fn count_others(workload: Workload, client: usize, mut peer: MiniPeer) -> Received {
    let mut seen = vec![false; workload.total()];
    let (mut distinct, mut echoes) = (0, 0);
    let expected = workload.expected();
    while distinct < expected {
        match peer.receive() {
            Some(Message::Update(update)) => {
                for prefix in update.announced() {
                    let Some(index) = workload.index_of(&prefix) else {
                        continue;
                    };
                    if index / workload.per_client == client {
                        echoes += 1;
                    } else if !seen[index] {
                        seen[index] = true;
                        distinct += 1;
                    }
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    Received {
        complete: (distinct == expected).then(Instant::now),
        distinct,
        echoes,
        peer,
    }
}

/// Every client's session, each from its own address inside `namespace`, all in parallel.
fn connect_all(namespace: &str, addresses: &[Ipv4Addr], reflector: Ipv4Addr) -> Vec<MiniPeer> {
    let threads: Vec<_> = addresses
        .iter()
        .map(|own| {
            let (namespace, own) = (namespace.to_string(), *own);
            std::thread::spawn(move || {
                starling::netns::run_in(&namespace, || connect_from(own, reflector))
                    .expect("entering the clients' namespace")
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|thread| thread.join().expect("a client failed to connect"))
        .collect()
}

/// Connects from `own` (the reflector knows its peers by source address), retrying until the
/// reflector takes the session: it refuses peers it has not been configured with yet.
fn connect_from(own: Ipv4Addr, target: Ipv4Addr) -> MiniPeer {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(peer) = try_connect_from(own, target) {
            return peer;
        }
        assert!(
            Instant::now() < deadline,
            "no session from {own} to {target}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One attempt: OPEN both ways, our KEEPALIVE, and the reflector's KEEPALIVE (so its side has
/// accepted the OPEN; it is Established once ours arrives).
fn try_connect_from(own: Ipv4Addr, target: Ipv4Addr) -> Option<MiniPeer> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(own, 0))).ok()?;
    socket::connect(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(target, 179)),
    )
    .ok()?;
    let stream = TcpStream::from(fd);
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    stream.set_nodelay(true).ok()?;
    // codec_peer's OPEN has hold time 240 s: the clients send no keepalives later, and the
    // run is far shorter.
    let mut peer = MiniPeer::handshake(stream, own)?;
    match peer.receive()? {
        Message::Keepalive => Some(peer),
        _ => None,
    }
}
