//! Network policy at scale with the real daemon (benchmark, not a test; root only, prints why it
//! skips otherwise). Run with `cargo bench --bench policy_scale`; `POLICY_BENCH_PODS` (1000),
//! `POLICY_BENCH_POLICIES` (2000) and `POLICY_BENCH_REPETITIONS` (50) change the size.
//!
//! `starling run` (the release binary Cargo builds for benchmarks) runs as a child process in its
//! own network namespace, against a real etcd (Debian's etcd-server) in the same namespace on
//! 127.0.0.1; every object is in etcd before it starts (`support/policy_objects.rs`). Measured,
//! each against a floor in the same invocation:
//! 1. Full program: daemon start → first committed program (the metrics polled every 10 ms),
//!    its size; floor: the installed tables as `nft list table` prints them, loaded by one
//!    `nft -f` into a fresh namespace.
//! 2. One change — (a) a pod's WorkloadEndpoint added, (b) a pod's `app` label changed (it
//!    leaves one selector set and joins another): etcd put → commit, the commit seen by
//!    `nft monitor` in the daemon's namespace (its `# new generation` line, timestamped when
//!    read); objects touched from the daemon's counter. Floor: the same transaction (rendered by
//!    an in-process copy of the engine and applier fed the same objects) applied by a plain
//!    `nft -f` to a namespace holding the same tables; beside it, the renderer's own form of the
//!    change (before the applier's cache-lean rewrite) by plain `nft -f` to a third namespace.
//! 3. Idle resync: the daemon restarted with a 2 s `FELIX_ROUTEREFRESHINTERVAL` (the policy
//!    resync's period) over the programmed namespace; transactions and objects written while
//!    idle for several periods (must be 0), and the CPU it spent.
//! 4. The daemon's RSS at that size.

#[path = "../tests/ipam_support/etcd.rs"]
mod etcd_server;
#[path = "support/policy_daemon.rs"]
mod policy_daemon;
#[path = "support/policy_objects.rs"]
mod policy_objects;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_server::{EtcdServer, ETCD_BINARY};
use policy_daemon::{list_policy_tables, nft_script, Daemon, Metrics, Monitor};
use policy_objects::{Stored, NODE};
use starling::dataplane::policy::{Nft, NftError, PolicyDataplane};
use starling::datastore::etcd::EtcdStore;
use starling::netns;
use starling::policy::engine::Engine;
use starling::policy::inputs::{InputKind, InputUpdate};
use starling_policy::program::Family;
use starling_policy::render::{RenderConfig, Renderer};

const ADDRESS: &str = "192.0.2.1/24";
const IDLE_RESYNC: Duration = Duration::from_secs(2);
const IDLE_PERIODS: u32 = 5;
const FLOOR_RUNS: usize = 3;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        println!("skipping policy_scale: needs root (network namespaces, nft)");
        return;
    }
    for (program, package) in [(ETCD_BINARY, "etcd-server"), ("/usr/sbin/nft", "nftables")] {
        if !std::path::Path::new(program).exists() {
            println!(
                "skipping policy_scale: {program} is not installed (apt-get install {package})"
            );
            return;
        }
    }
    let size = Size {
        pods: setting("POLICY_BENCH_PODS", 1000),
        policies: setting("POLICY_BENCH_POLICIES", 2000),
        repetitions: setting("POLICY_BENCH_REPETITIONS", 50).max(1),
    };
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_starling"));
    let nft_version = Command::new("nft")
        .arg("--version")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "policy_scale: {} local endpoints, {} policies, {} repetitions per change; {} ({nft_version})",
        size.pods,
        size.policies,
        size.repetitions,
        binary.display()
    );
    let namespace = netns::create(&netns::unique_name("st-pbench")).expect("create namespace");
    let ns = namespace.name().to_string();
    for command in [
        "link set lo up",
        // Start-up checks IP against an interface; a veth pair with both ends inside.
        "link add eth0 type veth peer name eth0-peer",
        &format!("addr add {ADDRESS} dev eth0"),
        "link set eth0 up",
        "link set eth0-peer up",
    ] {
        ip(&ns, command);
    }
    let results = netns::run_in(&ns, || run(&binary, &size)).expect("run in the namespace");
    results.print(&size);
}

fn ip(namespace: &str, command: &str) {
    let status = Command::new("ip")
        .args(["-n", namespace])
        .args(command.split_whitespace())
        .status()
        .expect("run ip");
    assert!(status.success(), "ip -n {namespace} {command}");
}

struct Size {
    pods: usize,
    policies: usize,
    repetitions: usize,
}

/// The nft stand-in of the in-process copy: records scripts, reports no installed tables.
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Nft for Recorder {
    fn run(&mut self, script: &str) -> Result<(), NftError> {
        self.0.lock().expect("recorder").push(script.to_string());
        Ok(())
    }

    fn list(&mut self, _family: Family) -> Result<Option<String>, NftError> {
        Ok(None)
    }
}

/// The daemon's engine and applier in-process, fed the same objects: the transactions the
/// daemon commits, for the floor to apply with plain nft; and a bare renderer beside them for
/// the renderer's own form of each change (before the applier's cache-lean rewrite).
struct Shadow {
    engine: Engine,
    dataplane: PolicyDataplane,
    scripts: Arc<Mutex<Vec<String>>>,
    renderer: Renderer,
}

impl Shadow {
    /// Returns the copy and its full program's script and object count.
    fn new(objects: &[Stored]) -> (Shadow, String, usize) {
        let mut engine = Engine::new(NODE, &InputKind::ETCD, "cali");
        for (kind, objects) in policy_objects::by_kind(objects) {
            let rejected = engine.handle(InputUpdate::Replace { kind, objects });
            assert!(
                rejected.is_empty(),
                "generated objects rejected: {:?}",
                engine.rejected().collect::<Vec<_>>()
            );
        }
        assert!(engine.in_sync());
        engine.take_changes();
        let scripts = Arc::new(Mutex::new(Vec::new()));
        let dataplane = PolicyDataplane::with_nft(
            RenderConfig::default(),
            Box::new(Recorder(scripts.clone())),
            None,
        )
        .expect("policy dataplane");
        let mut renderer = Renderer::new(RenderConfig::default()).expect("renderer");
        renderer.rebuild(engine.compiler().program());
        let mut shadow = Shadow {
            engine,
            dataplane,
            scripts,
            renderer,
        };
        let (script, _, objects) = shadow.commit(None);
        (shadow, script, objects)
    }

    /// Feeds `object` (or nothing: the first, full commit) and returns the transaction as the
    /// daemon runs it, as the renderer wrote it, and its object count.
    fn commit(&mut self, object: Option<&Stored>) -> (String, String, usize) {
        let mut plain = String::new();
        let report = match object {
            None => self.dataplane.resync(self.engine.compiler().program()),
            Some(object) => {
                let rejected = self.engine.handle(InputUpdate::Put {
                    kind: object.kind,
                    key: object.key.clone(),
                    object: object.value.clone(),
                });
                assert!(rejected.is_empty(), "{} rejected", object.key);
                let changes = self.engine.take_changes();
                let program = self.engine.compiler().program();
                plain = self.renderer.update(program, &changes).script;
                self.dataplane.apply(program, &changes)
            }
        }
        .expect("in-process render");
        let script = if report.script_bytes > 0 {
            self.scripts
                .lock()
                .expect("recorder")
                .pop()
                .unwrap_or_default()
        } else {
            String::new()
        };
        (script, plain, report.objects)
    }
}

async fn put_all(store: &EtcdStore, objects: &[Stored]) {
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in objects.chunks(objects.len().div_ceil(16).max(1)) {
        let store = store.clone();
        let chunk: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|object| {
                (
                    object.etcd_key.clone(),
                    object.value.to_string().into_bytes(),
                )
            })
            .collect();
        tasks.spawn(async move {
            for (key, value) in chunk {
                store.put_raw(&key, &value).await.expect("etcd put");
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("etcd writer");
    }
}

const TRANSACTIONS: &str = "starling_policy_nft_transactions_total";
const OBJECTS: &str = "starling_policy_nft_objects_touched_total";

fn series(name: &str, label: &str, value: &str) -> String {
    format!("{name}{{{label}=\"{value}\"}}")
}

/// The policy program is committed once the chain gauge is set (also by a resync that wrote
/// nothing).
fn committed(metrics: &Metrics) -> bool {
    metrics.get(&series("starling_policy_nft_chains", "family", "ip")) > 0.0
}

/// Times `nft -f` of `script` into a fresh namespace (median of `FLOOR_RUNS`).
fn load_into_fresh_namespace(script: &str) -> Duration {
    let mut times: Vec<Duration> = (0..FLOOR_RUNS)
        .map(|_| {
            let fresh = netns::create(&netns::unique_name("st-pfloor")).expect("floor namespace");
            netns::run_in(fresh.name(), || nft_script(script))
                .expect("run in the floor namespace")
                .unwrap_or_else(|error| panic!("loading the floor: {error}"))
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

struct FullProgram {
    from_start: Duration,
    transaction: Duration,
    compile: Duration,
    objects: u64,
    bytes: Option<usize>,
    shadow_objects: usize,
    shadow_bytes: usize,
    chains: u64,
    rules: u64,
    sets: u64,
    floor_listed: Duration,
    listed_bytes: usize,
    floor_script: Duration,
}

struct Sample {
    latency: Duration,
    /// The renderer's own form of the change by plain nft -f.
    floor_plain: Duration,
    plain_bytes: usize,
    objects: u64,
    shadow_objects: usize,
    bytes: usize,
    floor: Duration,
    extra_commits: u64,
}

struct Idle {
    restart: Duration,
    restart_objects: u64,
    window: Duration,
    transactions: u64,
    objects: u64,
    cpu: Duration,
    children_cpu: Duration,
}

struct Results {
    full: FullProgram,
    pod_added: Vec<Sample>,
    label_changed: Vec<Sample>,
    idle: Idle,
    rss_kib: (u64, u64),
    rss_after_restart_kib: (u64, u64),
}

fn run(binary: &std::path::Path, size: &Size) -> Results {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (etcd, store) = runtime.block_on(EtcdServer::start());
    let objects = policy_objects::initial(size.pods, size.policies);
    let started = Instant::now();
    runtime.block_on(put_all(&store, &objects));
    println!(
        "  {} objects written to etcd in {:.1} s",
        objects.len(),
        started.elapsed().as_secs_f64()
    );
    let (mut shadow, full_script, shadow_objects) = Shadow::new(&objects);
    let stats = shadow.engine.compiler().stats();
    println!(
        "  compiled in-process: {} local endpoints, {} active policies, {} sets",
        stats.local_endpoints, stats.active_policies, stats.sets
    );
    let directory = tempfile::tempdir().expect("temp dir");

    // 1. Full program.
    let mut daemon = Daemon::start(
        binary,
        directory.path(),
        NODE,
        &etcd.endpoint,
        ADDRESS,
        Duration::from_secs(3600),
    );
    let (at, metrics) = daemon.wait_metrics(
        "the first policy commit",
        Duration::from_millis(10),
        committed,
    );
    let from_start = at - daemon.started;
    let listed = list_policy_tables();
    save("listed.nft", &listed);
    save("full-script.nft", &full_script);
    let full = FullProgram {
        from_start,
        transaction: Duration::from_secs_f64(
            metrics.get("starling_policy_nft_transaction_seconds_sum"),
        ),
        compile: Duration::from_secs_f64(metrics.get("starling_policy_compile_seconds_sum")),
        objects: metrics.count(&series(OBJECTS, "kind", "resync")),
        bytes: daemon.first_transaction_bytes(),
        shadow_objects,
        shadow_bytes: full_script.len(),
        chains: metrics.count(&series("starling_policy_nft_chains", "family", "ip"))
            + metrics.count(&series("starling_policy_nft_chains", "family", "ip6")),
        rules: metrics.count(&series("starling_policy_nft_rules", "family", "ip"))
            + metrics.count(&series("starling_policy_nft_rules", "family", "ip6")),
        sets: metrics.count(&series("starling_policy_nft_sets", "family", "ip"))
            + metrics.count(&series("starling_policy_nft_sets", "family", "ip6")),
        floor_listed: load_into_fresh_namespace(&listed),
        listed_bytes: listed.len(),
        floor_script: load_into_fresh_namespace(&full_script),
    };
    println!(
        "  full program committed {:.2} s after start",
        full.from_start.as_secs_f64()
    );

    // 2. One change at a time; the floor namespace follows with the same transactions.
    let floor = netns::create(&netns::unique_name("st-pfloor")).expect("floor namespace");
    netns::run_in(floor.name(), || nft_script(&listed))
        .expect("run in the floor namespace")
        .unwrap_or_else(|error| panic!("loading the floor namespace: {error}"));
    let plain_floor = netns::create(&netns::unique_name("st-pfloor")).expect("floor namespace");
    netns::run_in(plain_floor.name(), || nft_script(&listed))
        .expect("run in the floor namespace")
        .unwrap_or_else(|error| panic!("loading the floor namespace: {error}"));
    let monitor = Monitor::start();
    let mut change = |object: &Stored| -> Sample {
        // The in-process copy first: a change that writes nothing would never be seen.
        let (script, plain, shadow_objects) = shadow.commit(Some(object));
        assert!(
            !script.is_empty(),
            "{} changes nothing in nftables",
            object.key
        );
        save(
            &format!("change-{}.nft", object.key.replace('/', "_")),
            &script,
        );
        let before = daemon.metrics();
        monitor.drain();
        let put = Instant::now();
        runtime
            .block_on(store.put_raw(&object.etcd_key, object.value.to_string().as_bytes()))
            .expect("etcd put");
        let (at, _) = monitor
            .next_commit(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no commit within 30 s after writing {}", object.key));
        let latency = at - put;
        let counted =
            |metrics: &Metrics| metrics.count(&series(TRANSACTIONS, "kind", "incremental"));
        let (_, after) =
            daemon.wait_metrics("the transaction counter", Duration::from_millis(1), |m| {
                counted(m) > counted(&before)
            });
        let objects_series = series(OBJECTS, "kind", "incremental");
        let floor_time = netns::run_in(floor.name(), || nft_script(&script))
            .expect("run in the floor namespace")
            .unwrap_or_else(|error| {
                panic!("floor transaction for {}: {error}\n{script}", object.key)
            });
        let floor_plain = netns::run_in(plain_floor.name(), || nft_script(&plain))
            .expect("run in the floor namespace")
            .unwrap_or_else(|error| {
                panic!(
                    "plain floor transaction for {}: {error}\n{plain}",
                    object.key
                )
            });
        Sample {
            latency,
            floor_plain,
            plain_bytes: plain.len(),
            objects: after.count(&objects_series) - before.count(&objects_series),
            shadow_objects,
            bytes: script.len(),
            floor: floor_time,
            extra_commits: counted(&after) - counted(&before) - 1,
        }
    };
    let pod_added: Vec<Sample> = (0..size.repetitions)
        .map(|index| change(&policy_objects::pod(size.pods + index, 0)))
        .collect();
    let movers = policy_objects::label_movers(size.pods);
    assert!(
        !movers.is_empty(),
        "no pod can change its app label at this size"
    );
    let label_changed: Vec<Sample> = (0..size.repetitions)
        .map(|index| {
            let pod = movers[index * 37 % movers.len()];
            change(&policy_objects::pod(
                pod,
                policy_objects::APP_SHIFT * (1 + index / movers.len()),
            ))
        })
        .collect();
    let rss_kib = daemon.memory_kib();
    drop(monitor);
    drop(daemon);

    // 3. Idle: restarted over the programmed namespace with a short resync period.
    let mut daemon = Daemon::start(
        binary,
        directory.path(),
        NODE,
        &etcd.endpoint,
        ADDRESS,
        IDLE_RESYNC,
    );
    let (at, before) = daemon.wait_metrics(
        "the first commit after restart",
        Duration::from_millis(10),
        committed,
    );
    let restart = at - daemon.started;
    let cpu_before = daemon.cpu_time();
    let children_before = daemon.children_cpu_time();
    let window = IDLE_RESYNC * IDLE_PERIODS + IDLE_RESYNC / 2;
    // The measurement window itself (the resyncs run on the daemon's own timer).
    std::thread::sleep(window);
    daemon.check_alive();
    let after = daemon.metrics();
    let total = |metrics: &Metrics, name: &str| {
        metrics.count(&series(name, "kind", "resync"))
            + metrics.count(&series(name, "kind", "incremental"))
    };
    let idle = Idle {
        restart,
        restart_objects: total(&before, OBJECTS),
        window,
        transactions: total(&after, TRANSACTIONS) - total(&before, TRANSACTIONS),
        objects: total(&after, OBJECTS) - total(&before, OBJECTS),
        cpu: daemon.cpu_time().saturating_sub(cpu_before),
        children_cpu: daemon.children_cpu_time().saturating_sub(children_before),
    };
    let rss_after_restart_kib = daemon.memory_kib();
    drop(daemon);
    drop(etcd);
    Results {
        full,
        pod_added,
        label_changed,
        idle,
        rss_kib,
        rss_after_restart_kib,
    }
}

/// With `POLICY_BENCH_SAVE=<dir>`, keeps the listed tables and transactions there.
fn save(name: &str, text: &str) {
    if let Some(directory) = std::env::var_os("POLICY_BENCH_SAVE") {
        let path = std::path::Path::new(&directory).join(name);
        if let Err(error) = std::fs::write(&path, text) {
            println!("  cannot save {}: {error}", path.display());
        }
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn median_of<T: Copy + Ord>(mut values: Vec<T>) -> T {
    values.sort();
    values[values.len() / 2]
}

impl Results {
    fn print(&self, size: &Size) {
        let full = &self.full;
        println!();
        println!(
            "policy_scale results ({} local endpoints, {} policies; {} chains, {} rules, {} sets in ip+ip6)",
            size.pods, size.policies, full.chains, full.rules, full.sets
        );
        println!(
            "{:<58} {:>12} {:>12} {:>8}",
            "", "Starling", "floor", "ratio"
        );
        let row = |name: &str, starling: f64, floor: f64, unit: &str| {
            println!(
                "{name:<58} {:>9.1} {unit:<2} {:>9.1} {unit:<2} {:>7.2}x",
                starling,
                floor,
                starling / floor.max(f64::MIN_POSITIVE)
            );
        };
        row(
            "1. full program: daemon start -> first commit",
            ms(full.from_start),
            ms(full.floor_listed),
            "ms",
        );
        row(
            "   its nft transaction (render + commit) vs floor",
            ms(full.transaction),
            ms(full.floor_listed),
            "ms",
        );
        row(
            "   Starling's script by one nft -f vs listed tables",
            ms(full.floor_script),
            ms(full.floor_listed),
            "ms",
        );
        println!(
            "   transaction: {} objects (in-process copy {}), {} bytes (copy {}; listed tables {} bytes); compile {:.0} ms",
            full.objects,
            full.shadow_objects,
            full.bytes.map_or("?".to_string(), |bytes| bytes.to_string()),
            full.shadow_bytes,
            full.listed_bytes,
            ms(full.compile),
        );
        for (name, samples) in [
            ("2a. pod added", &self.pod_added),
            (
                "2b. pod label changed (selector sets change)",
                &self.label_changed,
            ),
        ] {
            let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
            latencies.sort();
            let mut floors: Vec<Duration> = samples.iter().map(|s| s.floor).collect();
            floors.sort();
            println!("{name}: etcd put -> commit seen by nft monitor");
            for (label, fraction) in [("p50", 0.5), ("p99", 0.99)] {
                row(
                    &format!("   {label}"),
                    ms(percentile(&latencies, fraction)),
                    ms(percentile(&floors, fraction)),
                    "ms",
                );
            }
            let mut plains: Vec<Duration> = samples.iter().map(|s| s.floor_plain).collect();
            plains.sort();
            println!(
                "   floor of the renderer's own form (add rule / add element, {} bytes): p50 {:.1} ms, p99 {:.1} ms; lean floor / this p50 {:.2}x",
                median_of(samples.iter().map(|s| s.plain_bytes).collect()),
                ms(percentile(&plains, 0.5)),
                ms(percentile(&plains, 0.99)),
                ms(percentile(&floors, 0.5)) / ms(percentile(&plains, 0.5)).max(f64::MIN_POSITIVE),
            );
            let extra: u64 = samples.iter().map(|s| s.extra_commits).sum();
            println!(
                "   objects touched (median): {} (in-process copy {}); script {} bytes; max {:.1} ms; {} extra commits; anchor p99 < 50 ms: {}",
                median_of(samples.iter().map(|s| s.objects).collect()),
                median_of(samples.iter().map(|s| s.shadow_objects).collect()),
                median_of(samples.iter().map(|s| s.bytes).collect()),
                ms(latencies[latencies.len() - 1]),
                extra,
                if percentile(&latencies, 0.99) < Duration::from_millis(50) { "met" } else { "NOT met" },
            );
        }
        let idle = &self.idle;
        println!(
            "3. restart over the programmed tables: first commit {:.0} ms after start, {} objects written",
            ms(idle.restart),
            idle.restart_objects
        );
        println!(
            "   idle {:.1} s with resync every {} s: {} transactions, {} objects written; CPU {:.0} ms daemon + {:.0} ms nft (~{:.0} ms per resync)",
            idle.window.as_secs_f64(),
            IDLE_RESYNC.as_secs(),
            idle.transactions,
            idle.objects,
            ms(idle.cpu),
            ms(idle.children_cpu),
            ms(idle.cpu + idle.children_cpu) / f64::from(IDLE_PERIODS),
        );
        println!(
            "4. daemon RSS: {} MiB after the changes (peak {} MiB); {} MiB after the restart",
            self.rss_kib.0 / 1024,
            self.rss_kib.1 / 1024,
            self.rss_after_restart_kib.0 / 1024,
        );
    }
}
