//! BFD Control packet codec (RFC 5880 §4.1) and the §6.8.6 validation rejects.

use starling_bgp::bfd::{ControlPacket, Diag, PacketError, SessionState, CONTROL_PACKET_LEN};

fn sample() -> ControlPacket {
    ControlPacket {
        diag: Diag::NEIGHBOR_SIGNALED_DOWN,
        state: SessionState::Up,
        poll: true,
        final_: false,
        control_plane_independent: true,
        demand: false,
        detect_mult: 3,
        my_discriminator: 0x0102_0304,
        your_discriminator: 0x0a0b_0c0d,
        desired_min_tx_us: 100_000,
        required_min_rx_us: 300_000,
        required_min_echo_rx_us: 0,
    }
}

#[test]
fn round_trip_and_wire_layout() {
    let packet = sample();
    let bytes = packet.encode();
    assert_eq!(bytes.len(), CONTROL_PACKET_LEN);
    // Version 1, diag 3; state Up (3) with P and C bits; mult 3; length 24.
    assert_eq!(&bytes[..4], &[0x23, 0b1110_1000, 3, 24]);
    assert_eq!(&bytes[4..8], &[1, 2, 3, 4]);
    assert_eq!(&bytes[12..16], &100_000u32.to_be_bytes());
    assert_eq!(ControlPacket::decode(&bytes), Ok(packet));
    for state in [
        SessionState::AdminDown,
        SessionState::Down,
        SessionState::Init,
    ] {
        for (poll, final_) in [(false, false), (false, true)] {
            let p = ControlPacket {
                state,
                poll,
                final_,
                ..sample()
            };
            assert_eq!(ControlPacket::decode(&p.encode()), Ok(p));
        }
    }
}

#[test]
fn decodes_a_packet_from_another_implementation() {
    // State Down, your discriminator 0, 1 s intervals, as a peer's first packet looks.
    let bytes = [
        0x20, 0x40, 0x03, 0x18, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x42,
        0x40, 0x00, 0x0f, 0x42, 0x40, 0x00, 0x00, 0x00, 0x00,
    ];
    let p = ControlPacket::decode(&bytes).unwrap();
    assert_eq!(p.state, SessionState::Down);
    assert_eq!(p.my_discriminator, 7);
    assert_eq!(p.your_discriminator, 0);
    assert_eq!(p.desired_min_tx().as_millis(), 1000);
    assert_eq!(p.diag, Diag::NONE);
}

fn with(edit: impl FnOnce(&mut [u8; 24])) -> Result<ControlPacket, PacketError> {
    let mut bytes = sample().encode();
    edit(&mut bytes);
    ControlPacket::decode(&bytes)
}

#[test]
fn rejects() {
    assert_eq!(
        ControlPacket::decode(&sample().encode()[..23]),
        Err(PacketError::Truncated(23))
    );
    assert_eq!(with(|b| b[0] = (2 << 5) | 3), Err(PacketError::Version(2)));
    assert_eq!(with(|b| b[0] = 3), Err(PacketError::Version(0)));
    assert_eq!(
        with(|b| b[3] = 20),
        Err(PacketError::Length {
            field: 20,
            received: 24
        })
    );
    assert_eq!(
        with(|b| b[3] = 40),
        Err(PacketError::Length {
            field: 40,
            received: 24
        })
    );
    assert_eq!(with(|b| b[2] = 0), Err(PacketError::ZeroDetectMult));
    assert_eq!(with(|b| b[1] |= 1), Err(PacketError::Multipoint));
    assert_eq!(
        with(|b| b[4..8].fill(0)),
        Err(PacketError::ZeroMyDiscriminator)
    );
    assert_eq!(
        with(|b| b[8..12].fill(0)),
        Err(PacketError::ZeroYourDiscriminator(SessionState::Up))
    );
    assert_eq!(
        with(|b| {
            b[1] = (2 << 6) | (b[1] & 0x3f);
            b[8..12].fill(0)
        }),
        Err(PacketError::ZeroYourDiscriminator(SessionState::Init))
    );
    // Your discriminator 0 is fine in Down and AdminDown.
    for state in [0u8, 1] {
        assert!(with(|b| {
            b[1] = (state << 6) | (b[1] & 0x3f);
            b[8..12].fill(0)
        })
        .is_ok());
    }
    // Authentication present (with a length that would fit a section): unsupported.
    let mut long = sample().encode().to_vec();
    long.extend_from_slice(&[1, 8, 1, 0, 0, 0, 0, 0]);
    long[1] |= 0b100;
    long[3] = 32;
    assert_eq!(
        ControlPacket::decode(&long),
        Err(PacketError::AuthenticationUnsupported)
    );
    // Trailing bytes beyond the length field are ignored.
    let mut padded = sample().encode().to_vec();
    padded.extend_from_slice(&[0; 4]);
    assert_eq!(ControlPacket::decode(&padded), Ok(sample()));
}
