//! The real `starling run` for the policy benchmark: a child process of the benchmark (so its
//! RSS and CPU time are its own) in the calling thread's network namespace, against etcd; its
//! Prometheus metrics read over loopback; `nft monitor` in the same namespace timestamping each
//! committed transaction (nft prints `# new generation N by process P (nft)` once per commit and
//! flushes every line).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(300);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

pub struct Daemon {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
    pub started: Instant,
}

impl Daemon {
    /// Starts `starling run` named `node` with calico-node's variables (as `starling lab` sets
    /// them), its files under `directory`, and the policy resync every `resync`.
    pub fn start(
        binary: &Path,
        directory: &Path,
        node: &str,
        etcd: &str,
        address: &str,
        resync: Duration,
    ) -> Daemon {
        let metrics_port = free_port();
        let log = directory.join(format!("starling-{metrics_port}.log"));
        let log_file = std::fs::File::create(&log).expect("daemon log file");
        let variables = [
            ("NODENAME", node.to_string()),
            ("DATASTORE_TYPE", "etcdv3".to_string()),
            ("ETCD_ENDPOINTS", etcd.to_string()),
            ("IP", address.to_string()),
            ("CALICO_NETWORKING_BACKEND", "none".to_string()),
            ("NO_DEFAULT_POOLS", "true".to_string()),
            (
                "CALICO_NODENAME_FILE",
                directory.join("nodename").display().to_string(),
            ),
            (
                "STARLING_MTU_FILE",
                directory.join("mtu").display().to_string(),
            ),
            (
                "STARLING_CONTROL_SOCKET",
                directory.join("starling.sock").display().to_string(),
            ),
            ("FELIX_HEALTHENABLED", "true".to_string()),
            ("FELIX_HEALTHHOST", "127.0.0.1".to_string()),
            ("FELIX_HEALTHPORT", free_port().to_string()),
            ("FELIX_PROMETHEUSMETRICSENABLED", "true".to_string()),
            ("FELIX_PROMETHEUSMETRICSHOST", "127.0.0.1".to_string()),
            ("FELIX_PROMETHEUSMETRICSPORT", metrics_port.to_string()),
            ("FELIX_IPV6SUPPORT", "false".to_string()),
            (
                "FELIX_ROUTEREFRESHINTERVAL",
                format!("{}", resync.as_secs_f64()),
            ),
            // The policy thread logs each transaction's size at debug.
            (
                "RUST_LOG",
                "info,starling::daemon::policy=debug".to_string(),
            ),
        ];
        let started = Instant::now();
        let child = Command::new(binary)
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(variables)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        Daemon {
            child,
            metrics_port,
            log,
            started,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails naming the log when the daemon has exited.
    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "starling run exited ({status}); last lines of {}:\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }

    /// The daemon's metrics, `name{labels}` → value; empty while the endpoint does not answer.
    pub fn metrics(&self) -> Metrics {
        Metrics(scrape(self.metrics_port).unwrap_or_default())
    }

    /// Polls the metrics every `interval` until `ready` holds; the instant it was seen.
    pub fn wait_metrics(
        &mut self,
        what: &str,
        interval: Duration,
        ready: impl Fn(&Metrics) -> bool,
    ) -> (Instant, Metrics) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let metrics = self.metrics();
            if ready(&metrics) {
                return (Instant::now(), metrics);
            }
            self.check_alive();
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            // Poll interval, not a synchronisation sleep: the condition is re-checked.
            std::thread::sleep(interval);
        }
    }

    /// `(VmRSS, VmHWM)` in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// User plus system CPU time of the daemon's own threads.
    pub fn cpu_time(&self) -> Duration {
        ticks_to_duration(stat_ticks(self.pid(), [11, 12]))
    }

    /// CPU time of the daemon's waited-for children (its nft runs).
    pub fn children_cpu_time(&self) -> Duration {
        ticks_to_duration(stat_ticks(self.pid(), [13, 14]))
    }

    /// The `bytes=` of the first `policy transaction committed` line of the log.
    pub fn first_transaction_bytes(&self) -> Option<usize> {
        let log = std::fs::read_to_string(&self.log).ok()?;
        let line = log
            .lines()
            .find(|line| line.contains("policy transaction committed"))?;
        let (_, rest) = line.split_once("bytes=")?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parsed Prometheus text: `name{labels}` (as printed) → value.
#[derive(Debug, Default, Clone)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    /// The value of the series whose printed name is `series`, 0 when absent.
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    pub fn count(&self, series: &str) -> u64 {
        self.get(series) as u64
    }
}

fn scrape(port: u16) -> Option<BTreeMap<String, f64>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(
        body.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect(),
    )
}

/// `nft monitor` in the calling thread's namespace; a reader thread timestamps its lines.
pub struct Monitor {
    child: Child,
    lines: Receiver<(Instant, String)>,
}

impl Monitor {
    /// Starts the monitor and waits until it reports a probe table created and deleted. Its
    /// start-up lists the whole ruleset, rules included (seconds at this size), and starts over
    /// whenever the ruleset changes meanwhile: probe only once its CPU time stands still.
    pub fn start() -> Monitor {
        let mut child = Command::new("nft")
            .arg("monitor")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nft monitor");
        let stdout = child.stdout.take().expect("monitor stdout");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        let monitor = Monitor { child, lines };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut ticks = stat_ticks(monitor.child.id(), [11, 12]);
            loop {
                // Poll interval while the monitor loads its cache (re-checked, not a sync).
                std::thread::sleep(Duration::from_millis(300));
                let now = stat_ticks(monitor.child.id(), [11, 12]);
                if now == ticks {
                    break;
                }
                ticks = now;
                assert!(Instant::now() < deadline, "nft monitor did not settle");
            }
            nft_script(
                "add table inet starling-bench-probe\ndelete table inet starling-bench-probe\n",
            )
            .expect("probe table");
            let seen = loop {
                match monitor.lines.recv_timeout(Duration::from_secs(5)) {
                    Ok((_, line)) if line.contains("starling-bench-probe") => break true,
                    Ok(_) => {}
                    Err(RecvTimeoutError::Timeout) => break false,
                    Err(RecvTimeoutError::Disconnected) => panic!("nft monitor exited"),
                }
            };
            if seen {
                break;
            }
            assert!(Instant::now() < deadline, "nft monitor did not start");
        }
        monitor.drain();
        monitor
    }

    /// Forgets what was printed so far.
    pub fn drain(&self) {
        // The probe's remaining lines may still be in flight; take whatever arrives briefly.
        while self.lines.recv_timeout(Duration::from_millis(20)).is_ok() {}
    }

    /// The instant of the next committed generation (the line nft prints after a transaction's
    /// objects) and the object lines printed before it.
    pub fn next_commit(&self, timeout: Duration) -> Option<(Instant, usize)> {
        let deadline = Instant::now() + timeout;
        let mut objects = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, line) = self.lines.recv_timeout(left).ok()?;
            if line.starts_with("# new generation") {
                return Some((at, objects));
            }
            objects += 1;
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sum of two counters of `/proc/<pid>/stat`, indexed from the state field (the command
/// name before it may hold spaces); 0 once the process is gone.
fn stat_ticks(pid: u32, fields: [usize; 2]) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let values: Vec<&str> = after.split_whitespace().collect();
    fields
        .iter()
        .filter_map(|index| values.get(*index)?.parse::<u64>().ok())
        .sum()
}

fn ticks_to_duration(ticks: u64) -> Duration {
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Runs `nft -f -` with `script` in the calling thread's namespace; its wall time.
pub fn nft_script(script: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("nft: {error}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|error| format!("nft: {error}"))?;
    let elapsed = started.elapsed();
    if output.status.success() {
        Ok(elapsed)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// `nft list table <family> starling` texts of both families, as one file's content.
pub fn list_policy_tables() -> String {
    let mut text = String::new();
    for family in ["ip", "ip6"] {
        let output = Command::new("nft")
            .args(["list", "table", family, "starling"])
            .output()
            .expect("nft list table");
        assert!(
            output.status.success(),
            "nft list table {family} starling: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        text.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    text
}
