//! Calico's BGPFilter semantics as a table: first matching rule across a peer's filters in
//! order; no match leaves the default behaviour; a missing or invalid filter rejects all.

use std::sync::Arc;

use ipnet::IpNet;
use serde_json::json;
use starling_bgp::filter::{FilterChain, FilterSet, FilterVerdict};
use starling_model::bgpfilter::{Direction, RouteFacts};
use starling_model::validate::bgpfilter::validate_bgp_filter;

fn known() -> FilterSet {
    let specs = [
        (
            "allow-77",
            json!({
                "exportV4": [
                    {"action": "Accept", "matchOperator": "In", "cidr": "77.0.0.0/16"},
                    {"action": "Reject", "matchOperator": "In", "cidr": "78.0.0.0/8"}
                ],
                "importV4": [
                    {"action": "Reject", "matchOperator": "Equal", "cidr": "10.9.0.0/24"},
                    {"action": "Accept", "matchOperator": "In", "cidr": "55.0.0.0/16", "prefixLength": {"min": 30}}
                ]
            }),
        ),
        (
            "reject-rest",
            json!({
                "exportV4": [{"action": "Reject"}],
                "exportV6": [{"action": "Accept", "matchOperator": "NotEqual", "cidr": "fd00::/64"}],
                "importV4": [{"action": "Reject", "matchOperator": "NotIn", "cidr": "55.0.0.0/8"}]
            }),
        ),
        (
            "peers-only",
            json!({
                "exportV4": [
                    {"action": "Reject", "source": "RemotePeers"},
                    {"action": "Reject", "interface": "*.calico"}
                ]
            }),
        ),
    ];
    let mut set: FilterSet = specs
        .into_iter()
        .map(|(name, value)| {
            let filter =
                validate_bgp_filter(name, &serde_json::from_value(value).unwrap()).unwrap();
            (name.to_string(), Ok(Arc::new(filter)))
        })
        .collect();
    set.insert(
        "broken".into(),
        Err("BGPFilter \"broken\": spec.importV4[0].cidr \"x\" is not a CIDR".into()),
    );
    set
}

fn chain(names: &[&str]) -> FilterChain {
    let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
    FilterChain::resolve("tor", &names, &known())
}

fn decide(
    chain: &FilterChain,
    direction: Direction,
    prefix: &str,
    from_peer: bool,
    interface: Option<&str>,
) -> FilterVerdict {
    let prefix: IpNet = prefix.parse().unwrap();
    chain.decide(
        direction,
        &RouteFacts {
            prefix: &prefix,
            from_peer,
            interface,
        },
    )
}

/// (chain, direction, prefix, learned from a peer, interface, expected verdict)
type Row<'a> = (
    &'a FilterChain,
    Direction,
    &'a str,
    bool,
    Option<&'a str>,
    FilterVerdict,
);

#[test]
fn first_match_across_filters_in_order() {
    use Direction::{Export, Import};
    use FilterVerdict::{Accept, NoMatch, Reject};
    let both = chain(&["allow-77", "reject-rest"]);
    let reversed = chain(&["reject-rest", "allow-77"]);
    let none = chain(&[]);
    let peers = chain(&["peers-only"]);
    let table: [Row; 24] = [
        // The first filter's rules decide before the second's are looked at.
        (&both, Export, "77.0.1.0/24", false, None, Accept),
        (&both, Export, "78.1.0.0/16", false, None, Reject),
        (&both, Export, "10.0.0.0/26", false, None, Reject),
        (&reversed, Export, "77.0.1.0/24", false, None, Reject),
        // In matches the CIDR itself and more-specifics; not a shorter prefix.
        (&both, Export, "77.0.0.0/16", false, None, Accept),
        (
            &chain(&["allow-77"]),
            Export,
            "77.0.0.0/15",
            false,
            None,
            NoMatch,
        ),
        // A family without rules: no match in the first filter, the second's v6 rule.
        (&both, Export, "fd00:1::/64", false, None, Accept),
        (&both, Export, "fd00::/64", false, None, NoMatch),
        // Import: Equal is exact; prefixLength {min: 30} limits In to /30../32.
        (&both, Import, "10.9.0.0/24", true, None, Reject),
        (&both, Import, "10.9.0.0/25", true, None, Reject),
        (
            &chain(&["allow-77"]),
            Import,
            "10.9.0.0/25",
            true,
            None,
            NoMatch,
        ),
        (&both, Import, "55.0.1.4/30", true, None, Accept),
        (&both, Import, "55.0.1.0/24", true, None, NoMatch),
        (&both, Import, "55.1.0.0/16", true, None, NoMatch),
        (&both, Import, "56.0.0.0/16", true, None, Reject),
        // IPv6 import with no v6 import rules anywhere: default behaviour.
        (&both, Import, "fd00::/64", true, None, NoMatch),
        // No filters at all.
        (&none, Export, "77.0.1.0/24", false, None, NoMatch),
        (&none, Import, "77.0.1.0/24", true, None, NoMatch),
        // source: RemotePeers matches routes learned over BGP only.
        (&peers, Export, "10.1.0.0/26", true, None, Reject),
        (&peers, Export, "10.1.0.0/26", false, None, NoMatch),
        // interface: pattern on the route's interface; unknown interface never matches.
        (
            &peers,
            Export,
            "10.1.0.0/26",
            false,
            Some("vxlan.calico"),
            Reject,
        ),
        (&peers, Export, "10.1.0.0/26", false, Some("eth0"), NoMatch),
        (&peers, Export, "10.1.0.0/26", false, None, NoMatch),
        (
            &peers,
            Import,
            "10.1.0.0/26",
            true,
            Some("vxlan.calico"),
            NoMatch,
        ),
    ];
    for (index, (chain, direction, prefix, from_peer, interface, expected)) in
        table.into_iter().enumerate()
    {
        assert_eq!(
            decide(chain, direction, prefix, from_peer, interface),
            expected,
            "row {index}: {direction:?} {prefix} from_peer={from_peer} interface={interface:?}"
        );
    }
}

#[test]
fn missing_or_invalid_filter_rejects_everything() {
    for names in [
        &["allow-77", "nope"][..],
        &["broken"],
        &["nope", "allow-77"],
    ] {
        let chain = chain(names);
        let reason = chain.unusable_reason().expect("unusable").to_string();
        assert!(
            reason.starts_with("BGPPeer \"tor\": spec.filters names"),
            "{reason}"
        );
        for direction in [Direction::Import, Direction::Export] {
            for prefix in ["77.0.1.0/24", "10.0.0.0/8", "fd00::/64"] {
                assert_eq!(
                    decide(&chain, direction, prefix, true, None),
                    FilterVerdict::Reject,
                    "{names:?} {prefix}"
                );
            }
        }
    }
    assert!(chain(&["nope"])
        .unusable_reason()
        .unwrap()
        .contains("BGPFilter \"nope\", which does not exist"));
    assert!(chain(&["broken"])
        .unusable_reason()
        .unwrap()
        .contains("spec.importV4[0].cidr"));
}
