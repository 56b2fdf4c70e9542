//! The I/O of one BGP connection and the per-connection FSM slot the speaker drives.
//!
//! Contract: [`spawn_connection`] splits a TCP stream into a reader task that frames messages
//! with [`codec::frame_length`] and reports each frame (or the framing error, or the end of the
//! stream) as a [`ConnectionEvent`], and a writer task that writes queued byte buffers in order
//! and closes the socket once the [`Connection`] is dropped (after flushing what was queued, so
//! a NOTIFICATION before a close reaches the peer). [`connect`] opens an outgoing connection
//! with the session's source address, TCP-MD5 password and TTL security applied before the SYN.
//! Decoding happens in the speaker, which knows the negotiated codec options.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::sockopt;
use starling_bgp::codec::{self, DecodeError};
use starling_bgp::fsm::{ConnectionOrigin, Fsm, Timer};

/// What a connection's reader reports to the speaker.
#[derive(Debug)]
pub enum ConnectionEvent {
    /// One complete message, header included.
    Frame(Vec<u8>),
    /// The stream is not valid BGP framing; the connection is unusable.
    FramingError(DecodeError),
    /// The peer closed the connection or it failed.
    Closed(String),
}

/// Identifies a connection in the speaker's events.
pub type ConnectionId = u64;

/// Frames and events of every connection towards the speaker's actor, bounded: when the actor
/// is behind, readers wait, stop reading their sockets, and TCP's window holds the peers back
/// instead of an unbounded buffer in the speaker.
pub type EventSender = mpsc::Sender<(ConnectionId, ConnectionEvent)>;

/// How many frames may wait for the actor, across all connections.
pub const INBOUND_EVENTS: usize = 1024;

/// A live connection: dropping it closes the socket after the queued bytes are written.
#[derive(Debug)]
pub struct Connection {
    pub id: ConnectionId,
    pub origin: ConnectionOrigin,
    pub local_address: SocketAddr,
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
}

impl Connection {
    /// Queues bytes for the peer (ignored when the writer has already stopped).
    pub fn send(&self, bytes: Vec<u8>) {
        let _ = self.outgoing.send(bytes);
    }

    /// Closes the connection and waits (bounded) until queued bytes are written.
    pub async fn close_flushed(mut self, limit: Duration) {
        self.reader.abort();
        let writer = self.writer.take();
        drop(self);
        if let Some(writer) = writer {
            let _ = tokio::time::timeout(limit, writer).await;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer ends by itself once the sender is gone; the reader must be stopped.
        self.reader.abort();
    }
}

/// Bytes a connection reads at a time: a standard BGP message's maximum. A bulk transfer
/// grows the buffer as it needs (an UPDATE is not split across reads waiting for room).
const READ_CHUNK: usize = 4096;

/// Keeps an idle connection's read buffer to one small allocation. Reading into a `BytesMut`
/// moves its start forward with every frame taken out, so a large buffer would have every one
/// of its pages touched by keepalives alone (199 mesh sessions × 64 KiB was ~12 MiB of
/// resident memory per daemon). Once empty, a buffer that walked off its room or that a burst
/// left large is replaced by a fresh small one, which malloc hands back from the same pages.
fn refresh_read_buffer(buffer: &mut BytesMut) {
    if buffer.is_empty() {
        if buffer.capacity() < READ_CHUNK || buffer.capacity() > 4 * READ_CHUNK {
            *buffer = BytesMut::with_capacity(READ_CHUNK);
        }
    } else {
        buffer.reserve(READ_CHUNK);
    }
}

/// Starts the reader and writer tasks for `stream`. Events go to `events` tagged with `id`.
pub fn spawn_connection(
    stream: TcpStream,
    id: ConnectionId,
    origin: ConnectionOrigin,
    events: EventSender,
) -> std::io::Result<Connection> {
    let local_address = stream.local_addr()?;
    let _ = stream.set_nodelay(true);
    let (mut read_half, mut write_half) = stream.into_split();
    let (outgoing, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = queue.recv().await {
            if write_half.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = write_half.shutdown().await;
    });
    let reader = tokio::spawn(async move {
        let mut buffer = BytesMut::with_capacity(READ_CHUNK);
        loop {
            loop {
                match codec::frame_length(&buffer) {
                    Ok(Some(length)) if buffer.len() >= length => {
                        let frame = buffer.split_to(length).to_vec();
                        if events
                            .send((id, ConnectionEvent::Frame(frame)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => break,
                    Err(error) => {
                        let _ = events
                            .send((id, ConnectionEvent::FramingError(error)))
                            .await;
                        return;
                    }
                }
            }
            refresh_read_buffer(&mut buffer);
            match read_half.read_buf(&mut buffer).await {
                Ok(0) => {
                    let closed = ConnectionEvent::Closed("closed by peer".into());
                    let _ = events.send((id, closed)).await;
                    return;
                }
                Ok(_) => {}
                Err(error) => {
                    let _ = events
                        .send((id, ConnectionEvent::Closed(error.to_string())))
                        .await;
                    return;
                }
            }
        }
    });
    Ok(Connection {
        id,
        origin,
        local_address,
        outgoing,
        reader,
        writer: Some(writer),
    })
}

/// Socket settings of one session's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSettings {
    pub peer: SocketAddr,
    pub source: Option<IpAddr>,
    pub password: Option<String>,
    pub ttl_security: Option<u8>,
}

/// Opens an outgoing connection with the session's socket settings.
pub async fn connect(settings: ConnectSettings) -> std::io::Result<TcpStream> {
    let socket = if settings.peer.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    let peer_address = settings.peer.ip();
    if let Some(password) = &settings.password {
        sockopt::set_md5_password(
            &socket,
            settings.peer.is_ipv6(),
            peer_address,
            Some(password),
        )
        .map_err(std::io::Error::other)?;
    }
    if let Some(source) = settings.source {
        if source.is_ipv4() == peer_address.is_ipv4() {
            socket.bind(SocketAddr::new(source, 0))?;
        }
    }
    if let Some(hops) = settings.ttl_security {
        let local = SocketAddr::new(
            settings.source.unwrap_or(if peer_address.is_ipv4() {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            }),
            0,
        );
        sockopt::set_ttl_security(&socket, local, peer_address, hops)
            .map_err(std::io::Error::other)?;
    }
    socket.connect(settings.peer).await
}

/// One FSM with its connection and armed timers. A session has a primary slot and, during a
/// connection collision (RFC 4271 §6.8), a second one for the other connection.
#[derive(Debug)]
pub struct Slot {
    pub fsm: Fsm,
    pub connection: Option<Connection>,
    pub timers: BTreeMap<Timer, Instant>,
    /// The FSM was started passive although the session is active (it took over an incoming
    /// connection during a collision); it is replaced by a fresh active FSM when it goes down.
    pub started_passive: bool,
}

impl Slot {
    pub fn new(fsm: Fsm) -> Slot {
        Slot {
            fsm,
            connection: None,
            timers: BTreeMap::new(),
            started_passive: false,
        }
    }

    /// The earliest armed timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.values().min().copied()
    }

    /// Timers due at `now`, removed from the armed set.
    pub fn take_due(&mut self, now: Instant) -> Vec<Timer> {
        let due: Vec<Timer> = self
            .timers
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(timer, _)| *timer)
            .collect();
        for timer in &due {
            self.timers.remove(timer);
        }
        due
    }

    pub fn connection_id(&self) -> Option<ConnectionId> {
        self.connection.as_ref().map(|connection| connection.id)
    }
}
