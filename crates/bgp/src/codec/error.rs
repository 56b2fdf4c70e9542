//! Typed decode and encode errors. Every session-fatal decode error maps to exactly one
//! NOTIFICATION (RFC 4271 §6.1–6.3); UPDATE problems that RFC 7606 lets the session survive are
//! reported as [`AttributeProblem`]s on the decoded UPDATE instead.

use super::notification::{error_code, header_subcode, open_subcode, update_subcode, Notification};

/// A received message that cannot be accepted; the session must send
/// [`DecodeError::notification`] and close (RFC 7606 "session reset").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message header marker is not all ones")]
    ConnectionNotSynchronized,
    #[error("bad message length {length}")]
    BadMessageLength { length: u16 },
    #[error("unknown message type {message_type}")]
    BadMessageType { message_type: u8 },
    #[error("malformed OPEN message: {reason}")]
    MalformedOpen { reason: &'static str },
    #[error("unsupported OPEN optional parameter type {parameter_type}")]
    UnsupportedOptionalParameter { parameter_type: u8 },
    #[error("UPDATE error: {0}")]
    Update(#[from] UpdateError),
}

impl DecodeError {
    /// The NOTIFICATION to send for this error.
    pub fn notification(&self) -> Notification {
        match self {
            DecodeError::ConnectionNotSynchronized => Notification::new(
                error_code::MESSAGE_HEADER,
                header_subcode::CONNECTION_NOT_SYNCHRONIZED,
                Vec::new(),
            ),
            DecodeError::BadMessageLength { length } => Notification::new(
                error_code::MESSAGE_HEADER,
                header_subcode::BAD_MESSAGE_LENGTH,
                length.to_be_bytes().to_vec(),
            ),
            DecodeError::BadMessageType { message_type } => Notification::new(
                error_code::MESSAGE_HEADER,
                header_subcode::BAD_MESSAGE_TYPE,
                vec![*message_type],
            ),
            DecodeError::MalformedOpen { .. } => Notification::new(
                error_code::OPEN_MESSAGE,
                open_subcode::UNSPECIFIC,
                Vec::new(),
            ),
            DecodeError::UnsupportedOptionalParameter { .. } => Notification::new(
                error_code::OPEN_MESSAGE,
                open_subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
                Vec::new(),
            ),
            DecodeError::Update(error) => error.notification(),
        }
    }
}

/// The UPDATE Message Errors of RFC 4271 §6.3. `attribute` is the whole offending attribute
/// (flags, type, length and value), which is what the NOTIFICATION's data carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("malformed attribute list: {reason}")]
    MalformedAttributeList { reason: &'static str },
    #[error("unrecognized well-known attribute")]
    UnrecognizedWellKnownAttribute { attribute: Vec<u8> },
    #[error("missing well-known attribute {type_code}")]
    MissingWellKnownAttribute { type_code: u8 },
    #[error("attribute flags conflict with the attribute type")]
    AttributeFlags { attribute: Vec<u8> },
    #[error("attribute length is wrong for its type")]
    AttributeLength { attribute: Vec<u8> },
    #[error("ORIGIN has an undefined value")]
    InvalidOrigin { attribute: Vec<u8> },
    #[error("NEXT_HOP is not a usable host address")]
    InvalidNextHop { attribute: Vec<u8> },
    #[error("optional attribute is malformed")]
    OptionalAttribute { attribute: Vec<u8> },
    #[error("invalid prefix in the withdrawn routes or NLRI field")]
    InvalidNetworkField,
    #[error("malformed AS_PATH")]
    MalformedAsPath,
}

impl UpdateError {
    pub fn subcode(&self) -> u8 {
        match self {
            UpdateError::MalformedAttributeList { .. } => update_subcode::MALFORMED_ATTRIBUTE_LIST,
            UpdateError::UnrecognizedWellKnownAttribute { .. } => {
                update_subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE
            }
            UpdateError::MissingWellKnownAttribute { .. } => {
                update_subcode::MISSING_WELL_KNOWN_ATTRIBUTE
            }
            UpdateError::AttributeFlags { .. } => update_subcode::ATTRIBUTE_FLAGS_ERROR,
            UpdateError::AttributeLength { .. } => update_subcode::ATTRIBUTE_LENGTH_ERROR,
            UpdateError::InvalidOrigin { .. } => update_subcode::INVALID_ORIGIN_ATTRIBUTE,
            UpdateError::InvalidNextHop { .. } => update_subcode::INVALID_NEXT_HOP_ATTRIBUTE,
            UpdateError::OptionalAttribute { .. } => update_subcode::OPTIONAL_ATTRIBUTE_ERROR,
            UpdateError::InvalidNetworkField => update_subcode::INVALID_NETWORK_FIELD,
            UpdateError::MalformedAsPath => update_subcode::MALFORMED_AS_PATH,
        }
    }

    /// Diagnostic data as RFC 4271 §6.3 specifies for this subcode.
    pub fn data(&self) -> Vec<u8> {
        match self {
            UpdateError::UnrecognizedWellKnownAttribute { attribute }
            | UpdateError::AttributeFlags { attribute }
            | UpdateError::AttributeLength { attribute }
            | UpdateError::InvalidOrigin { attribute }
            | UpdateError::InvalidNextHop { attribute }
            | UpdateError::OptionalAttribute { attribute } => attribute.clone(),
            UpdateError::MissingWellKnownAttribute { type_code } => vec![*type_code],
            UpdateError::MalformedAttributeList { .. }
            | UpdateError::InvalidNetworkField
            | UpdateError::MalformedAsPath => Vec::new(),
        }
    }

    pub fn notification(&self) -> Notification {
        Notification::new(error_code::UPDATE_MESSAGE, self.subcode(), self.data())
    }
}

/// What RFC 7606 lets a receiver do instead of resetting the session. Ordered by severity so the
/// action for a whole UPDATE is the maximum over its problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UpdateErrorAction {
    /// RFC 7606 §2 "attribute discard": the attribute is dropped, the routes are used.
    AttributeDiscard,
    /// RFC 7606 §2 "treat-as-withdraw": every prefix the UPDATE announces is withdrawn instead.
    TreatAsWithdraw,
}

/// One malformed attribute that the session survives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeProblem {
    /// The attribute's type code (0 when the attribute list itself could not be parsed further).
    pub type_code: u8,
    pub action: UpdateErrorAction,
    /// The RFC 4271 error this would have been, for logs and counters.
    pub error: UpdateError,
}

/// A message that cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message would be {length} bytes, over the {maximum}-byte limit")]
    MessageTooLong { length: usize, maximum: usize },
    #[error("prefix {prefix} does not belong to family {family}")]
    PrefixFamilyMismatch {
        prefix: ipnet::IpNet,
        family: super::prefix::Family,
    },
    #[error("next hop does not match family {family}")]
    NextHopFamilyMismatch { family: super::prefix::Family },
    #[error("OPEN capability {code} value is {length} bytes, over 253")]
    CapabilityTooLong { code: u8, length: usize },
    #[error("attribute {type_code} value is {length} bytes, over 65535")]
    AttributeTooLong { type_code: u8, length: usize },
}
