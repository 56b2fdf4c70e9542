//! BFD's UDP sockets (RFC 5881): one receiving socket per family on port 3784 that reports
//! each datagram's TTL / hop limit, and sending sockets with TTL 255 bound to a session's local
//! address and a source port from 49152–65535, shared by every session using that address.

use std::collections::HashMap;
use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, MsgFlags,
    SockFlag, SockProtocol, SockType, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use starling_bgp::bfd::CONTROL_PORT;

/// RFC 5881 §4: the TTL every packet is sent with and every received packet must carry.
pub const TTL: u8 = 255;
const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// One datagram with the TTL (or IPv6 hop limit) it arrived with, when the kernel said.
pub struct Datagram {
    pub source: IpAddr,
    pub ttl: Option<u8>,
    pub length: usize,
}

fn errno(error: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(error as i32)
}

fn udp_socket(ipv6: bool) -> io::Result<OwnedFd> {
    let family = if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::Udp,
    )
    .map_err(errno)
}

fn into_tokio(fd: OwnedFd) -> io::Result<UdpSocket> {
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

fn bind_to(fd: &OwnedFd, address: SocketAddr) -> io::Result<()> {
    bind(fd.as_raw_fd(), &SockaddrStorage::from(address)).map_err(errno)
}

/// The receiving socket of one family: port 3784 on every address, TTLs reported.
pub fn receiver(ipv6: bool) -> io::Result<UdpSocket> {
    let fd = udp_socket(ipv6)?;
    let any = if ipv6 {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(errno)?;
        setsockopt(&fd, sockopt::Ipv6RecvHopLimit, &true).map_err(errno)?;
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        setsockopt(&fd, sockopt::Ipv4RecvTtl, &true).map_err(errno)?;
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    bind_to(&fd, SocketAddr::new(any, CONTROL_PORT))?;
    into_tokio(fd)
}

/// Waits for the next datagram on a [`receiver`] socket.
pub async fn receive(socket: &UdpSocket, buffer: &mut [u8]) -> io::Result<Datagram> {
    socket
        .async_io(Interest::READABLE, || {
            let mut control = nix::cmsg_space!(libc::c_int, libc::c_int);
            let mut iov = [IoSliceMut::new(buffer)];
            let message = recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut control),
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(errno)?;
            let source = message
                .address
                .as_ref()
                .and_then(storage_ip)
                .ok_or_else(|| io::Error::other("datagram without a source address"))?;
            let mut ttl = None;
            if let Ok(messages) = message.cmsgs() {
                for control in messages {
                    match control {
                        ControlMessageOwned::Ipv4Ttl(value)
                        | ControlMessageOwned::Ipv6HopLimit(value) => {
                            ttl = u8::try_from(value).ok();
                        }
                        _ => {}
                    }
                }
            }
            Ok(Datagram {
                source: canonical(source),
                ttl,
                length: message.bytes,
            })
        })
        .await
}

fn storage_ip(storage: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    storage.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// IPv4-mapped IPv6 addresses are the IPv4 peer they stand for.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        other => other,
    }
}

/// Sending sockets by local address (`None`: the family's wildcard, the kernel picks).
#[derive(Default)]
pub struct Senders {
    sockets: HashMap<(bool, Option<IpAddr>), UdpSocket>,
}

impl Senders {
    /// Sends one packet to `peer`:3784 from `local`, opening that address's socket first.
    pub fn send(&mut self, local: Option<IpAddr>, peer: IpAddr, bytes: &[u8]) -> io::Result<()> {
        let key = (peer.is_ipv6(), local);
        let socket = match self.sockets.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(sender(peer.is_ipv6(), local)?)
            }
        };
        socket
            .try_send_to(bytes, SocketAddr::new(peer, CONTROL_PORT))
            .map(|_| ())
    }

    /// Closes the sockets no session uses any more.
    pub fn retain(&mut self, in_use: &[(bool, Option<IpAddr>)]) {
        self.sockets.retain(|key, _| in_use.contains(key));
    }
}

/// A socket sending with TTL 255 from `local` and a free port in 49152–65535.
fn sender(ipv6: bool, local: Option<IpAddr>) -> io::Result<UdpSocket> {
    let address = local.unwrap_or(if ipv6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let first: u32 = rand::random::<u32>() % span;
    let mut last_error = io::Error::other("no source port tried");
    // A random start spreads sessions of different processes; a few collisions are tolerated.
    for attempt in 0..64u32 {
        let port = SOURCE_PORTS.start() + ((first + attempt * 7919) % span) as u16;
        let fd = udp_socket(ipv6)?;
        if ipv6 {
            setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(errno)?;
            setsockopt(&fd, sockopt::Ipv6Ttl, &i32::from(TTL)).map_err(errno)?;
        } else {
            setsockopt(&fd, sockopt::Ipv4Ttl, &i32::from(TTL)).map_err(errno)?;
        }
        match bind_to(&fd, SocketAddr::new(address, port)) {
            Ok(()) => return into_tokio(fd),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = error,
            Err(error) => {
                return Err(io::Error::new(
                    error.kind(),
                    format!("bind BFD source {address}:{port}: {error}"),
                ))
            }
        }
    }
    Err(last_error)
}
