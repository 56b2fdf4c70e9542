//! The named counters of Starling's table read straight from nf_tables: one nfnetlink dump of
//! counter objects filtered by table and type in the kernel (`NFT_MSG_GETOBJ` with
//! `NFTA_OBJ_TABLE` and `NFTA_OBJ_TYPE`), so no chain, rule or set is read. `nft list counters`
//! (nftables 1.0.6) fetches the whole ruleset first: 1.4-1.8 s per family at 1000 endpoints x
//! 2000 policies, about what listing the table costs. The socket is made in the calling
//! thread's network namespace, as `nft` would run.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use starling_policy::program::Family;
use starling_policy::render::names::TABLE;
use starling_policy::render::CounterValue;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFT_MSG_GETOBJ: u16 = 19;
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFTA_OBJ_HANDLE: u16 = 6;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFT_OBJECT_COUNTER: u32 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
/// Attribute type bits (nested, byte order) that are not part of the type.
const NLA_TYPE_MASK: u16 = 0x3fff;
const HEADER: usize = 16;
/// Dumps that raced a ruleset change are retried this many times.
const ATTEMPTS: usize = 3;

fn align(length: usize) -> usize {
    (length + 3) & !3
}

fn nfproto(family: Family) -> u8 {
    match family {
        Family::V4 => libc::NFPROTO_IPV4 as u8,
        Family::V6 => libc::NFPROTO_IPV6 as u8,
    }
}

fn attribute(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let length = 4 + payload.len();
    out.extend_from_slice(&(length as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(align(out.len()), 0);
}

/// The dump request for the counters of table `<family> starling`.
pub fn request(family: Family, sequence: u32) -> Vec<u8> {
    let mut message = vec![0u8; HEADER];
    message.extend_from_slice(&[nfproto(family), 0, 0, 0]); // nfgenmsg: family, v0, res_id 0
    let mut table = TABLE.as_bytes().to_vec();
    table.push(0);
    attribute(&mut message, NFTA_OBJ_TABLE, &table);
    attribute(
        &mut message,
        NFTA_OBJ_TYPE,
        &NFT_OBJECT_COUNTER.to_be_bytes(),
    );
    let length = message.len() as u32;
    message[0..4].copy_from_slice(&length.to_ne_bytes());
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETOBJ;
    message[4..6].copy_from_slice(&kind.to_ne_bytes());
    message[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    message[8..12].copy_from_slice(&sequence.to_ne_bytes());
    message
}

/// `(type, payload)` of each attribute in `bytes`.
fn attributes(bytes: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut found = vec![];
    let mut rest = bytes;
    while rest.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if length < 4 || length > rest.len() {
            return Err(format!("attribute {kind}: length {length} out of bounds"));
        }
        found.push((kind, &rest[4..length]));
        rest = &rest[align(length).min(rest.len())..];
    }
    Ok(found)
}

fn be_u64(payload: &[u8], what: &str) -> Result<u64, String> {
    let bytes: [u8; 8] = payload
        .try_into()
        .map_err(|_| format!("{what}: {} bytes, expected 8", payload.len()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn text(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

/// One `NFT_MSG_NEWOBJ` payload (after the nlmsghdr): the counter, or `None` for an object of
/// another table or type.
fn counter(payload: &[u8]) -> Result<Option<CounterValue>, String> {
    let attributes = attributes(payload.get(4..).unwrap_or_default())?;
    let (mut table, mut name, mut kind, mut handle) = (None, None, None, None);
    let (mut packets, mut bytes) = (None, None);
    for (attribute, value) in attributes {
        match attribute {
            NFTA_OBJ_TABLE => table = Some(text(value)),
            NFTA_OBJ_NAME => name = Some(text(value)),
            NFTA_OBJ_TYPE => {
                let raw: [u8; 4] = value.try_into().map_err(|_| "object type: not 4 bytes")?;
                kind = Some(u32::from_be_bytes(raw));
            }
            NFTA_OBJ_HANDLE => handle = Some(be_u64(value, "object handle")?),
            NFTA_OBJ_DATA => {
                for (inner, value) in self::attributes(value)? {
                    match inner {
                        NFTA_COUNTER_PACKETS => packets = Some(be_u64(value, "packets")?),
                        NFTA_COUNTER_BYTES => bytes = Some(be_u64(value, "bytes")?),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if table.as_deref() != Some(TABLE) || kind != Some(NFT_OBJECT_COUNTER) {
        return Ok(None);
    }
    let name = name.ok_or("counter without a name")?;
    let missing = |what: &str| format!("counter {name}: no {what}");
    Ok(Some(CounterValue {
        handle: handle.ok_or_else(|| missing("handle"))?,
        packets: packets.ok_or_else(|| missing("packets"))?,
        bytes: bytes.ok_or_else(|| missing("bytes"))?,
        name,
    }))
}

/// What one received buffer held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub counters: Vec<CounterValue>,
    pub done: bool,
    /// The ruleset changed during the dump (`NLM_F_DUMP_INTR`): start again.
    pub interrupted: bool,
}

/// Parses the messages of one `recv` answering request `sequence`.
pub fn parse(buffer: &[u8], sequence: u32) -> Result<Batch, String> {
    let mut batch = Batch::default();
    let mut rest = buffer;
    while rest.len() >= HEADER {
        let length = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let flags = u16::from_ne_bytes([rest[6], rest[7]]);
        let seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if length < HEADER || length > rest.len() {
            return Err(format!("message length {length} out of bounds"));
        }
        let payload = &rest[HEADER..length];
        rest = &rest[align(length).min(rest.len())..];
        if seq != sequence {
            continue; // an answer to an earlier, abandoned request
        }
        if flags & NLM_F_DUMP_INTR != 0 {
            batch.interrupted = true;
        }
        match kind {
            NLMSG_DONE => {
                batch.done = true;
                break;
            }
            NLMSG_ERROR => {
                let raw: [u8; 4] = payload
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or("short error message")?;
                let code = i32::from_ne_bytes(raw);
                if code == 0 {
                    continue;
                }
                if -code == libc::ENOENT {
                    batch.done = true; // no such table: no counters
                    break;
                }
                return Err(std::io::Error::from_raw_os_error(-code).to_string());
            }
            _ if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ => {
                if let Some(value) = counter(payload)? {
                    batch.counters.push(value);
                }
            }
            _ => {}
        }
    }
    Ok(batch)
}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn dump(family: Family, sequence: u32) -> Result<Batch, String> {
    // SAFETY: plain socket(2); the descriptor is owned (and closed) by `socket` below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(os_error("netlink socket"));
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: the option value points at a live timeval of the size given.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if set < 0 {
        return Err(os_error("netlink receive timeout"));
    }
    let message = request(family, sequence);
    // SAFETY: the buffer is live for the call; the kernel (port 0) is the default destination.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
        )
    };
    if sent < 0 || sent as usize != message.len() {
        return Err(os_error("netlink send"));
    }
    let mut all = Batch::default();
    // Dump messages are at most 32 KiB (the kernel's cap for one dump skb).
    let mut buffer = vec![0u8; 64 * 1024];
    while !all.done {
        // SAFETY: receives into the owned buffer, at most its length; MSG_TRUNC makes the
        // call report a message's real length so truncation is detected.
        let received = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_TRUNC,
            )
        };
        if received < 0 {
            return Err(os_error("netlink receive"));
        }
        let received = received as usize;
        if received > buffer.len() {
            return Err(format!("netlink message of {received} bytes truncated"));
        }
        if received == 0 {
            return Err("netlink socket closed mid-dump".into());
        }
        let batch = parse(&buffer[..received], sequence)?;
        all.counters.extend(batch.counters);
        all.done = batch.done;
        all.interrupted |= batch.interrupted;
    }
    Ok(all)
}

/// The counters of table `<family> starling` with their values (none when it does not exist);
/// the error says what failed (the caller names the table).
pub fn dump_counters(family: Family) -> Result<Vec<CounterValue>, String> {
    for attempt in 0..ATTEMPTS {
        let batch = dump(family, 0x5354_0000 + attempt as u32)?;
        if !batch.interrupted {
            return Ok(batch.counters);
        }
    }
    Err(format!(
        "the ruleset changed during each of {ATTEMPTS} dumps"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u16, flags: u16, sequence: u32, payload: &[u8]) -> Vec<u8> {
        let mut message = vec![];
        message.extend_from_slice(&((HEADER + payload.len()) as u32).to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&flags.to_ne_bytes());
        message.extend_from_slice(&sequence.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(payload);
        message.resize(align(message.len()), 0);
        message
    }

    fn object(table: &str, name: &str, kind: u32, packets: u64, bytes: u64) -> Vec<u8> {
        let mut payload = vec![2, 0, 0, 0];
        let z = |s: &str| [s.as_bytes(), &[0]].concat();
        attribute(&mut payload, NFTA_OBJ_TABLE, &z(table));
        attribute(&mut payload, NFTA_OBJ_NAME, &z(name));
        attribute(&mut payload, NFTA_OBJ_TYPE, &kind.to_be_bytes());
        let mut data = vec![];
        attribute(&mut data, NFTA_COUNTER_BYTES, &bytes.to_be_bytes());
        attribute(&mut data, NFTA_COUNTER_PACKETS, &packets.to_be_bytes());
        attribute(&mut payload, NFTA_OBJ_DATA | 0x8000, &data);
        attribute(&mut payload, NFTA_OBJ_HANDLE, &9u64.to_be_bytes());
        header((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ, 2, 7, &payload)
    }

    #[test]
    fn the_request_filters_by_table_and_counter_type() {
        let message = request(Family::V6, 7);
        assert_eq!(message.len(), 16 + 4 + 16 + 8);
        assert_eq!(u16::from_ne_bytes([message[4], message[5]]), 0x0a13);
        assert_eq!(message[16], 10, "NFPROTO_IPV6");
        assert_eq!(&message[24..33], b"starling\0");
        assert_eq!(&message[40..44], &1u32.to_be_bytes());
    }

    #[test]
    fn dump_messages_parse_into_counters_and_errors_are_named() {
        let mut buffer = object(TABLE, "tw-cali1.drop", NFT_OBJECT_COUNTER, 3, 180);
        buffer.extend(object("other", "x", NFT_OBJECT_COUNTER, 1, 1));
        buffer.extend(object(TABLE, "quota", 2, 1, 1));
        buffer.extend(header(NLMSG_DONE, 2, 6, &0i32.to_ne_bytes())); // stale sequence
        let batch = parse(&buffer, 7).unwrap();
        assert_eq!(
            batch.counters,
            [CounterValue {
                name: "tw-cali1.drop".into(),
                handle: 9,
                packets: 3,
                bytes: 180
            }]
        );
        assert!(!batch.done && !batch.interrupted);
        let done = header(NLMSG_DONE, NLM_F_DUMP_INTR, 7, &0i32.to_ne_bytes());
        let batch = parse(&done, 7).unwrap();
        assert!(batch.done && batch.interrupted);
        let denied = header(NLMSG_ERROR, 0, 7, &(-libc::EPERM).to_ne_bytes());
        let error = parse(&denied, 7).unwrap_err();
        assert!(error.contains("not permitted"), "{error}");
        let absent = header(NLMSG_ERROR, 0, 7, &(-libc::ENOENT).to_ne_bytes());
        assert!(parse(&absent, 7).unwrap().done);
        let mut short = object(TABLE, "x", NFT_OBJECT_COUNTER, 1, 1);
        short.truncate(30);
        assert!(parse(&short, 7).unwrap_err().contains("out of bounds"));
    }
}
