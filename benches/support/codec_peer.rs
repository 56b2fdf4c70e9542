//! The benchmark's own minimal BGP speaker, written with Starling's codec over blocking TCP:
//! the route reflector benchmark's clients, and the receiver benchmark's fallback injector
//! when gobgpd cannot be driven. It connects (retrying for 60 s), exchanges OPEN and
//! KEEPALIVE as AS 64512 with four-octet AS numbers, then announces or counts.

use std::collections::HashSet;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use starling_bgp::codec::{
    frame_length, pack_announcements, AsPath, Capability, CodecOptions, Family, Message, NextHop,
    Open, Origin, PathAttributes, Update,
};
use starling_model::AsNumber;

use crate::AS;

/// A minimal BGP speaker over blocking TCP: handshake, then the caller sends or counts.
pub struct MiniPeer {
    pub reader: BufReader<TcpStream>,
    pub writer: BufWriter<TcpStream>,
    pub buffer: Vec<u8>,
}

impl MiniPeer {
    /// Connects to the speaker under test, retrying until it listens and takes the session.
    pub fn connect(own: Ipv4Addr, target: Ipv4Addr) -> MiniPeer {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(peer) = MiniPeer::try_connect(own, target) {
                return peer;
            }
            assert!(Instant::now() < deadline, "no session with {target}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn try_connect(own: Ipv4Addr, target: Ipv4Addr) -> Option<MiniPeer> {
        let stream = TcpStream::connect_timeout(
            &SocketAddr::new(IpAddr::V4(target), 179),
            Duration::from_secs(2),
        )
        .ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .ok()?;
        MiniPeer::handshake(stream, own)
    }

    /// OPEN both ways and our KEEPALIVE over a connected stream.
    pub fn handshake(stream: TcpStream, own: Ipv4Addr) -> Option<MiniPeer> {
        let mut peer = MiniPeer {
            reader: BufReader::with_capacity(1 << 20, stream.try_clone().ok()?),
            writer: BufWriter::with_capacity(1 << 20, stream),
            buffer: Vec::new(),
        };
        let open = Open::new(
            AsNumber(AS),
            240,
            own,
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
            ],
        );
        peer.send(&Message::Open(open));
        peer.flush();
        match peer.receive()? {
            Message::Open(_) => {}
            _ => return None,
        }
        peer.send(&Message::Keepalive);
        peer.flush();
        Some(peer)
    }

    pub fn send(&mut self, message: &Message) {
        let bytes = message.encode(&CodecOptions::FOUR_OCTET).unwrap();
        let _ = self.writer.write_all(&bytes);
    }

    pub fn flush(&mut self) {
        let _ = self.writer.flush();
    }

    pub fn receive(&mut self) -> Option<Message> {
        loop {
            if let Ok(Some(length)) = frame_length(&self.buffer) {
                if self.buffer.len() >= length {
                    let frame: Vec<u8> = self.buffer.drain(..length).collect();
                    return Message::decode(&frame, &CodecOptions::FOUR_OCTET).ok();
                }
            }
            let mut chunk = vec![0u8; 65536];
            let read = self.reader.read(&mut chunk).ok()?;
            if read == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Announces every prefix with this peer as next hop, then End-of-RIB.
    pub fn announce(&mut self, own: Ipv4Addr, routes: &[IpNet]) {
        let attributes = PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::default()),
            local_pref: Some(100),
            ..PathAttributes::default()
        };
        let messages = pack_announcements(
            Family::IPV4_UNICAST,
            NextHop::V4(own),
            &attributes,
            routes,
            &CodecOptions::FOUR_OCTET,
        )
        .unwrap();
        for bytes in messages {
            let _ = self.writer.write_all(&bytes);
        }
        self.send(&Message::from(Update::end_of_rib(Family::IPV4_UNICAST)));
        self.flush();
    }

    /// Reads until `count` distinct prefixes were announced; answers nothing (hold time 240 s
    /// outlasts the run).
    pub fn count_until(&mut self, count: usize) -> bool {
        let mut seen: HashSet<IpNet> = HashSet::with_capacity(count);
        while seen.len() < count {
            match self.receive() {
                Some(Message::Update(update)) => seen.extend(update.announced()),
                Some(_) => {}
                None => return false,
            }
        }
        true
    }
}

/// Keeps a session's incoming side drained so the speaker under test never blocks on it.
pub fn drain(mut peer: MiniPeer) {
    std::thread::spawn(move || while peer.receive().is_some() {});
}
