//! BGP-4 wire codec (RFC 4271 §4), pure and panic-free on any input.
//!
//! * [`frame_length`] finds message boundaries in a byte stream (header checks of §6.1).
//! * [`Message::decode`] turns exactly one message into a value, or a [`DecodeError`] whose
//!   [`DecodeError::notification`] is the NOTIFICATION to send before closing.
//! * UPDATE problems that RFC 7606 allows to survive are carried on [`Update::problems`], with
//!   [`Update::error_action`] giving treat-as-withdraw or attribute-discard.
//! * [`Message::encode`] and the UPDATE packers [`pack_announcements`] / [`pack_withdrawals`]
//!   produce wire bytes. [`CodecOptions`] carries what the session negotiated that changes the
//!   wire format (4-octet AS numbers).

mod as_path;
mod attributes;
mod error;
mod mp;
mod notification;
mod open;
mod prefix;
mod reader;
mod update;
mod values;

pub use as_path::{AsPath, AsPathSegment, SegmentKind};
pub use attributes::{
    attribute_flag, attribute_type, Aggregator, Community, LargeCommunity, Origin, PathAttributes,
    RawAttribute,
};
pub use error::{AttributeProblem, DecodeError, EncodeError, UpdateError, UpdateErrorAction};
pub use mp::{MpReach, MpUnreach, NextHop};
pub use notification::{
    cease_subcode, error_code, fsm_subcode, header_subcode, open_subcode, update_subcode,
    Notification, RouteRefresh,
};
pub use open::{capability_code, Capability, GracefulRestart, GracefulRestartFamily, Open};
pub use prefix::Family;
pub use update::{pack_announcements, pack_withdrawals, Update};

/// Length of the fixed message header: marker, length, type (RFC 4271 §4.1).
pub const HEADER_LENGTH: usize = 19;
/// Largest message without the extended message capability (RFC 4271 §4.1).
pub const MAX_MESSAGE_LENGTH: usize = 4096;

pub(crate) const MESSAGE_TYPE_OPEN: u8 = 1;
pub(crate) const MESSAGE_TYPE_UPDATE: u8 = 2;
pub(crate) const MESSAGE_TYPE_NOTIFICATION: u8 = 3;
pub(crate) const MESSAGE_TYPE_KEEPALIVE: u8 = 4;
pub(crate) const MESSAGE_TYPE_ROUTE_REFRESH: u8 = 5;

/// Session properties that change the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CodecOptions {
    /// Both sides advertised the 4-octet AS capability (RFC 6793 §3): AS_PATH and AGGREGATOR
    /// carry 4-octet AS numbers and AS4_PATH / AS4_AGGREGATOR are not used.
    pub four_octet_as: bool,
}

impl CodecOptions {
    /// Options for a session where both sides speak 4-octet AS numbers.
    pub const FOUR_OCTET: CodecOptions = CodecOptions {
        four_octet_as: true,
    };
    /// Options for a session with a 2-octet-only peer.
    pub const TWO_OCTET: CodecOptions = CodecOptions {
        four_octet_as: false,
    };
}

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    /// Boxed because an UPDATE is far larger than the other messages.
    Update(Box<Update>),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// A short name for logs ("OPEN", "UPDATE", ...).
    pub fn name(&self) -> &'static str {
        match self {
            Message::Open(_) => "OPEN",
            Message::Update(_) => "UPDATE",
            Message::Notification(_) => "NOTIFICATION",
            Message::Keepalive => "KEEPALIVE",
            Message::RouteRefresh(_) => "ROUTE-REFRESH",
        }
    }

    /// Decodes one complete message (header included). Never panics.
    pub fn decode(bytes: &[u8], options: &CodecOptions) -> Result<Message, DecodeError> {
        let length = check_header(bytes)?.ok_or(DecodeError::BadMessageLength {
            length: u16::try_from(bytes.len()).unwrap_or(u16::MAX),
        })?;
        if length != bytes.len() {
            return Err(DecodeError::BadMessageLength {
                length: length as u16,
            });
        }
        let message_type = bytes[18];
        let body = &bytes[HEADER_LENGTH..];
        let bad_length = DecodeError::BadMessageLength {
            length: length as u16,
        };
        // Per-type minimum and exact lengths (RFC 4271 §6.1, RFC 2918 §3).
        match message_type {
            MESSAGE_TYPE_OPEN if length < 29 => Err(bad_length),
            MESSAGE_TYPE_OPEN => Open::decode(body).map(Message::Open),
            MESSAGE_TYPE_UPDATE if length < 23 => Err(bad_length),
            MESSAGE_TYPE_UPDATE => {
                Update::decode(body, options).map(|update| Message::Update(Box::new(update)))
            }
            MESSAGE_TYPE_NOTIFICATION if length < 21 => Err(bad_length),
            MESSAGE_TYPE_NOTIFICATION => Ok(Message::Notification(Notification::decode(body))),
            MESSAGE_TYPE_KEEPALIVE if length != HEADER_LENGTH => Err(bad_length),
            MESSAGE_TYPE_KEEPALIVE => Ok(Message::Keepalive),
            MESSAGE_TYPE_ROUTE_REFRESH => RouteRefresh::decode(body)
                .map(Message::RouteRefresh)
                .ok_or(bad_length),
            message_type => Err(DecodeError::BadMessageType { message_type }),
        }
    }

    /// Encodes the message with its header.
    pub fn encode(&self, options: &CodecOptions) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        let message_type = match self {
            Message::Open(_) => MESSAGE_TYPE_OPEN,
            Message::Update(_) => MESSAGE_TYPE_UPDATE,
            Message::Notification(_) => MESSAGE_TYPE_NOTIFICATION,
            Message::Keepalive => MESSAGE_TYPE_KEEPALIVE,
            Message::RouteRefresh(_) => MESSAGE_TYPE_ROUTE_REFRESH,
        };
        write_header(&mut out, message_type);
        match self {
            Message::Open(open) => open.encode_body(&mut out)?,
            Message::Update(update) => update.encode_body(options, &mut out)?,
            Message::Notification(notification) => notification.encode_body(&mut out),
            Message::Keepalive => {}
            Message::RouteRefresh(refresh) => refresh.encode_body(&mut out),
        }
        // A NOTIFICATION's data is cut rather than refused: it is diagnostic only.
        if let Message::Notification(_) = self {
            out.truncate(MAX_MESSAGE_LENGTH);
        }
        if out.len() > MAX_MESSAGE_LENGTH {
            return Err(EncodeError::MessageTooLong {
                length: out.len(),
                maximum: MAX_MESSAGE_LENGTH,
            });
        }
        let length = out.len() as u16;
        out[16..18].copy_from_slice(&length.to_be_bytes());
        Ok(out)
    }
}

impl From<Update> for Message {
    fn from(update: Update) -> Message {
        Message::Update(Box::new(update))
    }
}

impl From<Open> for Message {
    fn from(open: Open) -> Message {
        Message::Open(open)
    }
}

impl From<Notification> for Message {
    fn from(notification: Notification) -> Message {
        Message::Notification(notification)
    }
}

/// Validates the header at the start of `buffer` and returns the full message length, or
/// `Ok(None)` when fewer than 19 bytes have arrived. Use it to split a TCP stream into messages.
pub fn frame_length(buffer: &[u8]) -> Result<Option<usize>, DecodeError> {
    check_header(buffer)
}

fn check_header(buffer: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buffer.len() < HEADER_LENGTH {
        return Ok(None);
    }
    if buffer[..16].iter().any(|byte| *byte != 0xff) {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    let length = u16::from_be_bytes([buffer[16], buffer[17]]);
    if usize::from(length) < HEADER_LENGTH || usize::from(length) > MAX_MESSAGE_LENGTH {
        return Err(DecodeError::BadMessageLength { length });
    }
    Ok(Some(usize::from(length)))
}

pub(crate) fn write_header(out: &mut Vec<u8>, message_type: u8) {
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 0]);
    out.push(message_type);
}
