//! BGPFilter rules (Calico's API validation and CRD rules): each rule's CIDR is of its list's
//! family and set together with `matchOperator`; `prefixLength` needs an `In`/`NotIn` CIDR
//! (BIRD's `net = [set]` is not a valid comparison) and lies within the family's width.

use ipnet::IpNet;

use super::{Subject, ValidationError};
use crate::bgpfilter::{BgpFilter, CidrMatch, FilterAction, FilterRule, MatchOperator};
use crate::wire::bgpfilter::{BGPFilterRule, BGPFilterSpec};

const KIND: &str = "BGPFilter";

const ACTIONS: [(&str, FilterAction); 2] = [
    ("Accept", FilterAction::Accept),
    ("Reject", FilterAction::Reject),
];

const OPERATORS: [(&str, MatchOperator); 4] = [
    ("Equal", MatchOperator::Equal),
    ("NotEqual", MatchOperator::NotEqual),
    ("In", MatchOperator::In),
    ("NotIn", MatchOperator::NotIn),
];

/// Validates one BGPFilter object.
pub fn validate_bgp_filter(name: &str, spec: &BGPFilterSpec) -> Result<BgpFilter, ValidationError> {
    let subject = Subject { kind: KIND, name };
    let list = |field: &str, rules: &Option<Vec<BGPFilterRule>>, ipv4: bool| {
        rules
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, rule)| {
                validate_rule(&subject, &format!("spec.{field}[{index}]"), rule, ipv4)
            })
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(BgpFilter {
        name: name.to_string(),
        export_v4: list("exportV4", &spec.export_v4, true)?,
        import_v4: list("importV4", &spec.import_v4, true)?,
        export_v6: list("exportV6", &spec.export_v6, false)?,
        import_v6: list("importV6", &spec.import_v6, false)?,
    })
}

fn validate_rule(
    subject: &Subject<'_>,
    path: &str,
    rule: &BGPFilterRule,
    ipv4: bool,
) -> Result<FilterRule, ValidationError> {
    for (field, value) in [
        ("peerType", &rule.peer_type),
        ("communities", &rule.communities),
        ("asPathPrefix", &rule.as_path_prefix),
        ("priority", &rule.priority),
        ("operations", &rule.operations),
    ] {
        if value.is_some() {
            return Err(subject.error(
                format!("{path}.{field}"),
                "is not supported by Starling (the filter would match more than intended)",
            ));
        }
    }
    let action = subject
        .optional_choice(&format!("{path}.action"), rule.action.as_deref(), &ACTIONS)?
        .ok_or_else(|| subject.error(format!("{path}.action"), "is required (Accept or Reject)"))?;
    let operator = subject.optional_choice(
        &format!("{path}.matchOperator"),
        rule.match_operator.as_deref(),
        &OPERATORS,
    )?;
    let cidr_text = rule.cidr.as_deref().filter(|text| !text.trim().is_empty());
    let width: u8 = if ipv4 { 32 } else { 128 };
    let cidr = match (cidr_text, operator) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(subject.error(
                format!("{path}.matchOperator"),
                "is required when cidr is set",
            ))
        }
        (None, Some(_)) => {
            return Err(subject.error(
                format!("{path}.cidr"),
                "is required when matchOperator is set",
            ))
        }
        (Some(text), Some(operator)) => {
            let field = format!("{path}.cidr");
            // Calico's validator accepts host bits here; BIRD matches on the masked network.
            let cidr = subject.lenient_cidr(&field, text)?;
            if matches!(cidr, IpNet::V4(_)) != ipv4 {
                let family = if ipv4 { "IPv4" } else { "IPv6" };
                return Err(subject.error(field, format!("{text:?} is not an {family} CIDR")));
            }
            Some(CidrMatch {
                operator,
                cidr,
                min_length: cidr.prefix_len(),
                max_length: width,
            })
        }
    };
    let cidr = match (&rule.prefix_length, cidr) {
        (None, cidr) => cidr,
        (Some(_), None) => {
            return Err(subject.error(
                format!("{path}.prefixLength"),
                "needs cidr and matchOperator",
            ))
        }
        (
            Some(_),
            Some(CidrMatch {
                operator: MatchOperator::Equal | MatchOperator::NotEqual,
                ..
            }),
        ) => {
            return Err(subject.error(
                format!("{path}.prefixLength"),
                "needs matchOperator In or NotIn",
            ))
        }
        (Some(range), Some(mut cidr)) => {
            let bound = |field: &str, value: Option<i64>| {
                value
                    .map(|value| {
                        subject.int_in::<u8>(
                            &format!("{path}.prefixLength.{field}"),
                            value,
                            0,
                            i64::from(width),
                        )
                    })
                    .transpose()
            };
            let min = bound("min", range.min)?;
            let max = bound("max", range.max)?;
            if let (Some(min), Some(max)) = (min, max) {
                if min > max {
                    return Err(subject.error(
                        format!("{path}.prefixLength"),
                        format!("min {min} is greater than max {max}"),
                    ));
                }
            }
            cidr.min_length = cidr.min_length.max(min.unwrap_or(0));
            cidr.max_length = cidr.max_length.min(max.unwrap_or(width));
            Some(cidr)
        }
    };
    let source = rule.source.as_deref().filter(|text| !text.is_empty());
    let remote_peers_only = match source {
        None => false,
        Some("RemotePeers") => true,
        Some(other) => {
            return Err(subject.error(
                format!("{path}.source"),
                format!("{other:?} is not one of RemotePeers"),
            ))
        }
    };
    let interface = match rule.interface.as_deref().filter(|text| !text.is_empty()) {
        None => None,
        Some(pattern) => {
            let valid = pattern.len() <= 15
                && pattern
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '*' | '-'));
            if !valid {
                return Err(subject.error(
                    format!("{path}.interface"),
                    format!(
                        "{pattern:?} is not an interface pattern (1-15 of a-z A-Z 0-9 _ . - *)"
                    ),
                ));
            }
            Some(pattern.to_string())
        }
    };
    Ok(FilterRule {
        cidr,
        remote_peers_only,
        interface,
        action,
    })
}
