//! Route, neighbour and FDB writes in batches on a raw NETLINK_ROUTE socket: up to [`WINDOW`]
//! requests serialised into one datagram (the kernel runs every message of a datagram in
//! turn, failing ones included), then their ACKs read back and matched by sequence number.
//! A learned table of 100 000 routes is about 400 `send`s this way instead of 100 000 requests,
//! each with its own channel, stream and wake-up, through the rtnetlink connection task.
//! `NETLINK_CAP_ACK` keeps each ACK at 36 bytes, so a window's ACKs fit the default receive
//! buffer. The socket is opened in the calling thread's network namespace.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use rtnetlink::packet_core::{NetlinkMessage, NLM_F_ACK, NLM_F_REQUEST};
use rtnetlink::packet_route::RouteNetlinkMessage;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::kernel::KernelError;
use super::netlink_messages::netlink_error;

/// Requests per datagram (and ACKs awaited before the next one).
pub(super) const WINDOW: usize = 256;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NLMSG_ERROR: u16 = 2;
const HEADER: usize = 16;

pub(super) struct BatchSocket {
    fd: AsyncFd<OwnedFd>,
    sequence: u32,
    send_buffer: Vec<u8>,
    receive_buffer: Vec<u8>,
}

fn io_error(operation: &str, error: io::Error) -> KernelError {
    KernelError::Io {
        operation: operation.to_string(),
        message: error.to_string(),
    }
}

impl BatchSocket {
    /// Inside a tokio runtime with IO enabled.
    pub(super) fn open() -> Result<BatchSocket, KernelError> {
        let operation = "open the batched rtnetlink socket";
        // SAFETY: plain socket(2); the descriptor is owned right below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io_error(operation, io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let on: libc::c_int = 1;
        // SAFETY: a valid descriptor and an int option. Kernels without CAP_ACK echo each
        // request in its ACK, which still fits a window; so a failure is not fatal.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_CAP_ACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        // SAFETY: the OwnedFd moves into the AsyncFd and stays open, the same descriptor,
        // until the AsyncFd is dropped.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
                .map_err(|error| KernelError::Io {
                    operation: operation.to_string(),
                    message: error.to_string(),
                })?;
        Ok(BatchSocket {
            fd,
            sequence: 1,
            send_buffer: Vec::new(),
            receive_buffer: vec![0; 64 * 1024],
        })
    }

    /// Sends the requests (with `NLM_F_ACK` added to their flags) and returns one result per
    /// request, in order. `describe(i)` names request `i` in its error.
    pub(super) async fn send_all(
        &mut self,
        requests: Vec<Result<(RouteNetlinkMessage, u16), KernelError>>,
        describe: impl Fn(usize) -> String,
    ) -> Vec<Result<(), KernelError>> {
        let mut results: Vec<Option<Result<(), KernelError>>> =
            requests.iter().map(|_| None).collect();
        let mut pending: Vec<(usize, RouteNetlinkMessage, u16)> = Vec::new();
        for (index, request) in requests.into_iter().enumerate() {
            match request {
                Ok((message, flags)) => pending.push((index, message, flags)),
                Err(error) => results[index] = Some(Err(error)),
            }
        }
        let mut pending = pending.into_iter().peekable();
        while pending.peek().is_some() {
            let window: Vec<_> = pending.by_ref().take(WINDOW).collect();
            self.send_window(window, &mut results, &describe).await;
        }
        results
            .into_iter()
            .enumerate()
            .map(|(index, result)| {
                result.unwrap_or_else(|| {
                    Err(KernelError::Io {
                        operation: describe(index),
                        message: "no acknowledgement from the kernel".to_string(),
                    })
                })
            })
            .collect()
    }

    async fn send_window(
        &mut self,
        window: Vec<(usize, RouteNetlinkMessage, u16)>,
        results: &mut [Option<Result<(), KernelError>>],
        describe: &impl Fn(usize) -> String,
    ) {
        let first_sequence = self.sequence;
        self.send_buffer.clear();
        let mut indexes = Vec::with_capacity(window.len());
        for (offset, (index, message, flags)) in window.into_iter().enumerate() {
            indexes.push(index);
            let mut request = NetlinkMessage::from(message);
            request.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
            request.header.sequence_number = first_sequence.wrapping_add(offset as u32);
            request.finalize();
            let start = self.send_buffer.len();
            self.send_buffer.resize(start + request.buffer_len(), 0);
            request.serialize(&mut self.send_buffer[start..]);
        }
        self.sequence = first_sequence.wrapping_add(indexes.len() as u32);
        let fail_all = |results: &mut [Option<Result<(), KernelError>>], message: String| {
            for index in &indexes {
                if results[*index].is_none() {
                    results[*index] = Some(Err(KernelError::Io {
                        operation: describe(*index),
                        message: message.clone(),
                    }));
                }
            }
        };
        if let Err(error) = self.send().await {
            fail_all(results, format!("sending the batch: {error}"));
            return;
        }
        let mut acknowledged = 0;
        while acknowledged < indexes.len() {
            let length = match self.receive().await {
                Ok(length) => length,
                Err(error) => {
                    fail_all(
                        results,
                        format!("reading the batch's acknowledgements: {error}"),
                    );
                    return;
                }
            };
            let mut offset = 0;
            while offset + HEADER <= length {
                let bytes = &self.receive_buffer[offset..length];
                let message_length =
                    u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
                if message_length < HEADER || message_length > bytes.len() {
                    break;
                }
                let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
                let sequence = u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                let position = sequence.wrapping_sub(first_sequence) as usize;
                if kind == NLMSG_ERROR && message_length >= HEADER + 4 && position < indexes.len() {
                    let code = i32::from_ne_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
                    let index = indexes[position];
                    if results[index].is_none() {
                        acknowledged += 1;
                        results[index] = Some(if code == 0 {
                            Ok(())
                        } else {
                            Err(netlink_error(&describe(index), code))
                        });
                    }
                }
                offset += (message_length + 3) & !3;
            }
        }
    }

    async fn send(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            let buffer = &self.send_buffer;
            // SAFETY: a valid descriptor and a live buffer of that length.
            match guard.try_io(|fd| {
                let sent =
                    unsafe { libc::send(fd.as_raw_fd(), buffer.as_ptr().cast(), buffer.len(), 0) };
                if sent < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    async fn receive(&mut self) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            let buffer = &mut self.receive_buffer;
            // SAFETY: a valid descriptor and a live buffer of that length.
            match guard.try_io(|fd| {
                let received = unsafe {
                    libc::recv(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0)
                };
                if received < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(received as usize)
                }
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}
