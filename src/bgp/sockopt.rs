//! Socket options BGP needs that the standard library and tokio do not offer: TCP MD5
//! signatures (RFC 2385) per peer address, and the generalized TTL security mechanism (RFC 5082:
//! send with TTL 255, refuse packets below a minimum TTL).
//!
//! This is the only module of the crate with `unsafe`: each function is one `setsockopt` call
//! on a file descriptor the caller owns, with a value laid out as the kernel's UAPI defines it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// `TCP_MD5SIG_MAXKEYLEN` from linux/tcp.h.
const MD5_MAXIMUM_KEY_LENGTH: usize = 80;

/// `struct tcp_md5sig` from linux/tcp.h (flags/prefixlen/ifindex are zero: exact address).
#[repr(C)]
struct TcpMd5Signature {
    address: libc::sockaddr_storage,
    flags: u8,
    prefix_length: u8,
    key_length: u16,
    interface_index: libc::c_int,
    key: [u8; MD5_MAXIMUM_KEY_LENGTH],
}

#[derive(Debug, thiserror::Error)]
pub enum SocketOptionError {
    #[error("TCP MD5 password for {peer} is {length} bytes; at most 80 are allowed")]
    PasswordTooLong { peer: IpAddr, length: usize },
    #[error("setsockopt {option} for {peer}: {source}")]
    Setsockopt {
        option: &'static str,
        peer: IpAddr,
        #[source]
        source: io::Error,
    },
}

fn storage_of(address: IpAddr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match address {
        IpAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe {
                std::ptr::write(
                    (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
        }
        IpAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe {
                std::ptr::write(
                    (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
        }
    }
    storage
}

fn set<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    option: &'static str,
    peer: IpAddr,
) -> Result<(), SocketOptionError> {
    // SAFETY: `value` points to a live, initialised T and the length passed is its size.
    let result = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(SocketOptionError::Setsockopt {
            option,
            peer,
            source: io::Error::last_os_error(),
        })
    }
}

/// Sets (`Some`) or removes (`None`) the TCP MD5 key for connections with `peer` on `socket`
/// (a listener or a socket about to connect). On an IPv6 socket an IPv4 peer is keyed by its
/// mapped address, which is how the kernel sees it there.
pub fn set_md5_password(
    socket: &impl AsRawFd,
    socket_is_ipv6: bool,
    peer: IpAddr,
    password: Option<&str>,
) -> Result<(), SocketOptionError> {
    let key = password.unwrap_or("").as_bytes();
    if key.len() > MD5_MAXIMUM_KEY_LENGTH {
        return Err(SocketOptionError::PasswordTooLong {
            peer,
            length: key.len(),
        });
    }
    let keyed_address = match peer {
        IpAddr::V4(v4) if socket_is_ipv6 => IpAddr::V6(v4.to_ipv6_mapped()),
        other => other,
    };
    let mut signature = TcpMd5Signature {
        address: storage_of(keyed_address),
        flags: 0,
        prefix_length: 0,
        key_length: key.len() as u16,
        interface_index: 0,
        key: [0; MD5_MAXIMUM_KEY_LENGTH],
    };
    signature.key[..key.len()].copy_from_slice(key);
    set(
        socket.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_MD5SIG,
        &signature,
        "TCP_MD5SIG",
        peer,
    )
}

/// Sends with TTL (hop limit) 255 and refuses packets that travelled more than `hops` hops
/// (RFC 5082), as BIRD's `ttl security` with Calico's `ttlSecurity` hop count does.
pub fn set_ttl_security(
    socket: &impl AsRawFd,
    local: SocketAddr,
    peer: IpAddr,
    hops: u8,
) -> Result<(), SocketOptionError> {
    let fd = socket.as_raw_fd();
    let minimum: libc::c_int = 256 - libc::c_int::from(hops.max(1));
    let maximum: libc::c_int = 255;
    if local.is_ipv4() {
        set(fd, libc::IPPROTO_IP, libc::IP_TTL, &maximum, "IP_TTL", peer)?;
        set(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MINTTL,
            &minimum,
            "IP_MINTTL",
            peer,
        )
    } else {
        set(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            &maximum,
            "IPV6_UNICAST_HOPS",
            peer,
        )?;
        set(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MINHOPCOUNT,
            &minimum,
            "IPV6_MINHOPCOUNT",
            peer,
        )
    }
}

/// Makes an IPv6 listener accept IPv6 only, so the IPv4 listener owns IPv4 peers.
pub fn set_ipv6_only(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    set(
        socket.as_raw_fd(),
        libc::IPPROTO_IPV6,
        libc::IPV6_V6ONLY,
        &on,
        "IPV6_V6ONLY",
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    )
    .map_err(|error| io::Error::other(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_keys_are_set_and_removed_on_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer: IpAddr = "127.0.0.7".parse().unwrap();
        set_md5_password(&listener, false, peer, Some("secret")).unwrap();
        set_md5_password(&listener, false, peer, None).unwrap();
    }

    #[test]
    fn overlong_password_is_refused_with_the_peer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer: IpAddr = "127.0.0.7".parse().unwrap();
        let error = set_md5_password(&listener, false, peer, Some(&"x".repeat(81))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "TCP MD5 password for 127.0.0.7 is 81 bytes; at most 80 are allowed"
        );
    }

    #[test]
    fn ttl_security_sets_the_minimum_ttl() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        set_ttl_security(&listener, local, "127.0.0.7".parse().unwrap(), 2).unwrap();
        let mut value: libc::c_int = 0;
        let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads one c_int into a live local.
        let result = unsafe {
            libc::getsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MINTTL,
                (&mut value as *mut libc::c_int).cast(),
                &mut length,
            )
        };
        assert_eq!(result, 0);
        assert_eq!(value, 254);
    }
}
