//! The speaker's TCP side against a scripted peer on loopback (no root needed): a session
//! reaches Established, malformed input gets the codec's exact NOTIFICATION and a counter
//! without hurting the speaker, connections from unknown addresses are refused, an UPDATE
//! arrives as a learned-route delta, a ROUTE-REFRESH is answered with the table and End-of-RIB,
//! and configuration changes never send a Cease to a peer that stays configured.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use starling::bgp::speaker::SpeakerHandle;
use starling::metrics::Metrics;
use starling_bgp::codec::{
    frame_length, AsPath, Capability, CodecOptions, Family, Message, NextHop, Notification, Open,
    Origin, PathAttributes, RouteRefresh, Update,
};
use starling_bgp::config::SpeakerConfig;
use starling_bgp::peering::{PeerKind, SessionSpec};
use starling_bgp::policy::{CalicoPolicy, OwnBlock};
use starling_model::{AsNumber, NextHopMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const AS: u32 = 64512;
const PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(port: u16) -> SpeakerConfig {
    let spec = SessionSpec {
        name: "Global_127_0_0_1".into(),
        kind: PeerKind::Global,
        peer_address: IpAddr::V4(PEER),
        peer_port: port,
        peer_as: AsNumber(AS),
        local_as: AsNumber(AS),
        source_address: None,
        passive: true,
        password: None,
        keepalive_time: None,
        graceful_restart_time: None,
        ttl_security: None,
        next_hop_mode: NextHopMode::Auto,
        route_reflector_client_cluster_id: None,
        peer_is_calico_node: false,
        num_allowed_local_as_numbers: None,
        import_limit: None,
        filters: Default::default(),
        bfd: None,
    };
    let block: IpNet = "10.244.1.0/26".parse().unwrap();
    SpeakerConfig {
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        local_as: AsNumber(AS),
        listen_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        listen_port: port,
        sessions: BTreeMap::from([(spec.name.clone(), spec)]),
        passwords: BTreeMap::new(),
        originated: vec![block],
        originated_interfaces: BTreeMap::new(),
        policy: CalicoPolicy {
            own_blocks: vec![OwnBlock {
                cidr: block,
                confirmed: true,
            }],
            ..CalicoPolicy::default()
        },
        graceful_restart_time: Duration::from_secs(120),
    }
}

/// A scripted peer connection.
struct Peer {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Peer {
    async fn connect(port: u16, source: Ipv4Addr) -> std::io::Result<Peer> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        let stream = socket
            .connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
            .await?;
        Ok(Peer {
            stream,
            buffer: Vec::new(),
        })
    }

    async fn send(&mut self, message: Message) {
        let bytes = message.encode(&CodecOptions::FOUR_OCTET).unwrap();
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// The next message, or `None` when the connection closed.
    async fn receive(&mut self) -> Option<Message> {
        loop {
            if let Some(length) = frame_length(&self.buffer).unwrap() {
                if self.buffer.len() >= length {
                    let frame: Vec<u8> = self.buffer.drain(..length).collect();
                    return Some(Message::decode(&frame, &CodecOptions::FOUR_OCTET).unwrap());
                }
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("speaker went silent")
                .ok()?;
            if read == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// Until a message matching `wanted` (skipping others); panics on close.
    async fn expect(&mut self, wanted: impl Fn(&Message) -> bool) -> Message {
        loop {
            let message = self.receive().await.expect("connection closed");
            if wanted(&message) {
                return message;
            }
        }
    }

    async fn establish(port: u16) -> Peer {
        let mut peer = Peer::connect(port, PEER).await.unwrap();
        let open = Open::new(
            AsNumber(AS),
            90,
            Ipv4Addr::new(10, 0, 0, 2),
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
            ],
        );
        peer.send(Message::Open(open)).await;
        peer.expect(|m| matches!(m, Message::Open(_))).await;
        peer.expect(|m| matches!(m, Message::Keepalive)).await;
        peer.send(Message::Keepalive).await;
        peer
    }
}

fn is_end_of_rib(message: &Message) -> bool {
    matches!(message, Message::Update(update) if update.end_of_rib_family().is_some())
}

#[tokio::test]
async fn session_malformed_input_unknown_peer_and_refresh() {
    let port = free_port();
    let metrics = Metrics::new();
    let mut speaker = SpeakerHandle::spawn(config(port), metrics.clone());
    let deltas = speaker.take_route_deltas().unwrap();
    let mut learned = BTreeMap::new();

    // Wait for the listener by retrying the first connection.
    let mut peer = None;
    for _ in 0..50 {
        // From an address that is no peer, so the probe does not disturb the session.
        if Peer::connect(port, Ipv4Addr::new(127, 0, 0, 3))
            .await
            .is_ok()
        {
            peer = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(peer.is_some(), "speaker never listened");

    let mut peer = Peer::establish(port).await;
    // The full table: our block, then End-of-RIB.
    let first = peer.expect(|m| matches!(m, Message::Update(_))).await;
    let Message::Update(update) = first else {
        unreachable!()
    };
    assert_eq!(
        update.announced(),
        vec!["10.244.1.0/26".parse::<IpNet>().unwrap()]
    );
    peer.expect(is_end_of_rib).await;
    let status = speaker.status().await;
    assert_eq!(status[0].state, "up", "{status:?}");

    // A route from the peer becomes a learned route.
    let attributes = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        local_pref: Some(100),
        ..PathAttributes::default()
    };
    let routes = starling_bgp::codec::pack_announcements(
        Family::IPV4_UNICAST,
        NextHop::V4(Ipv4Addr::new(127, 0, 0, 9)),
        &attributes,
        &["10.244.7.0/26".parse().unwrap()],
        &CodecOptions::FOUR_OCTET,
    )
    .unwrap();
    for bytes in routes {
        peer.stream.write_all(&bytes).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            deltas.wait().await;
            deltas.apply_to(&mut learned);
            let prefix: IpNet = "10.244.7.0/26".parse().unwrap();
            if let Some(route) = learned.get(&prefix) {
                assert_eq!(route.next_hop, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)));
                break;
            }
        }
    })
    .await
    .expect("learned route never published");

    // ROUTE-REFRESH: the table again, then End-of-RIB.
    peer.send(Message::RouteRefresh(RouteRefresh::new(
        Family::IPV4_UNICAST,
    )))
    .await;
    let again = peer.expect(|m| matches!(m, Message::Update(_))).await;
    let Message::Update(update) = again else {
        unreachable!()
    };
    assert_eq!(
        update.announced(),
        vec!["10.244.1.0/26".parse::<IpNet>().unwrap()]
    );
    peer.expect(is_end_of_rib).await;

    // A broken marker: exactly the codec's NOTIFICATION, then the connection closes.
    let mut garbage = Message::from(Update::end_of_rib(Family::IPV4_UNICAST))
        .encode(&CodecOptions::FOUR_OCTET)
        .unwrap();
    garbage[3] = 0;
    peer.stream.write_all(&garbage).await.unwrap();
    let notification = peer.expect(|m| matches!(m, Message::Notification(_))).await;
    assert_eq!(
        notification,
        Message::Notification(Notification::new(1, 1, Vec::new()))
    );
    assert!(peer.receive().await.is_none(), "connection stayed open");
    let counted = metrics
        .bgp_notifications_total
        .with_label_values(&["Global_127_0_0_1", "malformed"])
        .get();
    assert_eq!(counted, 1);
    // The learned route went with the session (no graceful restart was advertised).
    tokio::time::timeout(Duration::from_secs(5), async {
        while !learned.is_empty() {
            deltas.wait().await;
            deltas.apply_to(&mut learned);
        }
    })
    .await
    .expect("route of the dropped session stayed");

    // A connection from an address that is no peer is closed without an OPEN.
    let mut stranger = Peer::connect(port, Ipv4Addr::new(127, 0, 0, 2))
        .await
        .unwrap();
    assert!(
        stranger.receive().await.is_none(),
        "unknown peer got an answer"
    );

    // The speaker is alive: the peer's next connection is answered with an OPEN.
    let mut established = false;
    for _ in 0..100 {
        let mut retry = Peer::connect(port, PEER).await.unwrap();
        let open = Open::new(AsNumber(AS), 90, Ipv4Addr::new(10, 0, 0, 2), vec![]);
        retry.send(Message::Open(open)).await;
        if let Some(Message::Open(_)) = retry.receive().await {
            established = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(established, "speaker did not accept the peer again");
    speaker.shutdown(false).await;
}

impl Peer {
    async fn establish_from(port: u16, source: Ipv4Addr) -> Peer {
        let mut peer = Peer::connect(port, source).await.unwrap();
        let open = Open::new(
            AsNumber(AS),
            90,
            source,
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
            ],
        );
        peer.send(Message::Open(open)).await;
        peer.expect(|m| matches!(m, Message::Open(_))).await;
        peer.send(Message::Keepalive).await;
        peer.expect(is_end_of_rib).await;
        peer
    }
}

/// Until End-of-RIB, failing on a NOTIFICATION or a close; returns the UPDATEs before it.
async fn updates_until_end_of_rib(peer: &mut Peer, what: &str) -> Vec<Update> {
    let mut updates = Vec::new();
    loop {
        match peer.receive().await {
            Some(message) if is_end_of_rib(&message) => return updates,
            Some(Message::Update(update)) => updates.push(*update),
            Some(Message::Notification(notification)) => {
                panic!("{what}: the speaker sent {notification}")
            }
            Some(_) => {}
            None => panic!("{what}: the speaker closed the connection"),
        }
    }
}

#[tokio::test]
async fn configuration_updates_never_cease_a_session() {
    const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
    let port = free_port();
    let mut initial = config(port);
    let mut other = initial.sessions["Global_127_0_0_1"].clone();
    other.name = "Global_127_0_0_4".into();
    other.peer_address = IpAddr::V4(OTHER);
    initial.sessions.insert(other.name.clone(), other);
    let speaker = SpeakerHandle::spawn(initial.clone(), Metrics::new());
    let mut listening = false;
    for _ in 0..50 {
        if Peer::connect(port, Ipv4Addr::new(127, 0, 0, 3))
            .await
            .is_ok()
        {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listening, "speaker never listened");
    let mut kept = Peer::establish_from(port, PEER).await;
    let mut changed = Peer::establish_from(port, OTHER).await;

    // Parameters only an OPEN carries (restart time, as nodeMeshMaxRestartTime changes it,
    // and keepalive) wait for the next connection: both sessions stay up.
    let mut update = initial.clone();
    update.graceful_restart_time = Duration::from_secs(4);
    for spec in update.sessions.values_mut() {
        spec.graceful_restart_time = Some(Duration::from_secs(4));
        spec.keepalive_time = Some(Duration::from_secs(10));
    }
    // A new local block is exported on its own: nothing else is withdrawn or resent.
    let new_block: IpNet = "10.244.2.0/26".parse().unwrap();
    update.originated.push(new_block);
    update.policy.own_blocks.push(OwnBlock {
        cidr: new_block,
        confirmed: true,
    });
    speaker.update(update.clone());
    let announced = changed.expect(|m| matches!(m, Message::Update(_))).await;
    let Message::Update(announced) = announced else {
        unreachable!()
    };
    assert_eq!(announced.announced(), vec![new_block]);
    assert!(announced.withdrawn().is_empty(), "{announced:?}");
    for (peer, name) in [(&mut kept, "kept"), (&mut changed, "changed")] {
        peer.send(Message::RouteRefresh(RouteRefresh::new(
            Family::IPV4_UNICAST,
        )))
        .await;
        let table = updates_until_end_of_rib(peer, name).await;
        let prefixes: Vec<IpNet> = table.iter().flat_map(|u| u.announced()).collect();
        assert!(prefixes.contains(&new_block), "{name}: {prefixes:?}");
    }
    let status = speaker.status().await;
    assert!(
        status.iter().all(|row| row.state == "up"),
        "every session stays up: {status:?}"
    );

    // A change that needs a new connection (the peer's port) closes it without a Cease, so
    // a peer with graceful restart keeps our routes while it reconnects.
    let mut moved = update.clone();
    moved
        .sessions
        .get_mut("Global_127_0_0_4")
        .unwrap()
        .peer_port = port + 1;
    speaker.update(moved);
    loop {
        match changed.receive().await {
            None => break,
            Some(Message::Notification(notification)) => {
                panic!("a reconnect must not send {notification}")
            }
            Some(_) => {}
        }
    }
    // The unchanged session is the same connection and still answers.
    kept.send(Message::RouteRefresh(RouteRefresh::new(
        Family::IPV4_UNICAST,
    )))
    .await;
    updates_until_end_of_rib(&mut kept, "kept").await;
    // The changed session comes back.
    let _again = Peer::establish_from(port, OTHER).await;
    speaker.shutdown(true).await;
    // A graceful shutdown closes without a Cease.
    assert!(kept.receive().await.is_none(), "expected a plain close");
}

/// A speaker that does not keep up stops reading: the peer's writes block on TCP's window
/// instead of piling up in the speaker's memory.
#[tokio::test]
async fn a_full_inbound_queue_stops_reading_the_socket() {
    use starling::bgp::session::{spawn_connection, ConnectionEvent};
    use starling_bgp::fsm::ConnectionOrigin;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move { TcpStream::connect(address).await.unwrap() });
    let (ours, _) = listener.accept().await.unwrap();
    let mut peer = peer.await.unwrap();
    // Room for 4 frames; nobody takes them.
    let (events, mut waiting) = tokio::sync::mpsc::channel(4);
    let _connection = spawn_connection(ours, 1, ConnectionOrigin::Remote, events).unwrap();

    // 4 KiB frames (a valid header; the body is never decoded here).
    let mut frame = vec![0xffu8; 16];
    frame.extend_from_slice(&4096u16.to_be_bytes());
    frame.push(2);
    frame.resize(4096, 0);
    let burst: Vec<u8> = frame.repeat(256);
    let mut written = 0usize;
    let blocked = tokio::time::timeout(Duration::from_secs(3), async {
        // 256 MiB is far more than loopback's socket buffers hold.
        while written < 256 << 20 {
            peer.write_all(&burst).await.unwrap();
            written += burst.len();
        }
    })
    .await
    .is_err();
    assert!(
        blocked,
        "the peer wrote {written} bytes without the speaker taking a frame"
    );
    // What waits is the bounded queue, not the peer's whole stream.
    let mut queued = 0;
    while let Ok((_, event)) = waiting.try_recv() {
        assert!(matches!(event, ConnectionEvent::Frame(_)));
        queued += 1;
    }
    assert_eq!(queued, 4);
}

#[tokio::test]
async fn a_peer_past_its_import_limit_gets_a_cease_and_stays_disabled() {
    let port = free_port();
    let mut limited = config(port);
    for spec in limited.sessions.values_mut() {
        spec.import_limit = Some(starling_model::bgp::ImportLimit {
            limit: 2,
            action: starling_model::bgp::LimitAction::Disable,
        });
    }
    let metrics = Metrics::new();
    let speaker = SpeakerHandle::spawn(limited, metrics.clone());
    let mut listening = false;
    for _ in 0..50 {
        if Peer::connect(port, Ipv4Addr::new(127, 0, 0, 3))
            .await
            .is_ok()
        {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listening, "speaker never listened");
    let mut peer = Peer::establish(port).await;
    let attributes = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        local_pref: Some(100),
        ..PathAttributes::default()
    };
    let prefixes: Vec<IpNet> = ["10.9.0.0/24", "10.9.1.0/24", "10.9.2.0/24"]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
    for bytes in starling_bgp::codec::pack_announcements(
        Family::IPV4_UNICAST,
        NextHop::V4(Ipv4Addr::new(127, 0, 0, 9)),
        &attributes,
        &prefixes,
        &CodecOptions::FOUR_OCTET,
    )
    .unwrap()
    {
        peer.stream.write_all(&bytes).await.unwrap();
    }
    let notification = peer.expect(|m| matches!(m, Message::Notification(_))).await;
    // Cease / Maximum Number of Prefixes Reached: AFI 1, SAFI 1, limit 2 (RFC 4486).
    assert_eq!(
        notification,
        Message::Notification(Notification::new(6, 1, vec![0, 1, 1, 0, 0, 0, 2]))
    );
    assert!(peer.receive().await.is_none(), "the session closed");
    assert_eq!(
        metrics
            .bgp_import_limit_reached_total
            .with_label_values(&["Global_127_0_0_1"])
            .get(),
        1
    );
    // Disabled: a new connection gets no OPEN, only a close.
    let mut again = Peer::connect(port, PEER).await.unwrap();
    let open = Open::new(AsNumber(AS), 90, Ipv4Addr::new(10, 0, 0, 2), vec![]);
    let _ = tokio::io::AsyncWriteExt::write_all(
        &mut again.stream,
        &Message::Open(open)
            .encode(&CodecOptions::FOUR_OCTET)
            .unwrap(),
    )
    .await;
    assert!(
        again.receive().await.is_none(),
        "a disabled session answered a new connection"
    );
    speaker.shutdown(false).await;
}
