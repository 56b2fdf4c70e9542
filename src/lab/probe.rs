//! `lab probe`: every pod connects to every other pod on one protocol and port, from inside
//! the source pod's network namespace; a reachability matrix of the results.
//!
//! Reachable means: TCP and SCTP complete the handshake within the timeout; UDP gets its own
//! datagram echoed back (`lab serve` echoes) within the timeout, resent every
//! [`UDP_RESEND`] meanwhile. Probes run on a bounded pool of threads, each of which joins the
//! source pod's namespace (`setns`) for its probe, so a matrix of up to [`IN_FLIGHT`] pairs takes
//! about one timeout however many of them fail.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::pods::LabPod;
use super::serve::{sctp_socket, Protocol};

/// Most probes in flight at once.
pub const IN_FLIGHT: usize = 128;
/// How often a UDP probe resends while it waits for the echo.
pub const UDP_RESEND: Duration = Duration::from_millis(200);

/// The outcome of one probe matrix; serialises as
/// `{"probe":"TCP/80","pods":[...],"reachable":{"x/a":{"x/b":true,...},...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeMatrix {
    pub probe: String,
    /// `<namespace>/<name>`, sorted.
    pub pods: Vec<String>,
    /// `reachable[from][to]` for every ordered pair of different pods.
    pub reachable: BTreeMap<String, BTreeMap<String, bool>>,
}

impl ProbeMatrix {
    /// The `(from, to)` pairs that were not reachable.
    pub fn unreachable(&self) -> Vec<(String, String)> {
        self.reachable
            .iter()
            .flat_map(|(from, row)| {
                row.iter()
                    .filter(|(_, ok)| !**ok)
                    .map(move |(to, _)| (from.clone(), to.clone()))
            })
            .collect()
    }

    pub fn pairs(&self) -> usize {
        self.reachable.values().map(BTreeMap::len).sum()
    }

    pub fn render(&self) -> String {
        let width = self.pods.iter().map(String::len).max().unwrap_or(4).max(7);
        let mut out = format!("{}\n{:<width$}", self.probe, "from\\to");
        for pod in &self.pods {
            let _ = write!(out, " {pod:>width$}");
        }
        out.push('\n');
        for from in &self.pods {
            let _ = write!(out, "{from:<width$}");
            for to in &self.pods {
                let cell = match self.reachable.get(from).and_then(|row| row.get(to)) {
                    None => "-",
                    Some(true) => "ok",
                    Some(false) => "X",
                };
                let _ = write!(out, " {cell:>width$}");
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{} of {} pairs reachable",
            self.pairs() - self.unreachable().len(),
            self.pairs()
        );
        out
    }
}

/// Whether `target:port` answers `protocol` from the current thread's namespace.
pub fn probe_one(protocol: Protocol, target: IpAddr, port: u16, timeout: Duration) -> bool {
    let address = SocketAddr::new(target, port);
    match protocol {
        Protocol::Tcp => TcpStream::connect_timeout(&address, timeout).is_ok(),
        Protocol::Udp => udp(address, timeout).unwrap_or(false),
        Protocol::Sctp => sctp(address, timeout).unwrap_or(false),
    }
}

fn udp(address: SocketAddr, timeout: Duration) -> std::io::Result<bool> {
    let local: SocketAddr = match address {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().map_err(std::io::Error::other)?,
        SocketAddr::V6(_) => "[::]:0".parse().map_err(std::io::Error::other)?,
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(address)?;
    let token = format!("starling-probe {} {:?}", std::process::id(), Instant::now());
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; 256];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        socket.send(token.as_bytes())?;
        let wait = (deadline - now)
            .min(UDP_RESEND)
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait))?;
        match socket.recv(&mut buffer) {
            Ok(length) if &buffer[..length] == token.as_bytes() => return Ok(true),
            Ok(_) => {}
            // An ICMP port unreachable: nothing listens (or a reject).
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => return Ok(false),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => return Err(error),
        }
    }
}

fn sctp(address: SocketAddr, timeout: Duration) -> Result<bool> {
    use nix::sys::socket::{connect, setsockopt, sockopt, SockaddrIn};
    let SocketAddr::V4(v4) = address else {
        return Ok(false);
    };
    let socket = sctp_socket()?;
    // A blocking connect gives up after the send timeout (Linux honours SO_SNDTIMEO there).
    let limit =
        nix::sys::time::TimeVal::new(timeout.as_secs() as i64, i64::from(timeout.subsec_micros()));
    setsockopt(&socket, sockopt::SendTimeout, &limit)?;
    Ok(connect(socket.as_raw_fd(), &SockaddrIn::from(v4)).is_ok())
}

/// Joins network namespace `name` on the current thread.
fn enter(name: &str) -> Result<()> {
    let path = crate::netns::path(name);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("joining network namespace {name}"))
}

/// Probes every ordered pair of `pods` (their first address) on `protocol`/`port`.
pub fn matrix(pods: &[LabPod], protocol: Protocol, port: u16, timeout: Duration) -> ProbeMatrix {
    let mut sorted: Vec<&LabPod> = pods.iter().collect();
    sorted.sort_by_key(|pod| pod.qualified());
    let mut jobs = Vec::new();
    for from in &sorted {
        for to in &sorted {
            if from.qualified() != to.qualified() {
                jobs.push((
                    from.qualified(),
                    from.namespace.clone(),
                    to.qualified(),
                    to.address,
                ));
            }
        }
    }
    let total = jobs.len();
    let queue = Mutex::new(jobs);
    let results = Mutex::new(Vec::with_capacity(total));
    std::thread::scope(|scope| {
        for _ in 0..total.min(IN_FLIGHT) {
            scope.spawn(|| {
                // Each worker is a thread of its own: joining pod namespaces never moves the
                // caller, and a worker that cannot join one reports its probes as failed.
                let mut current: Option<String> = None;
                loop {
                    let job = queue.lock().ok().and_then(|mut queue| queue.pop());
                    let Some((from, netns, to, address)) = job else {
                        break;
                    };
                    if current.as_deref() != Some(netns.as_str()) {
                        match enter(&netns) {
                            Ok(()) => current = Some(netns),
                            Err(error) => {
                                tracing::warn!(%from, "probe: {error:#}");
                                current = None;
                                if let Ok(mut results) = results.lock() {
                                    results.push((from, to, false));
                                }
                                continue;
                            }
                        }
                    }
                    let ok =
                        address.is_some_and(|address| probe_one(protocol, address, port, timeout));
                    if let Ok(mut results) = results.lock() {
                        results.push((from, to, ok));
                    }
                }
            });
        }
    });
    let mut reachable: BTreeMap<String, BTreeMap<String, bool>> = sorted
        .iter()
        .map(|pod| (pod.qualified(), BTreeMap::new()))
        .collect();
    for (from, to, ok) in results.into_inner().unwrap_or_default() {
        reachable.entry(from).or_default().insert(to, ok);
    }
    ProbeMatrix {
        probe: format!("{protocol}/{port}"),
        pods: sorted.iter().map(|pod| pod.qualified()).collect(),
        reachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_documented_shape() {
        let matrix = ProbeMatrix {
            probe: "TCP/80".into(),
            pods: vec!["x/a".into(), "x/b".into()],
            reachable: [
                ("x/a".to_string(), [("x/b".to_string(), true)].into()),
                ("x/b".to_string(), [("x/a".to_string(), false)].into()),
            ]
            .into(),
        };
        assert_eq!(
            serde_json::to_string(&matrix).unwrap(),
            r#"{"probe":"TCP/80","pods":["x/a","x/b"],"reachable":{"x/a":{"x/b":true},"x/b":{"x/a":false}}}"#
        );
        assert_eq!(
            matrix.unreachable(),
            vec![("x/b".to_string(), "x/a".to_string())]
        );
        let text = matrix.render();
        assert!(text.contains("1 of 2 pairs reachable"), "{text}");
    }

    #[test]
    fn loopback_probes_see_listeners_and_their_absence() {
        let timeout = Duration::from_millis(300);
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(probe_one(Protocol::Tcp, local, port, timeout));
        drop(tcp);
        assert!(!probe_one(Protocol::Tcp, local, port, timeout));

        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = echo.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut buffer = [0u8; 256];
            let (length, from) = echo.recv_from(&mut buffer).unwrap();
            echo.send_to(&buffer[..length], from).unwrap();
        });
        assert!(probe_one(Protocol::Udp, local, port, timeout));
        server.join().unwrap();
        // Nothing listens any more: the port is unreachable (or silent) and the probe fails.
        let started = Instant::now();
        assert!(!probe_one(Protocol::Udp, local, port, timeout));
        assert!(started.elapsed() < timeout + Duration::from_millis(200));
    }
}
