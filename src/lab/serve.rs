//! The lab's own servers inside pods (`starling lab serve`, run in the pod's namespace): TCP and
//! SCTP listeners that accept, answer one line and close; UDP sockets that echo each datagram.
//! No extra packages, and nothing a probe could mistake: a probe counts as reachable only when
//! the three-way handshake completes (TCP, SCTP) or its own datagram comes back (UDP).
//!
//! Contract: [`run`] binds every port before it writes the ready file, so once the file exists
//! every listener accepts; it then serves until killed. [`spawn`] starts it detached (it outlives
//! the `lab` command, like the daemons) and waits for the ready file or the process's death.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::daemons;

/// A transport protocol of a probe or a served port (Kubernetes spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// `TCP`, `UDP` or `SCTP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(text: &str) -> Result<Protocol, String> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(format!("protocol {text:?} is not tcp, udp or sctp")),
        }
    }
}

/// One served container port: `[NAME=]PROTO/PORT`, e.g. `serve-80-tcp=tcp/80`. The name, when
/// given, is the pod's named container port (recorded in its WorkloadEndpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
}

impl fmt::Display for ServePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "{name}=")?;
        }
        write!(
            f,
            "{}/{}",
            self.protocol.as_str().to_ascii_lowercase(),
            self.port
        )
    }
}

/// Kubernetes' `IANA_SVC_NAME`: 1-15 lower-case letters, digits and `-`, at least one letter,
/// no `-` at either end nor two in a row.
pub fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

impl FromStr for ServePort {
    type Err = String;
    fn from_str(text: &str) -> Result<ServePort, String> {
        let (name, rest) = match text.split_once('=') {
            Some((name, rest)) => (Some(name), rest),
            None => (None, text),
        };
        if let Some(name) = name {
            if !is_port_name(name) {
                return Err(format!(
                    "port name {name:?} in {text:?} must be 1-15 lower-case letters, digits and \
                     '-' with at least one letter (Kubernetes' IANA_SVC_NAME)"
                ));
            }
        }
        let (protocol, port) = rest.split_once('/').ok_or_else(|| {
            format!("{text:?} is not [NAME=]PROTO/PORT, e.g. serve-80-tcp=tcp/80")
        })?;
        let protocol: Protocol = protocol.parse()?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("port {port:?} in {text:?} is not 1-65535"))?;
        Ok(ServePort {
            name: name.map(str::to_string),
            protocol,
            port,
        })
    }
}

/// Parses a `--serve` list; names and (protocol, port) pairs must be unique.
pub fn parse_list(text: &str) -> Result<Vec<ServePort>, String> {
    let mut ports: Vec<ServePort> = Vec::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let port: ServePort = item.parse()?;
        if ports
            .iter()
            .any(|p| p.protocol == port.protocol && p.port == port.port)
        {
            return Err(format!("{}/{} is served twice", port.protocol, port.port));
        }
        if port.name.is_some() && ports.iter().any(|p| p.name == port.name) {
            return Err(format!(
                "port name {:?} is used twice",
                port.name.unwrap_or_default()
            ));
        }
        ports.push(port);
    }
    Ok(ports)
}

/// What a TCP or SCTP server answers before it closes.
const ANSWER: &[u8] = b"starling lab serve\n";

fn any(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)
}

/// An SCTP socket (one-to-one style); the error says when the kernel has no SCTP.
pub fn sctp_socket() -> Result<OwnedFd> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
    socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Sctp,
    )
    .map_err(|errno| match errno {
        nix::errno::Errno::EPROTONOSUPPORT | nix::errno::Errno::ESOCKTNOSUPPORT => {
            anyhow::anyhow!("this kernel has no SCTP (module sctp not available)")
        }
        errno => anyhow::anyhow!("creating an SCTP socket: {errno}"),
    })
}

enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
    Sctp(OwnedFd),
}

fn bind(port: &ServePort) -> Result<Bound> {
    let context = || format!("binding {port}");
    Ok(match port.protocol {
        Protocol::Tcp => Bound::Tcp(TcpListener::bind(any(port.port)).with_context(context)?),
        Protocol::Udp => Bound::Udp(UdpSocket::bind(any(port.port)).with_context(context)?),
        Protocol::Sctp => {
            use nix::sys::socket::{bind, listen, Backlog, SockaddrIn};
            let socket = sctp_socket().with_context(context)?;
            bind(socket.as_raw_fd(), &SockaddrIn::from(any(port.port))).with_context(context)?;
            listen(&socket, Backlog::new(64).unwrap_or(Backlog::MAXCONN)).with_context(context)?;
            Bound::Sctp(socket)
        }
    })
}

fn serve(bound: Bound) {
    match bound {
        Bound::Tcp(listener) => {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                // A fresh socket's send buffer takes the answer without blocking.
                let _ = stream.write_all(ANSWER);
            }
        }
        Bound::Udp(socket) => {
            let mut buffer = [0u8; 2048];
            loop {
                if let Ok((length, from)) = socket.recv_from(&mut buffer) {
                    let _ = socket.send_to(&buffer[..length], from);
                }
            }
        }
        Bound::Sctp(socket) => loop {
            use nix::sys::socket::{accept, send, MsgFlags};
            if let Ok(connection) = accept(socket.as_raw_fd()) {
                let _ = send(connection, ANSWER, MsgFlags::empty());
                let _ = nix::unistd::close(connection);
            }
        },
    }
}

/// `starling lab serve`: binds every port, writes `ready_file` (if given), then serves forever.
pub fn run(ports: &[ServePort], ready_file: Option<&Path>) -> Result<()> {
    if ports.is_empty() {
        bail!("nothing to serve: give at least one [NAME=]PROTO/PORT");
    }
    let bound: Vec<Bound> = ports.iter().map(bind).collect::<Result<_>>()?;
    if let Some(path) = ready_file {
        std::fs::write(path, b"ready\n").with_context(|| format!("writing {}", path.display()))?;
    }
    std::thread::scope(|scope| {
        for socket in bound {
            scope.spawn(move || serve(socket));
        }
    });
    Ok(())
}

/// Where a pod's server keeps its log and ready file.
pub fn files(state_dir: &Path, pod: &str) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("pods");
    let stem = pod.replace('/', ".");
    (
        dir.join(format!("{stem}.serve.log")),
        dir.join(format!("{stem}.serve.ready")),
    )
}

/// Starts `starling lab serve` inside network namespace `netns`, detached; returns its pid once
/// every port is bound.
pub fn spawn(
    binary: &Path,
    netns: &str,
    state_dir: &Path,
    pod: &str,
    ports: &[ServePort],
    timeout: Duration,
) -> Result<u32> {
    let (log_path, ready) = files(state_dir, pod);
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&ready);
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let child = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(binary)
        .args(["lab", "serve", "--ready-file"])
        .arg(&ready)
        .args(ports.iter().map(ToString::to_string))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C on the lab command must not stop the servers.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting the servers of pod {pod}"))?;
    let pid = child.id();
    let deadline = Instant::now() + timeout;
    loop {
        if ready.exists() {
            return Ok(pid);
        }
        let gone = matches!(
            nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid as i32),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            ),
            Ok(status) if status != nix::sys::wait::WaitStatus::StillAlive
        );
        if gone || Instant::now() >= deadline {
            daemons::stop(pid, Duration::from_secs(1));
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "the servers of pod {pod} did not start: {}",
                if text.trim().is_empty() {
                    format!("not ready within {timeout:?}")
                } else {
                    text.trim().to_string()
                }
            );
        }
        std::thread::sleep(super::POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_lists_parse_and_refuse_what_kubernetes_refuses() {
        let ports = parse_list("serve-80-tcp=tcp/80, serve-80-udp=UDP/80,sctp/9").unwrap();
        assert_eq!(
            ports,
            vec![
                ServePort {
                    name: Some("serve-80-tcp".into()),
                    protocol: Protocol::Tcp,
                    port: 80
                },
                ServePort {
                    name: Some("serve-80-udp".into()),
                    protocol: Protocol::Udp,
                    port: 80
                },
                ServePort {
                    name: None,
                    protocol: Protocol::Sctp,
                    port: 9
                },
            ]
        );
        assert_eq!(ports[1].to_string(), "serve-80-udp=udp/80");
        assert_eq!(ports[2].to_string(), "sctp/9");
        for (bad, says) in [
            ("tcp/0", "not 1-65535"),
            ("tcp/70000", "not 1-65535"),
            ("icmp/1", "not tcp, udp or sctp"),
            ("tcp80", "not [NAME=]PROTO/PORT"),
            ("Web=tcp/80", "IANA_SVC_NAME"),
            ("a-very-long-port-name=tcp/80", "IANA_SVC_NAME"),
            ("80=tcp/80", "IANA_SVC_NAME"),
            ("tcp/80,tcp/80", "served twice"),
            ("w=tcp/80,w=udp/80", "used twice"),
        ] {
            let error = parse_list(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
        assert!(is_port_name("serve-81-udp"));
        assert!(!is_port_name("a--b"));
    }

    #[test]
    fn serialised_protocols_use_kubernetes_spelling() {
        let port: ServePort = "dns=udp/53".parse().unwrap();
        assert_eq!(
            serde_json::to_value(&port).unwrap(),
            serde_json::json!({"name": "dns", "protocol": "UDP", "port": 53})
        );
    }
}
