//! Counts a namespace's kernel route writes: a netlink socket in that namespace subscribed to
//! IPv4 route notifications (what `ip monitor route` prints), counting RTM_NEWROUTE and
//! RTM_DELROUTE of one routing protocol in the main table whose destination is in the
//! benchmark's range ([`RANGE`] unless told another: other routes, such as a node's own block,
//! do not count), and keeping the set of those routes present since it started. The kernel sends one notification
//! per route it added, replaced or deleted, so this sees the writes of whichever daemon owns
//! that protocol, Starling or BIRD alike. The receive buffer is forced large (SO_RCVBUFFORCE,
//! root) so 100 000 quick writes fit; should the kernel still drop notifications, `overflowed`
//! says so and the counts are a lower bound.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RT_TABLE_MAIN: u8 = 254;
const NLMSG_HEADER: usize = 16;
const RTMSG: usize = 12;
const RTA_DST: u16 = 1;
const RTN_UNICAST: u8 = 1;
/// Where the benchmark's prefixes are (20.0.0.0/7 holds 131 072 /24s).
pub const RANGE: &str = "20.0.0.0/7";
const RECEIVE_BUFFER: libc::c_int = 256 << 20;

#[derive(Default)]
struct Counts {
    added: AtomicU64,
    deleted: AtomicU64,
    /// Routes in range present now, as the notifications since the start tell.
    present: AtomicU64,
    overflowed: AtomicBool,
    stop: AtomicBool,
}

/// Route writes seen so far: (added or replaced, deleted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Writes {
    pub added: u64,
    pub deleted: u64,
}

impl Writes {
    pub fn total(self) -> u64 {
        self.added + self.deleted
    }

    pub fn since(self, earlier: Writes) -> Writes {
        Writes {
            added: self.added - earlier.added,
            deleted: self.deleted - earlier.deleted,
        }
    }
}

/// A running monitor; stops on drop.
pub struct RouteMonitor {
    counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

impl RouteMonitor {
    /// Starts counting writes of routes with `protocol` (e.g. 12, `proto bird`) in `namespace`.
    pub fn start(namespace: &str, protocol: u8) -> RouteMonitor {
        RouteMonitor::start_in(namespace, protocol, default_range(), None)
    }

    /// The same, for destinations in `range` (the network's first address and prefix length);
    /// with `unicast_length`, only unicast routes (not blackholes) of that prefix length count.
    pub fn start_in(
        namespace: &str,
        protocol: u8,
        range: (Ipv4Addr, u8),
        unicast_length: Option<u8>,
    ) -> RouteMonitor {
        let socket = starling::netns::run_in(namespace, open_socket)
            .unwrap_or_else(|error| panic!("entering {namespace}: {error}"))
            .unwrap_or_else(|error| panic!("netlink monitor in {namespace}: {error}"));
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let range = Range::new(range, unicast_length);
        let thread = std::thread::spawn(move || read_loop(&socket, protocol, range, &shared));
        RouteMonitor {
            counts,
            thread: Some(thread),
        }
    }

    pub fn writes(&self) -> Writes {
        Writes {
            added: self.counts.added.load(Ordering::SeqCst),
            deleted: self.counts.deleted.load(Ordering::SeqCst),
        }
    }

    /// How many routes in range are in the kernel, counting only those added since the start.
    pub fn present(&self) -> u64 {
        self.counts.present.load(Ordering::SeqCst)
    }

    /// Whether the kernel dropped notifications (ENOBUFS) at some point.
    pub fn overflowed(&self) -> bool {
        self.counts.overflowed.load(Ordering::SeqCst)
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        self.counts.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let socket = OwnedFd::from_raw_fd(fd);
        let size = RECEIVE_BUFFER;
        set_option(&socket, libc::SO_RCVBUFFORCE, &size)?;
        // A read timeout lets the reader notice `stop`.
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        set_option(&socket, libc::SO_RCVTIMEO, &timeout)?;
        let mut address: libc::sockaddr_nl = std::mem::zeroed();
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        address.nl_groups = libc::RTMGRP_IPV4_ROUTE as u32;
        let bound = libc::bind(
            socket.as_raw_fd(),
            &address as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        );
        if bound < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(socket)
    }
}

fn set_option<T>(socket: &OwnedFd, option: libc::c_int, value: &T) -> std::io::Result<()> {
    // SAFETY: `value` is a live T and the length passed is its size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Destinations a monitor counts: those whose first `mask` bits equal `network`'s.
#[derive(Clone, Copy)]
struct Range {
    network: u32,
    mask: u32,
    unicast_length: Option<u8>,
}

impl Range {
    fn new((network, length): (Ipv4Addr, u8), unicast_length: Option<u8>) -> Range {
        let mask = u32::MAX.checked_shl(32 - u32::from(length)).unwrap_or(0);
        Range {
            network: u32::from(network) & mask,
            mask,
            unicast_length,
        }
    }

    fn holds(self, address: Ipv4Addr, length: u8, kind: u8) -> bool {
        u32::from(address) & self.mask == self.network
            && self
                .unicast_length
                .is_none_or(|wanted| wanted == length && kind == RTN_UNICAST)
    }
}

fn default_range() -> (Ipv4Addr, u8) {
    (Ipv4Addr::new(20, 0, 0, 0), 7)
}

fn read_loop(socket: &OwnedFd, protocol: u8, range: Range, counts: &Counts) {
    let mut present = HashSet::new();
    let mut buffer = vec![0u8; 1 << 16];
    while !counts.stop.load(Ordering::SeqCst) {
        // SAFETY: reads into a buffer of the length given.
        let read = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr() as *mut libc::c_void,
                buffer.len(),
                0,
            )
        };
        if read < 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ENOBUFS) => counts.overflowed.store(true, Ordering::SeqCst),
                Some(libc::EAGAIN) | Some(libc::EINTR) => {}
                _ => return,
            }
            continue;
        }
        count_messages(
            &buffer[..read as usize],
            protocol,
            range,
            counts,
            &mut present,
        );
        counts.present.store(present.len() as u64, Ordering::SeqCst);
    }
}

/// Walks the netlink messages of one datagram: header (length, type, ...), then the rtmsg
/// (family, dst_len, src_len, tos, table, protocol, ...).
fn count_messages(
    mut data: &[u8],
    protocol: u8,
    range: Range,
    counts: &Counts,
    present: &mut HashSet<(Ipv4Addr, u8)>,
) {
    while data.len() >= NLMSG_HEADER + RTMSG {
        let length = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if length < NLMSG_HEADER + RTMSG || length > data.len() {
            return;
        }
        let prefix_length = data[NLMSG_HEADER + 1];
        let table = data[NLMSG_HEADER + 4];
        let message_protocol = data[NLMSG_HEADER + 5];
        let route_type = data[NLMSG_HEADER + 7];
        let counted = destination(&data[NLMSG_HEADER + RTMSG..length])
            .filter(|address| range.holds(*address, prefix_length, route_type));
        if let (RT_TABLE_MAIN, true, Some(address)) = (table, message_protocol == protocol, counted)
        {
            match kind {
                RTM_NEWROUTE => {
                    counts.added.fetch_add(1, Ordering::SeqCst);
                    present.insert((address, prefix_length));
                }
                RTM_DELROUTE => {
                    counts.deleted.fetch_add(1, Ordering::SeqCst);
                    present.remove(&(address, prefix_length));
                }
                _ => {}
            }
        }
        data = &data[(length.div_ceil(4) * 4).min(data.len())..];
    }
}

/// The IPv4 RTA_DST attribute of a route message (the bytes after its rtmsg).
fn destination(mut attributes: &[u8]) -> Option<Ipv4Addr> {
    while attributes.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([attributes[0], attributes[1]]));
        let kind = u16::from_ne_bytes([attributes[2], attributes[3]]);
        if length < 4 || length > attributes.len() {
            return None;
        }
        if kind == RTA_DST && length == 8 {
            return Some(Ipv4Addr::new(
                attributes[4],
                attributes[5],
                attributes[6],
                attributes[7],
            ));
        }
        attributes = &attributes[(length.div_ceil(4) * 4).min(attributes.len())..];
    }
    None
}

/// Routes of `protocol` under [`RANGE`] in the namespace's main table.
pub fn kernel_count(namespace: &str, protocol: u8) -> usize {
    let protocol = protocol.to_string();
    std::process::Command::new("ip")
        .args([
            "-n", namespace, "route", "show", "proto", &protocol, "root", RANGE,
        ])
        .output()
        .map(|output| output.stdout.iter().filter(|byte| **byte == b'\n').count())
        .unwrap_or(0)
}
