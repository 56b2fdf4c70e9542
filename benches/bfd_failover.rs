//! Node failure detection in a BGP lab, with BFD and without, in the same run (root and etcd
//! needed; prints why it skips otherwise). The real daemons: `starling lab` with 3 nodes in
//! `bgp` mode (full mesh), one `starling run` per node namespace.
//!
//! Measured: the time from pulling node3's cable (its port on the lab bridge set down; its
//! daemon keeps running and is not told) until node1's and node2's kernels have no route via
//! node3 left, polled every 5 ms.
//!
//! 1. BFD on the mesh: `starling/bfd-interval: 100ms` (multiplier 3) on the default
//!    BGPConfiguration; RUNS cuts (default 5), the cable put back and BFD Up again in between.
//! 2. Without BFD: the annotation removed, one cut. Calico's resources cannot set the hold time
//!    (`keepaliveTime` sets only the keepalive; BIRD's and Starling's hold time stays 240 s), so
//!    this waits for the hold timer: 240 s, plus the graceful restart time during which the
//!    stale routes stay, which the run sets to 1 s (`nodeMeshMaxRestartTime`; the default
//!    120 s would add two minutes). `quick` skips this part.
//!
//! Run: `cargo bench --profile dev --bench bfd_failover [-- RUNS] [-- quick]`
//! (`--profile dev`: the lab's daemons then run the dev build, as `scripts/lab.sh` does).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use starling::lab::{self, failover, resources, topology, LabOptions, LabState, Mode, UpArgs};

const NODES: usize = 3;
const CUT: usize = 3;
const OBSERVERS: [usize; 2] = [1, 2];

/// Brings the lab down also when the benchmark panics.
struct LabGuard(LabOptions);

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Err(error) = lab::down(&self.0) {
            eprintln!("bfd_failover: lab down failed: {error:#}");
        }
    }
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if unsafe { libc::geteuid() } != 0 {
        println!("skipping bfd_failover: needs root (network namespaces)");
        return;
    }
    if !program_in_path("etcd") {
        println!("skipping bfd_failover: etcd is not installed (scripts/deps.sh installs it)");
        return;
    }
    let runs: usize = arguments
        .iter()
        .find_map(|argument| argument.parse().ok())
        .unwrap_or(5);
    let quick = arguments.iter().any(|argument| argument == "quick");

    let options = LabOptions {
        name: "bfdbench".to_string(),
        state_dir: Some(std::env::temp_dir().join("starling-lab-bfdbench")),
    };
    let args = UpArgs {
        nodes: NODES,
        mode: Mode::Bgp,
        pods_per_node: 1,
        subnets: None,
        etcd_endpoints: None,
        ipv6: false,
        starling_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_starling"))),
    };
    let state = lab::up(&options, &args).expect("lab up");
    let _guard = LabGuard(options.clone());
    let bench = Bench {
        names: options.names().expect("lab names"),
        sockets: (1..=NODES)
            .map(|node| lab::daemons::NodeFiles::new(&options.state_dir(), node).control_socket())
            .collect(),
        state,
        gateway: topology::node_address(CUT),
    };

    bench.configure(Some("100ms"));
    println!(
        "bfd_failover: {NODES}-node bgp lab, node{CUT}'s cable pulled, BFD 100 ms x 3 on the mesh"
    );
    let mut with_bfd = Vec::new();
    for run in 1..=runs {
        let took = bench.cut_and_time(Duration::from_secs(30), Some("Up"));
        println!("  with BFD, run {run}: routes gone from node1/node2 after {took:?}");
        with_bfd.push(took);
    }
    with_bfd.sort();
    let median = with_bfd[with_bfd.len() / 2];
    println!(
        "with BFD (100 ms x 3, detection 300 ms): median {median:?}, min {:?}, max {:?} over {runs} runs",
        with_bfd[0],
        with_bfd[with_bfd.len() - 1]
    );
    if quick {
        return;
    }
    bench.configure(None);
    let hold = bench.cut_and_time(Duration::from_secs(400), None);
    println!(
        "without BFD (hold time 240 s, restart time 1 s): routes gone after {hold:?}; \
         BFD detects {:.0}x faster (hold-time detection / median BFD detection)",
        hold.as_secs_f64() / median.as_secs_f64()
    );
}

struct Bench {
    names: topology::LabNames,
    sockets: Vec<PathBuf>,
    state: LabState,
    gateway: Ipv4Addr,
}

impl Bench {
    /// Writes the default BGPConfiguration with the BFD interval (or none) and a 1 s mesh
    /// restart time, and waits until every mesh session shows that BFD state and node3's routes
    /// are on both observers.
    fn configure(&self, bfd: Option<&str>) {
        let annotations = match bfd {
            Some(interval) => json!({"starling/bfd-interval": interval}),
            None => json!({}),
        };
        lab::etcd::put_all(
            &self.names,
            &self.state.etcd_endpoints,
            vec![resources::mesh_configuration(
                annotations,
                json!({"nodeMeshMaxRestartTime": "1s"}),
            )],
        )
        .expect("writing the default BGPConfiguration");
        let want = bfd.map(|_| "Up");
        self.wait_settled(want);
    }

    /// Until every daemon has both mesh peers in BFD state `want` (`None`: no BFD), sessions
    /// Established, and both observers route node3's block via node3.
    fn wait_settled(&self, want: Option<&str>) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let sessions_ready = self.sockets.iter().all(|socket| {
                lab::node_status(socket).is_ok_and(|status| {
                    status.peers.len() == NODES - 1
                        && status.peers.iter().all(|peer| {
                            peer.bfd.as_deref() == want && peer.info.starts_with("Established")
                        })
                })
            });
            let routes_ready = OBSERVERS.iter().all(|node| {
                failover::routes_via(&self.names, *node, self.gateway)
                    .is_ok_and(|routes| !routes.is_empty())
            });
            if sessions_ready && routes_ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the lab did not settle with BFD {want:?}: {:?}",
                self.sockets
                    .iter()
                    .map(|socket| lab::node_status(socket).map(|status| status.render()).ok())
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(lab::POLL_INTERVAL);
        }
    }

    /// Cuts node3's cable, returns when the last observer dropped its routes via node3, and
    /// puts the cable back, waiting until the lab is as before (BFD state `settled`).
    fn cut_and_time(&self, limit: Duration, settled: Option<&str>) -> Duration {
        let cut = Instant::now();
        failover::cut_node(&self.names, CUT).expect("cutting node3");
        let gone = failover::time_until_gone(
            &self.names,
            &OBSERVERS,
            self.gateway,
            cut,
            Duration::from_millis(5),
            limit,
        );
        failover::restore_node(&self.names, CUT).expect("restoring node3");
        let took = gone
            .iter()
            .map(|observer| {
                observer.unwrap_or_else(|| panic!("routes via node3 stayed past {limit:?}"))
            })
            .max()
            .unwrap_or_default();
        self.wait_settled(settled);
        took
    }
}

fn program_in_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| directory.join(program).is_file())
    })
}
