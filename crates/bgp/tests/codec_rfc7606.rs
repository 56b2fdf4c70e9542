//! Malformed UPDATE attributes the session survives: the RFC 7606 action (treat-as-withdraw or
//! attribute-discard) and the RFC 4271 error each would have been.

mod bgp_support;

use bgp_support::hex;
use bgp_support::malformed::*;
use ipnet::IpNet;
use starling_bgp::codec::*;

#[test]
fn origin_undefined_value_is_treat_as_withdraw() {
    let update = assert_problem(
        &with_attributes(&format!("40 01 01 05 {EMPTY_PATH} {NEXT_HOP}"), NLRI),
        UpdateErrorAction::TreatAsWithdraw,
        1,
        6,
        "40010105",
    );
    assert!(update.announced().is_empty());
    assert_eq!(
        update.withdrawn(),
        vec!["10.2.0.0/24".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn origin_wrong_length_is_treat_as_withdraw() {
    assert_problem(
        &with_attributes(&format!("40 01 02 0000 {EMPTY_PATH} {NEXT_HOP}"), NLRI),
        UpdateErrorAction::TreatAsWithdraw,
        1,
        5,
        "4001020000",
    );
}

#[test]
fn origin_with_optional_flag_is_treat_as_withdraw() {
    assert_problem(
        &with_attributes(&format!("c0 01 01 00 {EMPTY_PATH} {NEXT_HOP}"), NLRI),
        UpdateErrorAction::TreatAsWithdraw,
        1,
        4,
        "c0010100",
    );
}

#[test]
fn well_known_with_partial_flag_is_treat_as_withdraw() {
    assert_problem(
        &with_attributes(&format!("60 01 01 00 {EMPTY_PATH} {NEXT_HOP}"), NLRI),
        UpdateErrorAction::TreatAsWithdraw,
        1,
        4,
        "60010100",
    );
}

#[test]
fn as_path_unknown_segment_type_is_treat_as_withdraw() {
    assert_problem(
        &with_attributes(
            &format!("{ORIGIN} 40 02 06 07 01 0000fde8 {NEXT_HOP}"),
            NLRI,
        ),
        UpdateErrorAction::TreatAsWithdraw,
        2,
        11,
        "",
    );
}

#[test]
fn as_path_zero_length_segment_is_treat_as_withdraw() {
    assert_problem(
        &with_attributes(&format!("{ORIGIN} 40 02 02 02 00 {NEXT_HOP}"), NLRI),
        UpdateErrorAction::TreatAsWithdraw,
        2,
        11,
        "",
    );
}

#[test]
fn as_path_segment_overrun_is_treat_as_withdraw() {
    assert_problem(
        &with_attributes(
            &format!("{ORIGIN} 40 02 06 02 02 0000fde8 {NEXT_HOP}"),
            NLRI,
        ),
        UpdateErrorAction::TreatAsWithdraw,
        2,
        11,
        "",
    );
}

#[test]
fn two_octet_as_path_decoded_as_four_octet_is_malformed() {
    // The same bytes are fine on a 2-octet session.
    let bytes = with_attributes(&format!("{ORIGIN} 40 02 04 02 01 fde8 {NEXT_HOP}"), NLRI);
    assert!(decode_update(&bytes, &TWO).problems.is_empty());
    assert_problem(&bytes, UpdateErrorAction::TreatAsWithdraw, 2, 11, "");
}

#[test]
fn next_hop_wrong_length_is_treat_as_withdraw() {
    assert_problem(
        &with_attributes(&format!("{ORIGIN} {EMPTY_PATH} 40 03 05 0a00000200"), NLRI),
        UpdateErrorAction::TreatAsWithdraw,
        3,
        5,
        "4003050a00000200",
    );
}

#[test]
fn next_hop_unspecified_is_treat_as_withdraw() {
    assert_problem(
        &with_attributes(&format!("{ORIGIN} {EMPTY_PATH} 40 03 04 00000000"), NLRI),
        UpdateErrorAction::TreatAsWithdraw,
        3,
        8,
        "40030400000000",
    );
}

#[test]
fn med_wrong_length_is_treat_as_withdraw() {
    assert_problem(
        &valid_plus("80 04 03 000001"),
        UpdateErrorAction::TreatAsWithdraw,
        4,
        5,
        "80040300 0001",
    );
}

#[test]
fn local_pref_wrong_length_is_treat_as_withdraw() {
    assert_problem(
        &valid_plus("40 05 02 0064"),
        UpdateErrorAction::TreatAsWithdraw,
        5,
        5,
        "4005020064",
    );
}

#[test]
fn atomic_aggregate_with_value_is_discarded() {
    let update = assert_problem(
        &valid_plus("40 06 01 00"),
        UpdateErrorAction::AttributeDiscard,
        6,
        5,
        "40060100",
    );
    assert!(!update.attributes.atomic_aggregate);
    assert_eq!(
        update.announced(),
        vec!["10.2.0.0/24".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn aggregator_wrong_length_is_discarded() {
    let update = assert_problem(
        &valid_plus("c0 07 06 fde8 0a000001"),
        UpdateErrorAction::AttributeDiscard,
        7,
        5,
        "c00706fde80a000001",
    );
    assert_eq!(update.attributes.aggregator, None);
}

#[test]
fn communities_wrong_length_is_treat_as_withdraw() {
    assert_problem(
        &valid_plus("c0 08 03 000001"),
        UpdateErrorAction::TreatAsWithdraw,
        8,
        9,
        "c00803000001",
    );
}

#[test]
fn communities_empty_is_treat_as_withdraw() {
    assert_problem(
        &valid_plus("c0 08 00"),
        UpdateErrorAction::TreatAsWithdraw,
        8,
        9,
        "c00800",
    );
}

#[test]
fn originator_id_wrong_length_is_treat_as_withdraw() {
    assert_problem(
        &valid_plus("80 09 03 0a0000"),
        UpdateErrorAction::TreatAsWithdraw,
        9,
        5,
        "8009030a0000",
    );
}

#[test]
fn cluster_list_wrong_length_is_treat_as_withdraw() {
    assert_problem(
        &valid_plus("80 0a 06 0a0000010a00"),
        UpdateErrorAction::TreatAsWithdraw,
        10,
        9,
        "800a060a0000010a00",
    );
}

#[test]
fn large_communities_wrong_length_is_treat_as_withdraw() {
    assert_problem(
        &valid_plus("c0 20 08 0000fde8 00000001"),
        UpdateErrorAction::TreatAsWithdraw,
        32,
        9,
        "c020080000fde800000001",
    );
}

#[test]
fn as4_path_malformed_is_discarded_on_two_octet_session() {
    let bytes = with_attributes(
        &format!("{ORIGIN} 40 02 04 02 01 fde8 {NEXT_HOP} c0 11 03 02 01 00"),
        NLRI,
    );
    let update = decode_update(&bytes, &TWO);
    assert_eq!(update.problems.len(), 1);
    assert_eq!(
        update.problems[0].action,
        UpdateErrorAction::AttributeDiscard
    );
    assert_eq!(update.problems[0].type_code, 17);
    assert_eq!(
        update.problems[0].error.notification(),
        Notification::new(3, 9, hex("c011030201 00"))
    );
}

#[test]
fn as4_aggregator_wrong_length_is_discarded() {
    let bytes = with_attributes(
        &format!("{ORIGIN} 40 02 04 02 01 fde8 {NEXT_HOP} c0 12 07 fa56ea00 0a0000"),
        NLRI,
    );
    let update = decode_update(&bytes, &TWO);
    assert_eq!(
        update.error_action(),
        Some(UpdateErrorAction::AttributeDiscard)
    );
    assert_eq!(update.problems[0].type_code, 18);
    assert_eq!(update.problems[0].error.subcode(), 5);
}

#[test]
fn missing_origin_is_treat_as_withdraw() {
    assert_problem(
        &with_attributes(&format!("{EMPTY_PATH} {NEXT_HOP}"), NLRI),
        UpdateErrorAction::TreatAsWithdraw,
        1,
        3,
        "01",
    );
}

#[test]
fn missing_as_path_is_treat_as_withdraw() {
    assert_problem(
        &with_attributes(&format!("{ORIGIN} {NEXT_HOP}"), NLRI),
        UpdateErrorAction::TreatAsWithdraw,
        2,
        3,
        "02",
    );
}

#[test]
fn missing_next_hop_with_ipv4_nlri_is_treat_as_withdraw() {
    assert_problem(
        &with_attributes(&format!("{ORIGIN} {EMPTY_PATH}"), NLRI),
        UpdateErrorAction::TreatAsWithdraw,
        3,
        3,
        "03",
    );
}

#[test]
fn next_hop_not_needed_for_multiprotocol_only() {
    let bytes = with_attributes(
        &format!("80 0e 1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80001 {ORIGIN} {EMPTY_PATH}"),
        "",
    );
    let update = decode_update(&bytes, &FOUR);
    assert!(update.problems.is_empty(), "{:?}", update.problems);
}

#[test]
fn withdraw_only_update_needs_no_mandatory_attributes() {
    let update = decode_update("M 001c 02 0005 1a0a010000 0000", &FOUR);
    assert!(update.problems.is_empty());
}

#[test]
fn duplicate_attribute_keeps_first_and_discards_rest() {
    let update = assert_problem(
        &valid_plus("40 05 04 00000064 40 05 04 000000c8"),
        UpdateErrorAction::AttributeDiscard,
        5,
        1,
        "",
    );
    assert_eq!(update.attributes.local_pref, Some(100));
}

#[test]
fn attribute_overrunning_the_list_is_treat_as_withdraw() {
    // The last attribute claims 8 bytes but 4 remain; the NLRI is still found.
    let update = assert_problem(
        &valid_plus("40 05 08 00000064"),
        UpdateErrorAction::TreatAsWithdraw,
        5,
        5,
        "40050800000064",
    );
    assert_eq!(
        update.withdrawn(),
        vec!["10.2.0.0/24".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn truncated_attribute_header_is_treat_as_withdraw() {
    assert_problem(
        &valid_plus("40 05"),
        UpdateErrorAction::TreatAsWithdraw,
        5,
        5,
        "4005",
    );
}

#[test]
fn worst_action_wins() {
    let update = decode_update(&valid_plus("40 06 01 00 c0 08 03 000001"), &FOUR);
    assert_eq!(update.problems.len(), 2);
    assert_eq!(
        update.error_action(),
        Some(UpdateErrorAction::TreatAsWithdraw)
    );
}

#[test]
fn unsupported_family_in_mp_reach_is_ignored() {
    // AFI 1 SAFI 128 (VPN) is not carried; the attribute is ignored like other optional
    // non-transitive attributes.
    let bytes = with_attributes(
        &format!("80 0e 0a 0001 80 04 0a000001 00 00 {ORIGIN} {EMPTY_PATH}"),
        "",
    );
    let update = decode_update(&bytes, &FOUR);
    assert!(update.problems.is_empty());
    assert_eq!(update.attributes.mp_reach, None);
}

#[test]
fn update_error_display_and_subcodes_cover_every_variant() {
    let cases = [
        (UpdateError::MalformedAttributeList { reason: "x" }, 1),
        (
            UpdateError::UnrecognizedWellKnownAttribute { attribute: vec![1] },
            2,
        ),
        (UpdateError::MissingWellKnownAttribute { type_code: 1 }, 3),
        (UpdateError::AttributeFlags { attribute: vec![1] }, 4),
        (UpdateError::AttributeLength { attribute: vec![1] }, 5),
        (UpdateError::InvalidOrigin { attribute: vec![1] }, 6),
        (UpdateError::InvalidNextHop { attribute: vec![1] }, 8),
        (UpdateError::OptionalAttribute { attribute: vec![1] }, 9),
        (UpdateError::InvalidNetworkField, 10),
        (UpdateError::MalformedAsPath, 11),
    ];
    for (error, subcode) in cases {
        assert_eq!(error.notification().code, 3);
        assert_eq!(error.subcode(), subcode, "{error}");
        assert!(!error.to_string().is_empty());
    }
}
