//! BFD Control packet codec (RFC 5880 §4.1): the 24-byte mandatory section. Authentication is
//! not supported, so a packet with the A bit is rejected rather than accepted unchecked.

use std::time::Duration;

/// Length of the mandatory section, the only length we send or accept.
pub const CONTROL_PACKET_LEN: usize = 24;
const VERSION: u8 = 1;

/// Session states as carried on the wire (RFC 5880 §4.1, "Sta").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SessionState {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl SessionState {
    fn from_bits(bits: u8) -> SessionState {
        match bits & 0b11 {
            0 => SessionState::AdminDown,
            1 => SessionState::Down,
            2 => SessionState::Init,
            _ => SessionState::Up,
        }
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Diagnostic code (5 bits); unknown values are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Diag(pub u8);

impl Diag {
    pub const NONE: Diag = Diag(0);
    pub const CONTROL_DETECTION_TIME_EXPIRED: Diag = Diag(1);
    pub const ECHO_FAILED: Diag = Diag(2);
    pub const NEIGHBOR_SIGNALED_DOWN: Diag = Diag(3);
    pub const FORWARDING_PLANE_RESET: Diag = Diag(4);
    pub const PATH_DOWN: Diag = Diag(5);
    pub const CONCATENATED_PATH_DOWN: Diag = Diag(6);
    pub const ADMINISTRATIVELY_DOWN: Diag = Diag(7);
    pub const REVERSE_CONCATENATED_PATH_DOWN: Diag = Diag(8);
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            0 => "no diagnostic",
            1 => "control detection time expired",
            2 => "echo function failed",
            3 => "neighbor signaled session down",
            4 => "forwarding plane reset",
            5 => "path down",
            6 => "concatenated path down",
            7 => "administratively down",
            8 => "reverse concatenated path down",
            other => return write!(f, "diagnostic {other}"),
        };
        f.write_str(name)
    }
}

/// One BFD Control packet (intervals in microseconds, as on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diag,
    pub state: SessionState,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discriminator: u32,
    pub your_discriminator: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a received packet was discarded (RFC 5880 §6.8.6 validation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("BFD packet of {0} bytes is shorter than the 24-byte mandatory section")]
    Truncated(usize),
    #[error("BFD version {0} is not 1")]
    Version(u8),
    #[error("BFD length field {field} is invalid for a {received}-byte packet")]
    Length { field: u8, received: usize },
    #[error("BFD packet has detect multiplier 0")]
    ZeroDetectMult,
    #[error("BFD packet has the multipoint bit set")]
    Multipoint,
    #[error("BFD packet has my discriminator 0")]
    ZeroMyDiscriminator,
    #[error("BFD packet in state {0} has your discriminator 0")]
    ZeroYourDiscriminator(SessionState),
    #[error("BFD packet asks for authentication, which Starling does not support")]
    AuthenticationUnsupported,
}

impl ControlPacket {
    pub fn encode(&self) -> [u8; CONTROL_PACKET_LEN] {
        let mut out = [0u8; CONTROL_PACKET_LEN];
        out[0] = (VERSION << 5) | (self.diag.0 & 0x1f);
        out[1] = ((self.state as u8) << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.demand) << 1);
        out[2] = self.detect_mult;
        out[3] = CONTROL_PACKET_LEN as u8;
        out[4..8].copy_from_slice(&self.my_discriminator.to_be_bytes());
        out[8..12].copy_from_slice(&self.your_discriminator.to_be_bytes());
        out[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        out[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        out[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        out
    }

    /// Decode and validate one received datagram.
    pub fn decode(bytes: &[u8]) -> Result<ControlPacket, PacketError> {
        if bytes.len() < CONTROL_PACKET_LEN {
            return Err(PacketError::Truncated(bytes.len()));
        }
        let version = bytes[0] >> 5;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        let flags = bytes[1];
        let auth = flags & 0b100 != 0;
        let length = bytes[3];
        // §6.8.6: the length field must cover at least the mandatory section (26 with auth)
        // and must not exceed what arrived.
        let min = if auth { 26 } else { CONTROL_PACKET_LEN };
        if usize::from(length) < min || usize::from(length) > bytes.len() {
            return Err(PacketError::Length {
                field: length,
                received: bytes.len(),
            });
        }
        if auth {
            return Err(PacketError::AuthenticationUnsupported);
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let packet = ControlPacket {
            diag: Diag(bytes[0] & 0x1f),
            state: SessionState::from_bits(flags >> 6),
            poll: flags & 0b10_0000 != 0,
            final_: flags & 0b1_0000 != 0,
            control_plane_independent: flags & 0b1000 != 0,
            demand: flags & 0b10 != 0,
            detect_mult: bytes[2],
            my_discriminator: word(4),
            your_discriminator: word(8),
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
        };
        if packet.detect_mult == 0 {
            return Err(PacketError::ZeroDetectMult);
        }
        if flags & 1 != 0 {
            return Err(PacketError::Multipoint);
        }
        if packet.my_discriminator == 0 {
            return Err(PacketError::ZeroMyDiscriminator);
        }
        if packet.your_discriminator == 0
            && !matches!(packet.state, SessionState::Down | SessionState::AdminDown)
        {
            return Err(PacketError::ZeroYourDiscriminator(packet.state));
        }
        Ok(packet)
    }

    pub fn desired_min_tx(&self) -> Duration {
        Duration::from_micros(self.desired_min_tx_us.into())
    }

    pub fn required_min_rx(&self) -> Duration {
        Duration::from_micros(self.required_min_rx_us.into())
    }
}

/// A duration as wire microseconds, saturating at `u32::MAX` (about 71 minutes).
pub fn to_micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}
