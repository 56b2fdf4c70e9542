//! Helpers for the malformed-input tests: decode and compare NOTIFICATIONs or RFC 7606
//! problems, and build UPDATEs around a list of attributes.
#![allow(dead_code)]

use starling_bgp::codec::*;

use super::hex;

pub const FOUR: CodecOptions = CodecOptions::FOUR_OCTET;

pub const TWO: CodecOptions = CodecOptions::TWO_OCTET;

pub fn notification_for(bytes: &[u8], options: &CodecOptions) -> Notification {
    match Message::decode(bytes, options) {
        Ok(message) => panic!("decoded a malformed message as {message:?}"),
        Err(error) => error.notification(),
    }
}

pub fn assert_notification(bytes: &str, code: u8, subcode: u8, data: &str) {
    let notification = notification_for(&hex(bytes), &FOUR);
    assert_eq!(
        notification,
        Notification::new(code, subcode, hex(data)),
        "for input {bytes}"
    );
}

pub fn decode_update(bytes: &str, options: &CodecOptions) -> Update {
    match Message::decode(&hex(bytes), options) {
        Ok(Message::Update(update)) => *update,
        other => panic!("expected an UPDATE, got {other:?}"),
    }
}

/// Asserts the single problem of an UPDATE: its action, the type code and the NOTIFICATION
/// RFC 4271 would have sent.
pub fn assert_problem(
    bytes: &str,
    action: UpdateErrorAction,
    type_code: u8,
    subcode: u8,
    data: &str,
) -> Update {
    let update = decode_update(bytes, &FOUR);
    assert_eq!(update.problems.len(), 1, "problems: {:?}", update.problems);
    let problem = &update.problems[0];
    assert_eq!(problem.action, action);
    assert_eq!(problem.type_code, type_code);
    assert_eq!(
        problem.error.notification(),
        Notification::new(3, subcode, hex(data))
    );
    assert_eq!(update.error_action(), Some(action));
    update
}

pub const NLRI: &str = "18 0a0200";

pub fn with_attributes(attributes: &str, nlri: &str) -> String {
    let attribute_length = hex(attributes).len();
    let total = 19 + 4 + attribute_length + hex(nlri).len();
    format!("M {total:04x} 02 0000 {attribute_length:04x} {attributes} {nlri}")
}

pub const ORIGIN: &str = "40 01 01 00";

pub const EMPTY_PATH: &str = "40 02 00";

pub const NEXT_HOP: &str = "40 03 04 0a000002";

pub fn valid_plus(extra: &str) -> String {
    with_attributes(&format!("{ORIGIN} {EMPTY_PATH} {NEXT_HOP} {extra}"), NLRI)
}
