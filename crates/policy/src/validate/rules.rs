//! Validation of one Calico rule (`policy_common.go` `Rule`, `EntityRule`) into a checked
//! [`Rule`] with cluster-wide selectors.

use ipnet::IpNet;
use starling_selector::Selector;

use super::fields::{self, PROTOCOL_ICMP, PROTOCOL_ICMPV6};
use super::scope::{self, EntityParts};
use super::{Entity, Problems, Rule};
use crate::model::{self, NumOrString};
use crate::program::{Action, Family};

pub fn action(text: &str) -> Result<Action, String> {
    Ok(match text {
        "Allow" => Action::Allow,
        "Deny" => Action::Deny,
        "Pass" => Action::Pass,
        "Log" => Action::Log,
        "" => return Err("missing (Allow, Deny, Pass or Log)".to_string()),
        other => {
            return Err(format!(
                "{other:?} is not an action (Allow, Deny, Pass or Log)"
            ))
        }
    })
}

/// Checks `rule` found at `path`; `namespace` scopes its selectors (`None`: global).
pub fn rule(
    rule: &model::Rule,
    path: &str,
    namespace: Option<&str>,
    problems: &mut Problems,
) -> Option<Rule> {
    let start = problems.len();
    let action = problems.check(format!("{path}.action"), action(&rule.action));
    let ip_version = match rule.ip_version {
        None => None,
        Some(4) => Some(Family::V4),
        Some(6) => Some(Family::V6),
        Some(other) => {
            problems.push(
                format!("{path}.ipVersion"),
                format!("{other} is not an IP version (4 or 6)"),
            );
            None
        }
    };
    let protocol = rule
        .protocol
        .as_ref()
        .and_then(|value| problems.check(format!("{path}.protocol"), fields::protocol(value)));
    let not_protocol = rule
        .not_protocol
        .as_ref()
        .and_then(|value| problems.check(format!("{path}.notProtocol"), fields::protocol(value)));
    let mut icmp_field = |field: &str, value: &Option<model::IcmpFields>| {
        let value = value.as_ref()?;
        let checked = problems.check(
            format!("{path}.{field}"),
            fields::icmp(value.icmp_type, value.code),
        )?;
        if checked.is_some() && !matches!(protocol, Some(PROTOCOL_ICMP | PROTOCOL_ICMPV6)) {
            problems.push(
                format!("{path}.{field}"),
                "needs protocol ICMP or ICMPv6".to_string(),
            );
        }
        checked
    };
    let icmp = icmp_field("icmp", &rule.icmp);
    let not_icmp = icmp_field("notICMP", &rule.not_icmp);
    match (protocol, ip_version) {
        (Some(PROTOCOL_ICMP), Some(Family::V6)) | (Some(PROTOCOL_ICMPV6), Some(Family::V4)) => {
            problems.push(
                format!("{path}.protocol"),
                format!(
                    "{} does not match ipVersion",
                    fields::protocol_name(protocol.unwrap_or_default())
                ),
            )
        }
        _ => {}
    }
    if rule.http.is_some() {
        problems.push(
            format!("{path}.http"),
            "HTTP match needs Calico's L7 proxy, which Starling does not have".to_string(),
        );
    }
    let source = entity(
        &rule.source,
        &format!("{path}.source"),
        namespace,
        protocol,
        ip_version,
        problems,
    );
    let destination = entity(
        &rule.destination,
        &format!("{path}.destination"),
        namespace,
        protocol,
        ip_version,
        problems,
    );
    if problems.len() != start {
        return None;
    }
    Some(Rule {
        action: action?,
        ip_version,
        protocol,
        not_protocol,
        icmp,
        not_icmp,
        source: source?,
        destination: destination?,
    })
}

fn optional_selector(
    text: &Option<String>,
    path: String,
    problems: &mut Problems,
) -> Option<Option<Selector>> {
    match text.as_deref() {
        // Calico's fields are plain strings: empty means "not given".
        None | Some("") => Some(None),
        Some(text) => problems.check(path, fields::selector(text)).map(Some),
    }
}

fn nets(
    texts: &[String],
    path: &str,
    ip_version: Option<Family>,
    problems: &mut Problems,
) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for (index, text) in texts.iter().enumerate() {
        let item = format!("{path}[{index}]");
        if let Some(net) = problems.check(item.clone(), fields::net(text)) {
            if ip_version.is_some_and(|family| family != Family::of_net(&net)) {
                problems.push(item, format!("{text:?} does not match ipVersion"));
            }
            nets.push(net);
        }
    }
    nets
}

fn ports(
    values: &[NumOrString],
    path: &str,
    protocol: Option<u8>,
    problems: &mut Problems,
) -> Vec<super::Port> {
    if !values.is_empty() && !protocol.is_some_and(fields::has_ports) {
        problems.push(
            path.to_string(),
            "ports need protocol TCP, UDP, SCTP or UDPLite".to_string(),
        );
    }
    values
        .iter()
        .enumerate()
        .filter_map(|(index, value)| {
            problems.check(format!("{path}[{index}]"), fields::port(value))
        })
        .collect()
}

fn entity(
    entity: &model::EntityRule,
    path: &str,
    namespace: Option<&str>,
    protocol: Option<u8>,
    ip_version: Option<Family>,
    problems: &mut Problems,
) -> Option<Entity> {
    let start = problems.len();
    let nets_checked = nets(&entity.nets, &format!("{path}.nets"), ip_version, problems);
    let not_nets = nets(
        &entity.not_nets,
        &format!("{path}.notNets"),
        ip_version,
        problems,
    );
    let selector = optional_selector(&entity.selector, format!("{path}.selector"), problems);
    let not_selector = optional_selector(
        &entity.not_selector,
        format!("{path}.notSelector"),
        problems,
    );
    let namespace_selector = optional_selector(
        &entity.namespace_selector,
        format!("{path}.namespaceSelector"),
        problems,
    );
    let ports_checked = ports(&entity.ports, &format!("{path}.ports"), protocol, problems);
    let not_ports = ports(
        &entity.not_ports,
        &format!("{path}.notPorts"),
        protocol,
        problems,
    );
    if entity.services.is_some() {
        problems.push(
            format!("{path}.services"),
            "service matches are not supported".to_string(),
        );
    }
    let mut service_accounts = None;
    if let Some(accounts) = &entity.service_accounts {
        for (index, name) in accounts.names.iter().enumerate() {
            if name.is_empty() {
                problems.push(
                    format!("{path}.serviceAccounts.names[{index}]"),
                    "empty name".to_string(),
                );
            }
        }
        let selector = optional_selector(
            &accounts.selector,
            format!("{path}.serviceAccounts.selector"),
            problems,
        );
        if let Some(selector) = selector {
            service_accounts = scope::service_accounts(&accounts.names, selector.as_ref());
        }
    }
    if problems.len() != start {
        return None;
    }
    let (selector, not_selector, namespace_selector) =
        (selector?, not_selector?, namespace_selector?);
    let scoped = scope::entity_selector(
        EntityParts {
            selector: selector.as_ref(),
            not_selector: not_selector.as_ref(),
            namespace_selector: namespace_selector.as_ref(),
            service_accounts,
        },
        namespace,
    );
    let selector = match scoped {
        None => None,
        Some(expr) => problems.check(
            format!("{path}.selector"),
            Selector::from_expr(expr).map_err(|error| format!("cannot be scoped: {error}")),
        ),
    };
    if problems.len() != start {
        return None;
    }
    Some(Entity {
        nets: nets_checked,
        not_nets,
        selector,
        not_selector,
        ports: ports_checked,
        not_ports,
    })
}
