//! BGPFilter validation: malformed filters are refused with an error naming the object and the
//! field; valid ones become rules with Calico's prefix-length ranges.

use serde_json::{json, Value};
use starling_model::bgpfilter::{FilterAction, MatchOperator};
use starling_model::validate::bgpfilter::validate_bgp_filter;
use starling_model::wire::BGPFilterSpec;

fn spec(value: Value) -> BGPFilterSpec {
    serde_json::from_value(value).unwrap()
}

#[test]
fn malformed_filters_name_object_and_field() {
    let cases = [
        (json!({"importV4": [{"action": "Accept"}, {"action": "Accept"}, {"action": "Accept", "matchOperator": "In", "cidr": "10.0.0/8"}]}),
            "BGPFilter \"f\": spec.importV4[2].cidr \"10.0.0/8\" is not a CIDR"),
        (json!({"exportV4": [{"action": "Accept", "matchOperator": "In", "cidr": "fd00::/8"}]}),
            "BGPFilter \"f\": spec.exportV4[0].cidr \"fd00::/8\" is not an IPv4 CIDR"),
        (json!({"exportV6": [{"action": "Accept", "matchOperator": "In", "cidr": "10.0.0.0/8"}]}),
            "BGPFilter \"f\": spec.exportV6[0].cidr \"10.0.0.0/8\" is not an IPv6 CIDR"),
        (json!({"importV6": [{"matchOperator": "In", "cidr": "fd00::/8"}]}),
            "BGPFilter \"f\": spec.importV6[0].action is required (Accept or Reject)"),
        (json!({"importV4": [{"action": "Allow"}]}),
            "BGPFilter \"f\": spec.importV4[0].action \"Allow\" is not one of Accept, Reject"),
        (json!({"importV4": [{"action": "Accept", "matchOperator": "Contains", "cidr": "10.0.0.0/8"}]}),
            "BGPFilter \"f\": spec.importV4[0].matchOperator \"Contains\" is not one of Equal, NotEqual, In, NotIn"),
        (json!({"importV4": [{"action": "Accept", "cidr": "10.0.0.0/8"}]}),
            "BGPFilter \"f\": spec.importV4[0].matchOperator is required when cidr is set"),
        (json!({"importV4": [{"action": "Accept", "matchOperator": "In"}]}),
            "BGPFilter \"f\": spec.importV4[0].cidr is required when matchOperator is set"),
        (json!({"importV4": [{"action": "Accept", "prefixLength": {"min": 24}}]}),
            "BGPFilter \"f\": spec.importV4[0].prefixLength needs cidr and matchOperator"),
        (json!({"importV4": [{"action": "Accept", "matchOperator": "Equal", "cidr": "10.0.0.0/8", "prefixLength": {"min": 24}}]}),
            "BGPFilter \"f\": spec.importV4[0].prefixLength needs matchOperator In or NotIn"),
        (json!({"importV4": [{"action": "Accept", "matchOperator": "In", "cidr": "10.0.0.0/8", "prefixLength": {"max": 33}}]}),
            "BGPFilter \"f\": spec.importV4[0].prefixLength.max 33 is out of range 0..32"),
        (json!({"importV6": [{"action": "Accept", "matchOperator": "In", "cidr": "fd00::/8", "prefixLength": {"min": -1}}]}),
            "BGPFilter \"f\": spec.importV6[0].prefixLength.min -1 is out of range 0..128"),
        (json!({"importV4": [{"action": "Accept", "matchOperator": "In", "cidr": "10.0.0.0/8", "prefixLength": {"min": 28, "max": 24}}]}),
            "BGPFilter \"f\": spec.importV4[0].prefixLength min 28 is greater than max 24"),
        (json!({"exportV4": [{"action": "Accept", "source": "LocalRoutes"}]}),
            "BGPFilter \"f\": spec.exportV4[0].source \"LocalRoutes\" is not one of RemotePeers"),
        (json!({"exportV4": [{"action": "Reject", "interface": "eth 0"}]}),
            "BGPFilter \"f\": spec.exportV4[0].interface \"eth 0\" is not an interface pattern (1-15 of a-z A-Z 0-9 _ . - *)"),
        (json!({"exportV4": [{"action": "Reject", "interface": "a-very-long-interface"}]}),
            "BGPFilter \"f\": spec.exportV4[0].interface \"a-very-long-interface\" is not an interface pattern (1-15 of a-z A-Z 0-9 _ . - *)"),
        (json!({"exportV4": [{"action": "Accept", "peerType": "eBGP"}]}),
            "BGPFilter \"f\": spec.exportV4[0].peerType is not supported by Starling (the filter would match more than intended)"),
    ];
    for (value, expected) in cases {
        let error = validate_bgp_filter("f", &spec(value.clone()))
            .expect_err(&format!("{value} must be refused"));
        assert_eq!(error.to_string(), expected);
    }
}

#[test]
fn valid_filter_resolves_prefix_length_ranges() {
    let filter = validate_bgp_filter(
        "my-filter",
        &spec(json!({
            "exportV4": [
                {"action": "Accept", "matchOperator": "In", "cidr": "77.0.0.0/16", "source": "RemotePeers"},
                {"action": "Reject", "interface": "*.calico"}
            ],
            "importV4": [
                {"action": "Accept", "matchOperator": "In", "cidr": "55.0.0.1/16", "prefixLength": {"min": 30}},
                {"action": "Reject", "matchOperator": "NotIn", "cidr": "44.0.0.0/16", "prefixLength": {"min": 8, "max": 20}}
            ],
            "importV6": [{"action": "Accept", "matchOperator": "Equal", "cidr": "5000::/64"}, {"action": "Reject"}]
        })),
    )
    .unwrap();
    assert_eq!(filter.name, "my-filter");
    assert_eq!(filter.export_v4.len(), 2);
    assert!(filter.export_v4[0].remote_peers_only);
    assert_eq!(filter.export_v4[1].interface.as_deref(), Some("*.calico"));
    assert!(filter.export_v4[1].cidr.is_none());
    let first = filter.import_v4[0].cidr.as_ref().unwrap();
    // Host bits masked; min raised to 30, max the family width.
    assert_eq!(first.cidr.to_string(), "55.0.0.0/16");
    assert_eq!((first.min_length, first.max_length), (30, 32));
    let second = filter.import_v4[1].cidr.as_ref().unwrap();
    // min below the CIDR's own length is raised to it (Calico's cidr{max(len,min),max}).
    assert_eq!((second.min_length, second.max_length), (16, 20));
    assert_eq!(second.operator, MatchOperator::NotIn);
    assert_eq!(filter.import_v6[1].action, FilterAction::Reject);
    assert!(filter.export_v6.is_empty());
}

#[test]
fn wire_round_trip_keeps_calico_field_names() {
    let value = json!({
        "exportV4": [{"action": "Accept", "matchOperator": "In", "cidr": "77.0.0.0/16",
                      "prefixLength": {"min": 24, "max": 28}, "source": "RemotePeers", "interface": "eth*"}],
        "importV6": [{"action": "Reject"}]
    });
    let parsed = spec(value.clone());
    assert_eq!(serde_json::to_value(&parsed).unwrap(), value);
}
