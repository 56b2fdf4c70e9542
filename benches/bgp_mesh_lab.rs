//! Full-mesh convergence of the real daemon against BIRD 2 in the same run and the same
//! namespaces (root, etcd and bird needed; prints why it skips otherwise).
//!
//! `starling lab up --mode bgp --nodes N --pods-per-node 1` builds the cluster: N node
//! namespaces on one bridge, a private etcd, one `starling run` per node, one pod per node, so
//! every node owns one /26 block. The measured event is a cold start of the whole mesh with
//! that state in the datastore: every daemon is stopped, the block routes they learned are
//! flushed from every kernel, and all N daemons start at once. Then the same namespaces run
//! BIRD instead, configured as calico-node configures it (one iBGP session to every other
//! node, the higher address passive by Calico's string comparison, connect delay 2 s, graceful
//! restart, only BGP routes exported to the kernel), each node originating one /26 blackhole,
//! and all N start at once.
//!
//! Measured for each, with a netlink monitor in every node namespace counting that daemon's
//! routes (protocol 81 for Starling, `bird` for BIRD) under 10.240.0.0/12:
//! - time from the start until every node holds the N−1 block routes of the others (and the
//!   median node's time);
//! - each daemon's VmRSS at that moment and after the idle period; CPU seconds each used;
//! - route writes per node until then (N−1 is the minimum) and during IDLE seconds after.
//!
//! Run: `cargo bench --bench bgp_mesh_lab [-- NODES [IDLE_SECONDS]]` (default 200 nodes, 30 s
//! idle; release build: the lab's daemons are this build's `starling`). A mesh above ~30
//! nodes needs the host's shared ARP table raised; `lab up` does that and `lab down` restores
//! it (src/lab/neighbours.rs).

#[path = "support/bench_lab.rs"]
mod bench_lab;
#[path = "../tests/support/metrics_scrape.rs"]
mod metrics_scrape;
#[path = "support/proc_status.rs"]
mod proc_status;
#[path = "../tests/support/requirements.rs"]
mod requirements;
#[allow(dead_code)] // the receiver benchmark's counting half
#[path = "support/route_monitor.rs"]
mod route_monitor;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use route_monitor::RouteMonitor;
use starling::lab::{self, daemons, LabOptions, LabState, Mode};

const NAME: &str = "bgp_mesh_lab";
const AS: u32 = 64512;
/// The kernel route protocol of BGP routes: Starling's own (81), `proto bird` (12) for BIRD.
const STARLING_PROTOCOL: u8 = 81;
const BIRD_PROTOCOL: u8 = 12;
/// Holds the lab's pool (10.244.0.0/16) and BIRD's stand-in blocks (10.250.<i>.0/26).
const RANGE: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 240, 0, 0), 12);
const RANGE_TEXT: &str = "10.240.0.0/12";
/// Blocks are /26s; a node's own block is a blackhole and its pods' routes are /32s, so the
/// count of unicast /26s is the count of other nodes' blocks.
const BLOCK_LENGTH: u8 = 26;
const LIMIT: Duration = Duration::from_secs(900);

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if !requirements::require_root(NAME)
        || !requirements::require_programs(NAME, &["etcd", "bird", "ip"])
    {
        return;
    }
    let numbers: Vec<u64> = arguments.iter().filter_map(|a| a.parse().ok()).collect();
    let nodes = numbers.first().copied().unwrap_or(200) as usize;
    let idle = Duration::from_secs(numbers.get(1).copied().unwrap_or(30));
    assert!(
        (2..=lab::topology::MAX_NODES).contains(&nodes),
        "NODES must be 2..={}",
        lab::topology::MAX_NODES
    );
    println!("{NAME}: {nodes}-node full mesh, idle period {idle:?}");

    let (options, mut state, _guard) = bench_lab::up("meshbench", nodes, Mode::Bgp, 1);
    let names = options.names().expect("lab names");
    let namespaces: Vec<String> = (1..=nodes).map(|index| names.node_ns(index)).collect();

    let starling = starling_run(&options, &mut state, &namespaces, idle);
    stop_all(&state.daemon_pids);
    let bird = bird_run(&state, &namespaces, idle);

    for (name, measured) in [("Starling (starling run)", &starling), ("BIRD 2", &bird)] {
        println!("{name}: {}", measured.describe(nodes));
    }
    let ratio = |starling: f64, bird: f64| {
        if bird > 0.0 {
            format!("{:.2}", starling / bird)
        } else {
            "- (BIRD measured 0)".to_string()
        }
    };
    println!(
        "ratios Starling/BIRD: every node converged {} (median node {}), RSS per daemon \
         {} (max {}), CPU per daemon {}, route writes {}, idle writes {} vs {}",
        ratio(starling.last.as_secs_f64(), bird.last.as_secs_f64()),
        ratio(starling.median.as_secs_f64(), bird.median.as_secs_f64()),
        ratio(median(&starling.rss_kib), median(&bird.rss_kib)),
        ratio(max(&starling.rss_kib), max(&bird.rss_kib)),
        ratio(starling.cpu_seconds_median(), bird.cpu_seconds_median()),
        ratio(
            starling.writes.iter().sum::<u64>() as f64,
            bird.writes.iter().sum::<u64>() as f64
        ),
        starling.idle_writes.iter().sum::<u64>(),
        bird.idle_writes.iter().sum::<u64>(),
    );
}

/// Stops the lab's daemons, flushes what they learned, starts them all again and measures.
fn starling_run(
    options: &LabOptions,
    state: &mut LabState,
    namespaces: &[String],
    idle: Duration,
) -> Measurement {
    stop_all(&state.daemon_pids);
    flush(namespaces, STARLING_PROTOCOL);
    let names = options.names().expect("lab names");
    let state_dir = options.state_dir();
    let measured = measure(namespaces, STARLING_PROTOCOL, idle, || {
        let pids: Vec<u32> = (1..=namespaces.len())
            .map(|index| {
                daemons::start(&names, &state_dir, &state.binary, state, index)
                    .expect("starting a daemon")
            })
            .collect();
        state.daemon_pids = pids.clone();
        state.save(&state_dir).expect("saving the lab state");
        pids
    });
    // How often the first and the last node recomputed their desired state over the run.
    for namespace in [&namespaces[0], &namespaces[namespaces.len() - 1]] {
        let count = metrics_scrape::metrics_text(namespace, 9091).and_then(|text| {
            metrics_scrape::series_value(&text, "starling_desired_compute_seconds_count")
        });
        match count {
            Some(count) => println!("  {namespace}: {count} desired-state computations"),
            None => println!("  {namespace}: the metrics endpoint did not answer"),
        }
    }
    measured
}

/// BIRD in every node namespace, configured as calico-node's confd renders a full mesh.
fn bird_run(state: &LabState, namespaces: &[String], idle: Duration) -> Measurement {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let addresses: Vec<Ipv4Addr> = (1..=namespaces.len())
        .map(|index| state.node_address(index))
        .collect();
    let configs: Vec<PathBuf> = (0..namespaces.len())
        .map(|node| {
            let path = directory.path().join(format!("node{}.conf", node + 1));
            std::fs::write(&path, bird_mesh_config(node, &addresses)).expect("writing a config");
            path
        })
        .collect();
    let measured = measure(namespaces, BIRD_PROTOCOL, idle, || {
        let children: Vec<_> = namespaces
            .iter()
            .zip(&configs)
            .map(|(namespace, config)| {
                let socket = config.with_extension("ctl");
                Command::new("ip")
                    .args(["netns", "exec", namespace, "bird", "-c"])
                    .arg(config)
                    .arg("-s")
                    .arg(&socket)
                    .arg("-P")
                    .arg(socket.with_extension("pid"))
                    .spawn()
                    .expect("starting bird")
            })
            .collect();
        for mut child in children {
            let status = child.wait().expect("waiting for bird to detach");
            assert!(status.success(), "bird refused its configuration: {status}");
        }
        configs
            .iter()
            .map(|config| bird_pid(&config.with_extension("pid")))
            .collect()
    });
    stop_all(&measured.pids);
    measured
}

/// BIRD's pid file, once the detached daemon has written it.
fn bird_pid(path: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Node `node`'s (0-based) BIRD configuration: its /26 and a session to every other node.
fn bird_mesh_config(node: usize, addresses: &[Ipv4Addr]) -> String {
    let own = addresses[node];
    let mut config = format!(
        "router id {own};
protocol device {{ scan time 10; }}
protocol kernel {{ ipv4 {{ import none; export filter {{ if source = RTS_BGP then accept; reject; }}; }}; graceful restart on; }}
protocol static {{ ipv4; route 10.250.{}.0/26 blackhole; }}
template bgp mesh {{
  local {own} as {AS};
  direct; connect delay time 2; connect retry time 5; error wait time 5, 30;
  graceful restart on;
  ipv4 {{ import all; export filter {{ if source = RTS_STATIC then accept; reject; }}; next hop self; }};
}}
",
        node + 1
    );
    for (index, peer) in addresses.iter().enumerate() {
        if index == node {
            continue;
        }
        // Calico's mesh rule: the side whose peer has the greater address, as a string, waits.
        let passive = if peer.to_string() > own.to_string() {
            " passive on;"
        } else {
            ""
        };
        config.push_str(&format!(
            "protocol bgp Mesh_{} from mesh {{ neighbor {peer} as {AS};{passive} }}\n",
            peer.to_string().replace('.', "_")
        ));
    }
    config
}

/// What one mesh start measured, per node where it says so.
struct Measurement {
    pids: Vec<u32>,
    /// Until every node held every other node's block / the median node did.
    last: Duration,
    median: Duration,
    rss_kib: Vec<u64>,
    rss_idle_kib: Vec<u64>,
    cpu_ticks: Vec<u64>,
    writes: Vec<u64>,
    idle_writes: Vec<u64>,
    idle_seconds: u64,
    overflowed: bool,
}

impl Measurement {
    fn cpu_seconds_median(&self) -> f64 {
        median(&self.cpu_ticks) / clock_ticks()
    }

    fn describe(&self, nodes: usize) -> String {
        let mib = |kib: f64| kib / 1024.0;
        let needed = (nodes - 1) as u64;
        format!(
            "every node holds all {needed} other blocks after {:.2} s (median node {:.2} s); \
             RSS per daemon median {:.1} MiB, max {:.1} MiB (after {} s idle: median {:.1}, max \
             {:.1}); CPU per daemon until then median {:.2} s, max {:.2} s, all daemons {:.1} s; \
             route writes per node min {} max {} (needed {needed}); {} in the idle period{}",
            self.last.as_secs_f64(),
            self.median.as_secs_f64(),
            mib(median(&self.rss_kib)),
            mib(max(&self.rss_kib)),
            self.idle_seconds,
            mib(median(&self.rss_idle_kib)),
            mib(max(&self.rss_idle_kib)),
            self.cpu_seconds_median(),
            max(&self.cpu_ticks) / clock_ticks(),
            self.cpu_ticks.iter().sum::<u64>() as f64 / clock_ticks(),
            self.writes.iter().min().copied().unwrap_or(0),
            self.writes.iter().max().copied().unwrap_or(0),
            self.idle_writes.iter().sum::<u64>(),
            if self.overflowed {
                "; a monitor lost notifications (ENOBUFS): write counts are lower bounds"
            } else {
                ""
            }
        )
    }
}

/// Starts a monitor per node, runs `start` (starts every node's daemon; returns their pids in
/// node order), then waits until every node holds the others' blocks and for the idle period.
fn measure(
    namespaces: &[String],
    protocol: u8,
    idle: Duration,
    start: impl FnOnce() -> Vec<u32>,
) -> Measurement {
    let needed = (namespaces.len() - 1) as u64;
    let monitors: Vec<RouteMonitor> = namespaces
        .iter()
        .map(|namespace| RouteMonitor::start_in(namespace, protocol, RANGE, Some(BLOCK_LENGTH)))
        .collect();
    let started = Instant::now();
    let pids = start();
    let mut converged: Vec<Option<Duration>> = vec![None; namespaces.len()];
    let mut rss_kib = vec![0; namespaces.len()];
    let deadline = started + LIMIT;
    while converged.iter().any(Option::is_none) {
        for (node, monitor) in monitors.iter().enumerate() {
            if converged[node].is_none() && monitor.present() >= needed {
                converged[node] = Some(started.elapsed());
                rss_kib[node] = proc_status::rss_kib(pids[node]);
            }
        }
        if Instant::now() > deadline {
            let waiting: Vec<String> = converged
                .iter()
                .zip(&monitors)
                .enumerate()
                .filter(|(_, (done, _))| done.is_none())
                .map(|(node, (_, monitor))| format!("node{} ({})", node + 1, monitor.present()))
                .collect();
            panic!(
                "not converged within {LIMIT:?}; still waiting for {} nodes: {}",
                waiting.len(),
                waiting.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu_ticks: Vec<u64> = pids.iter().map(|pid| cpu_ticks(*pid)).collect();
    let writes: Vec<u64> = monitors.iter().map(|m| m.writes().total()).collect();
    // The monitors saw the routes arrive; the kernel's own listing confirms they are all there.
    for (namespace, monitor) in namespaces.iter().zip(&monitors) {
        let listed = kernel_count(namespace, protocol);
        assert_eq!(
            listed,
            needed as usize,
            "{namespace}: the kernel lists {listed} block routes, the monitor counted {}",
            monitor.present()
        );
    }
    std::thread::sleep(idle);
    let idle_writes = monitors
        .iter()
        .zip(&writes)
        .map(|(monitor, before)| monitor.writes().total() - before)
        .collect();
    let mut durations: Vec<Duration> = converged.into_iter().flatten().collect();
    durations.sort();
    Measurement {
        rss_idle_kib: pids.iter().map(|pid| proc_status::rss_kib(*pid)).collect(),
        pids,
        last: durations.last().copied().unwrap_or_default(),
        median: durations[durations.len() / 2],
        rss_kib,
        cpu_ticks,
        writes,
        idle_writes,
        idle_seconds: idle.as_secs(),
        overflowed: monitors.iter().any(RouteMonitor::overflowed),
    }
}

/// Stops every process in `pids` at once (each gets its own grace period).
fn stop_all(pids: &[u32]) {
    std::thread::scope(|scope| {
        for pid in pids {
            scope.spawn(move || daemons::stop(*pid, Duration::from_secs(10)));
        }
    });
}

/// Removes the routes of `protocol` under the benchmark's range from every node's kernel.
fn flush(namespaces: &[String], protocol: u8) {
    for namespace in namespaces {
        let status = Command::new("ip")
            .args(["-n", namespace, "route", "flush", "proto"])
            .arg(protocol.to_string())
            .args(["root", RANGE_TEXT])
            .status()
            .expect("running ip route flush");
        assert!(status.success(), "{namespace}: ip route flush failed");
        assert_eq!(
            kernel_count(namespace, protocol),
            0,
            "{namespace}: not flushed"
        );
    }
}

/// Other nodes' block routes of `protocol` in the namespace's main table: unicast /26s under
/// the benchmark's range with a gateway.
fn kernel_count(namespace: &str, protocol: u8) -> usize {
    let output = Command::new("ip")
        .args(["-n", namespace, "route", "show", "proto"])
        .arg(protocol.to_string())
        .args(["root", RANGE_TEXT, "type", "unicast"])
        .output()
        .expect("running ip route show");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains(&format!("/{BLOCK_LENGTH} via ")))
        .count()
}

/// utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The command name may hold spaces; the fields after it are plain.
            let after_name = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = after_name.split(' ').collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn median(values: &[u64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0) as f64
}

fn max(values: &[u64]) -> f64 {
    values.iter().max().copied().unwrap_or(0) as f64
}
