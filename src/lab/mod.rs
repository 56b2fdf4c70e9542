//! `starling lab`: a multi-node Starling cluster on one machine, built from network namespaces,
//! a private etcd and one `starling run` per node (see `topology` for names and addresses).
//!
//! `up` records what it started in `<state dir>/state.json` (default state dir
//! `/run/starling-lab/<name>`); `down` stops those processes and also sweeps every namespace
//! carrying the lab's prefix, so it cleans up after a crash and is safe to run twice.

pub mod controllers;
pub mod daemons;
pub mod etcd;
pub mod explain;
pub mod failover;
pub mod labels;
pub mod manifests;
pub mod neighbours;
pub mod ping;
pub mod pods;
pub mod probe;
pub mod resources;
pub mod serve;
pub mod topology;
pub mod verbs;
pub mod workloads;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use pods::LabPod;
use topology::{node_name, LabNames};

/// How often the lab re-checks something it waits for.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How the lab's pods reach each other across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// VXLAN pool, backend `vxlan` (routes from IPAM, no BGP).
    Vxlan,
    /// No encapsulation, BGP full mesh.
    Bgp,
    /// No encapsulation, node1 is a route reflector, the others its clients.
    BgpRr,
    /// IPIP pool, BGP full mesh (needs the kernel's ipip module).
    Ipip,
    /// IPIP pool with `ipipMode: CrossSubnet`, BGP full mesh: IPIP only towards the other node
    /// subnet (two subnets by default; needs ipip).
    IpipCrossSubnet,
    /// VXLAN pool with `vxlanMode: CrossSubnet`, backend `vxlan`: VXLAN only towards the other
    /// node subnet (two subnets by default).
    VxlanCrossSubnet,
}

impl Mode {
    /// Whether the mode's pool uses IPIP (and so the kernel's ipip module).
    pub fn uses_ipip(self) -> bool {
        matches!(self, Mode::Ipip | Mode::IpipCrossSubnet)
    }

    pub fn cross_subnet(self) -> bool {
        matches!(self, Mode::IpipCrossSubnet | Mode::VxlanCrossSubnet)
    }
}

/// What `lab up` builds.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Number of node namespaces.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    #[arg(long, value_enum, default_value_t = Mode::Vxlan)]
    pub mode: Mode,
    /// Pods created on every node through the CNI plugin.
    #[arg(long, default_value_t = 2)]
    pub pods_per_node: usize,
    /// Node subnets (1 or 2; with 2, even-numbered nodes are on the second, one routed hop away).
    /// Default: 2 for the cross-subnet modes, else 1.
    #[arg(long)]
    pub subnets: Option<usize>,
    /// Use this etcd instead of starting a private one (must be reachable from the node
    /// namespaces).
    #[arg(long)]
    pub etcd_endpoints: Option<String>,
    /// Dual stack: nodes get IPv6 addresses too, an IPv6 pool joins the IPv4 one (VXLAN in the
    /// vxlan modes, unencapsulated and carried by BGP in the others), pods get both families.
    #[arg(long)]
    pub ipv6: bool,
    /// The starling binary the nodes run (default: this one).
    #[arg(long, hide = true)]
    pub starling_binary: Option<PathBuf>,
}

/// Options every lab command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct LabOptions {
    /// Lab name (lower-case letters and digits); namespaces are called `stl-<name>-...`.
    #[arg(long, default_value = "lab", global = true)]
    pub name: String,
    /// Where state, logs and etcd data live (default /run/starling-lab/<name>).
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
}

impl LabOptions {
    pub fn names(&self) -> Result<LabNames> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            bail!(
                "lab name {:?} must be lower-case letters and digits (it prefixes namespace names)",
                self.name
            );
        }
        Ok(LabNames::new(&self.name))
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/run/starling-lab").join(&self.name))
    }
}

/// What a running lab consists of (written by `up`, read by the other commands).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub mode: Mode,
    pub nodes: usize,
    /// Node subnets (see `topology`).
    #[serde(default = "one")]
    pub subnets: usize,
    /// Dual stack (`--ipv6`).
    #[serde(default)]
    pub ipv6: bool,
    pub binary: PathBuf,
    pub etcd_pid: Option<u32>,
    /// What the daemons use (the private etcd's endpoint unless `--etcd-endpoints`).
    pub etcd_endpoints: String,
    pub daemon_pids: Vec<u32>,
    pub pods: Vec<LabPod>,
    /// Kubernetes namespaces and their labels (`lab namespace add`, `lab apply`).
    #[serde(default)]
    pub namespaces: std::collections::BTreeMap<String, labels::Labels>,
    /// The host's ARP table limits before `up` raised them for a big lab (`neighbours`);
    /// `down` restores them.
    #[serde(default)]
    pub arp_limits_before: Option<[u64; 3]>,
}

fn one() -> usize {
    1
}

impl LabState {
    /// Node `index`'s address on its subnet.
    pub fn node_address(&self, index: usize) -> std::net::Ipv4Addr {
        topology::node_address_in(index, self.subnets)
    }

    /// Node `index`'s IPv6 address, in a dual-stack lab.
    pub fn node_address_v6(&self, index: usize) -> Option<std::net::Ipv6Addr> {
        self.ipv6
            .then(|| topology::node_address_v6_in(index, self.subnets))
    }

    /// Whether namespace `name` exists (`default` always does).
    pub fn has_namespace(&self, name: &str) -> bool {
        name == pods::DEFAULT_NAMESPACE || self.namespaces.contains_key(name)
    }

    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("state.json")
    }

    pub fn load(state_dir: &Path) -> Result<LabState> {
        let path = Self::path(state_dir);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no lab state at {} (is the lab up?)", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        let path = Self::path(state_dir);
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

pub(crate) fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the lab creates network namespaces: run it as root");
    }
    Ok(())
}

/// How long `lab up` waits for every daemon's readiness: 90 s, or `STARLING_LAB_READY_SECONDS`
/// (the emulated test guest, tests/lab_guest.rs, starts debug daemons far more slowly).
fn daemons_ready_timeout() -> Duration {
    let seconds = std::env::var("STARLING_LAB_READY_SECONDS")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(90);
    Duration::from_secs(seconds)
}

fn progress(message: &str) {
    eprintln!("lab: {message}");
}

/// `lab up`: builds the cluster and returns its state.
pub fn up(options: &LabOptions, args: &UpArgs) -> Result<LabState> {
    require_root()?;
    let names = options.names()?;
    if args.nodes == 0 || args.nodes > topology::MAX_NODES {
        bail!("--nodes must be between 1 and {}", topology::MAX_NODES);
    }
    let subnets = args
        .subnets
        .unwrap_or(if args.mode.cross_subnet() { 2 } else { 1 });
    if subnets == 0 || subnets > topology::MAX_SUBNETS {
        bail!("--subnets must be between 1 and {}", topology::MAX_SUBNETS);
    }
    if args.ipv6 && !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        bail!("--ipv6: this kernel has no IPv6 (/proc/sys/net/ipv6 is missing)");
    }
    if args.mode.uses_ipip() {
        let mode = args
            .mode
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        ipip_support().with_context(|| {
            format!(
                "mode {mode} needs the kernel's ipip module; `MODE={mode} scripts/lab.sh` runs \
                 the lab in a QEMU guest with Debian's kernel instead (README, \"The lab in a VM\")"
            )
        })?;
    }
    let binary = match &args.starling_binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().context("locating the starling binary")?,
    };
    let state_dir = options.state_dir();
    // A previous run of the same lab (even a crashed one) is swept first.
    down(options).ok();
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    let started = Instant::now();

    progress(&format!("creating {} node namespaces", args.nodes));
    topology::create_core(&names, subnets, args.ipv6)?;
    for index in 1..=args.nodes {
        topology::create_node(&names, index, subnets, args.ipv6)?;
    }
    let mut state = LabState {
        name: options.name.clone(),
        mode: args.mode,
        nodes: args.nodes,
        subnets,
        ipv6: args.ipv6,
        binary: binary.clone(),
        etcd_pid: None,
        etcd_endpoints: args.etcd_endpoints.clone().unwrap_or_else(etcd::endpoint),
        daemon_pids: Vec::new(),
        pods: Vec::new(),
        namespaces: Default::default(),
        arp_limits_before: None,
    };
    state.arp_limits_before = neighbours::raise_for(args.nodes)
        .context("raising the host's ARP table limits for the lab's nodes")?;
    if let Some(before) = state.arp_limits_before {
        progress(&format!(
            "raised the host's ARP table limits (net.ipv4.neigh.default.gc_thresh1..3, shared by \
             every namespace) from {before:?} to {:?} for {} nodes; `lab down` restores them",
            neighbours::read().unwrap_or_default(),
            args.nodes
        ));
    }
    state.save(&state_dir)?;
    if args.etcd_endpoints.is_none() {
        progress("starting a private etcd");
        state.etcd_pid = Some(etcd::start(&names, &state_dir)?);
        state.save(&state_dir)?;
        etcd::wait_ready(&names, Duration::from_secs(30))?;
    }
    progress(&format!(
        "writing Calico resources for mode {:?}",
        args.mode
    ));
    etcd::put_all(
        &names,
        &state.etcd_endpoints,
        resources::for_mode(args.mode, args.ipv6),
    )?;
    // The `default` namespace exists from the start, as in any cluster.
    let default_labels =
        controllers::namespace_labels(pods::DEFAULT_NAMESPACE, &Default::default());
    etcd::put_all(
        &names,
        &state.etcd_endpoints,
        vec![
            controllers::namespace_profile(pods::DEFAULT_NAMESPACE, &default_labels)
                .map(|(key, value)| (key, controllers::with_server_metadata(value, None)))?,
        ],
    )?;
    state
        .namespaces
        .insert(pods::DEFAULT_NAMESPACE.to_string(), default_labels);

    pods::write_network_config(&state_dir, args.ipv6)?;
    progress("starting one starling daemon per node");
    for index in 1..=args.nodes {
        let pid = daemons::start(&names, &state_dir, &binary, &state, index)?;
        state.daemon_pids.push(pid);
    }
    state.save(&state_dir)?;
    let all: Vec<usize> = (1..=args.nodes).collect();
    daemons::wait_ready(&names, &all, daemons_ready_timeout())?;
    progress(&format!("daemons ready after {:.1?}", started.elapsed()));

    progress(&format!("creating {} pods per node", args.pods_per_node));
    for node in 1..=args.nodes {
        for index in 1..=args.pods_per_node {
            let pod = pods::add(&names, &state_dir, &binary, node, index)?;
            state.pods.push(pod);
            state.save(&state_dir)?;
        }
    }
    progress(&format!("lab up in {:.1?}", started.elapsed()));
    Ok(state)
}

/// Whether the kernel can create an IPIP device (tested in a throw-away namespace); the error
/// says what the kernel answered.
pub fn ipip_support() -> Result<()> {
    let name = crate::netns::unique_name("stl-ipipcheck");
    let guard = crate::netns::create(&name)
        .with_context(|| format!("creating namespace {name} to probe for ipip"))?;
    topology::ip(&[
        "-n",
        guard.name(),
        "link",
        "add",
        "ipiptest",
        "type",
        "ipip",
        "remote",
        "192.0.2.1",
    ])?;
    Ok(())
}

/// A printable summary of a lab.
pub fn summary(options: &LabOptions, state: &LabState) -> String {
    let mut out = format!(
        "lab {:?}: {} nodes, mode {:?}{}, state and logs in {}\n",
        state.name,
        state.nodes,
        state.mode,
        if state.ipv6 { ", dual stack" } else { "" },
        options.state_dir().display()
    );
    for index in 1..=state.nodes {
        let pods: Vec<String> = state
            .pods
            .iter()
            .filter(|p| p.node == index)
            .map(|p| format!("{}={}", p.qualified(), p.addresses_text()))
            .collect();
        let socket = daemons::NodeFiles::new(&options.state_dir(), index).control_socket();
        let sessions = match node_status(&socket) {
            Ok(status) if status.bgp_enabled => {
                let established = status
                    .peers
                    .iter()
                    .filter(|p| p.info.starts_with("Established"))
                    .count();
                format!(
                    ", BGP sessions {established}/{} established",
                    status.peers.len()
                )
            }
            Ok(_) => ", no BGP".to_string(),
            Err(_) => ", daemon not answering".to_string(),
        };
        let v6 = state
            .node_address_v6(index)
            .map(|a| format!(" {a}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {} {}{v6}{sessions}; pods: {}\n",
            node_name(index),
            state.node_address(index),
            pods.join(" ")
        ));
    }
    out.push_str(&format!(
        "  logs: {}/node<i>/starling.log, etcd: {}/etcd.log\n",
        options.state_dir().display(),
        options.state_dir().display()
    ));
    out
}

/// `lab status`: daemon health and BGP sessions per node.
pub fn status(options: &LabOptions) -> Result<String> {
    let names = options.names()?;
    let state_dir = options.state_dir();
    let state = LabState::load(&state_dir)?;
    let mut out = summary(options, &state);
    for index in 1..=state.nodes {
        let pid = state.daemon_pids.get(index - 1).copied();
        let running = pid.is_some_and(daemons::alive);
        let ready = running && daemons::ready(&names, index).unwrap_or(false);
        out.push_str(&format!(
            "\n{}: daemon {}{}\n",
            node_name(index),
            if running { "running" } else { "NOT running" },
            if ready { ", ready" } else { ", not ready" }
        ));
        let socket = daemons::NodeFiles::new(&state_dir, index).control_socket();
        if let Ok(node_status) = node_status(&socket) {
            out.push_str(&node_status.render());
        }
    }
    Ok(out)
}

/// The `node status` answer of one daemon.
pub fn node_status(socket: &Path) -> Result<crate::status::NodeStatus> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        crate::control::call(
            socket,
            &serde_json::json!({"request": "node_status"}),
            Duration::from_secs(5),
        )
        .await
        .map_err(anyhow::Error::from)
    })
}

/// `lab ping`: the all-pairs matrix, and in a dual-stack lab the IPv6 one too.
pub fn ping(options: &LabOptions) -> Result<ping::PingReport> {
    let state = LabState::load(&options.state_dir())?;
    if state.pods.len() < 2 {
        bail!("the lab has fewer than two pods");
    }
    Ok(ping::report(&state.pods, state.ipv6))
}

/// `starling ipam check` against the lab's etcd, run inside the bridge namespace (where etcd
/// listens): the report and whether it found no problem.
pub fn ipam_check(options: &LabOptions) -> Result<(String, bool)> {
    let names = options.names()?;
    let state = LabState::load(&options.state_dir())?;
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", &names.bridge_ns()])
        .arg(&state.binary)
        .args(["ipam", "check"])
        .env("DATASTORE_TYPE", "etcdv3")
        .env("ETCD_ENDPOINTS", &state.etcd_endpoints)
        .output()
        .context("running starling ipam check")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    if !report.contains("Check complete") {
        bail!(
            "starling ipam check gave no report: {}{}",
            report,
            stderr.trim()
        );
    }
    Ok((report, output.status.success()))
}

/// `lab down`: stops everything the lab started and removes every namespace it made.
pub fn down(options: &LabOptions) -> Result<()> {
    require_root()?;
    let names = options.names()?;
    let state_dir = options.state_dir();
    if let Ok(state) = LabState::load(&state_dir) {
        for pid in state.pods.iter().filter_map(|pod| pod.server_pid) {
            daemons::stop(pid, Duration::from_secs(2));
        }
        for pid in &state.daemon_pids {
            daemons::stop(*pid, Duration::from_secs(5));
        }
        if let Some(pid) = state.etcd_pid {
            daemons::stop(pid, Duration::from_secs(5));
        }
        if let Some(before) = state.arp_limits_before {
            if let Err(error) = neighbours::write(before) {
                eprintln!("lab: could not restore the host's ARP table limits: {error:#}");
            }
        }
    }
    // Anything still running inside the lab's namespaces (e.g. after a crash of `up`).
    for ns in topology::namespaces_with_prefix(&names.prefix())? {
        if let Ok(pids) = topology::ip(&["netns", "pids", &ns]) {
            for pid in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                daemons::stop(pid, Duration::from_secs(2));
            }
        }
    }
    topology::destroy(&names)?;
    if state_dir.exists() {
        std::fs::remove_dir_all(&state_dir)
            .with_context(|| format!("removing {}", state_dir.display()))?;
    }
    Ok(())
}
