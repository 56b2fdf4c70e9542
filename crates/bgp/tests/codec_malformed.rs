//! Malformed input that resets the session: the exact NOTIFICATION (code, subcode, data) for
//! header errors (RFC 4271 §6.1), OPEN errors (§6.2, RFC 5492) and the UPDATE errors RFC 7606
//! still treats as fatal.

mod bgp_support;

use bgp_support::hex;
use bgp_support::malformed::*;
use starling_bgp::codec::*;

// Header errors (RFC 4271 §6.1).

#[test]
fn marker_not_all_ones() {
    assert_notification("ffffffffffffffffffffffffffff00ff 0013 04", 1, 1, "");
}

#[test]
fn length_below_header() {
    assert_notification("M 0012 04", 1, 2, "0012");
}

#[test]
fn length_above_maximum() {
    assert_notification("M 1001 04", 1, 2, "1001");
}

#[test]
fn length_field_disagrees_with_bytes() {
    assert_notification("M 0014 04", 1, 2, "0014");
}

#[test]
fn keepalive_with_body() {
    assert_notification("M 0014 04 00", 1, 2, "0014");
}

#[test]
fn open_too_short() {
    assert_notification("M 001c 01 04 fde8 00b4 01020304", 1, 2, "001c");
}

#[test]
fn update_too_short() {
    assert_notification("M 0016 02 0000 00", 1, 2, "0016");
}

#[test]
fn notification_too_short() {
    assert_notification("M 0014 03 06", 1, 2, "0014");
}

#[test]
fn route_refresh_wrong_length() {
    assert_notification("M 0018 05 0001 00 01 00", 1, 2, "0018");
}

#[test]
fn unknown_message_type() {
    assert_notification("M 0013 09", 1, 3, "09");
}

#[test]
fn frame_length_reports_header_errors_and_waits_for_more() {
    assert_eq!(frame_length(&hex("M 00")), Ok(None));
    assert_eq!(frame_length(&hex("M 0013 04")), Ok(Some(19)));
    assert_eq!(
        frame_length(&hex("M 2000 02")),
        Err(DecodeError::BadMessageLength { length: 0x2000 })
    );
}

// OPEN errors (RFC 4271 §6.2, RFC 5492).

#[test]
fn open_unsupported_optional_parameter() {
    // Parameter type 1 (deprecated authentication).
    assert_notification("M 001f 01 04 fde8 00b4 01020304 02 01 00", 2, 4, "");
}

#[test]
fn open_parameter_length_disagrees() {
    assert_notification("M 001f 01 04 fde8 00b4 01020304 03 02 00", 2, 0, "");
}

#[test]
fn open_parameter_overruns() {
    assert_notification("M 001f 01 04 fde8 00b4 01020304 02 02 05", 2, 0, "");
}

#[test]
fn open_capability_overruns_parameter() {
    assert_notification("M 0021 01 04 fde8 00b4 01020304 04 02 02 01 04", 2, 0, "");
}

#[test]
fn open_multiprotocol_capability_wrong_length() {
    assert_notification(
        "M 0024 01 04 fde8 00b4 01020304 07 02 05 01 03 000101",
        2,
        0,
        "",
    );
}

#[test]
fn open_four_octet_capability_wrong_length() {
    assert_notification(
        "M 0023 01 04 fde8 00b4 01020304 06 02 04 41 02 0001",
        2,
        0,
        "",
    );
}

#[test]
fn open_graceful_restart_wrong_length() {
    assert_notification(
        "M 0024 01 04 fde8 00b4 01020304 07 02 05 40 03 007800",
        2,
        0,
        "",
    );
}

#[test]
fn open_route_refresh_with_value() {
    assert_notification(
        "M 0022 01 04 fde8 00b4 01020304 05 02 03 02 01 00",
        2,
        0,
        "",
    );
}

// UPDATE errors that reset the session.

#[test]
fn update_withdrawn_length_overruns() {
    assert_notification("M 0017 02 0005 0000", 3, 1, "");
}

#[test]
fn update_attribute_length_overruns_message() {
    assert_notification("M 0017 02 0000 0001", 3, 1, "");
}

#[test]
fn update_nlri_prefix_too_long() {
    assert_notification("M 001d 02 0000 0000 21 0a000000 00", 3, 10, "");
}

#[test]
fn update_nlri_prefix_truncated() {
    assert_notification("M 001a 02 0000 0000 18 0a00", 3, 10, "");
}

#[test]
fn update_withdrawn_prefix_truncated() {
    assert_notification("M 001a 02 0003 18 0a00 0000", 3, 10, "");
}

#[test]
fn update_unrecognized_well_known_attribute() {
    assert_notification("M 001b 02 0000 0004 40 63 01 00", 3, 2, "40630100");
}

#[test]
fn update_mp_reach_twice() {
    assert_notification(
        "M 0023 02 0000 000c 80 0f 03 0002 01 80 0f 03 0002 01",
        3,
        1,
        "",
    );
}

#[test]
fn update_mp_reach_bad_next_hop_length() {
    let bytes = with_attributes("80 0e 0d 0002 01 08 20010db800000001 00", "");
    assert_notification(&bytes, 3, 9, "800e0d 0002 01 08 20010db800000001 00");
}

#[test]
fn update_mp_reach_prefix_too_long() {
    let bytes = with_attributes(
        "80 0e 16 0002 01 10 20010db8000000000000000000000001 00 81",
        "",
    );
    assert_notification(
        &bytes,
        3,
        9,
        "800e16 0002 01 10 20010db8000000000000000000000001 00 81",
    );
}

#[test]
fn update_mp_unreach_truncated() {
    assert_notification("M 001a 02 0000 0003 80 0f 00", 3, 9, "800f00");
}

#[test]
fn update_mp_reach_flags_wrong() {
    assert_notification("M 001d 02 0000 0006 c0 0f 03 0002 01", 3, 4, "c00f03000201");
}
