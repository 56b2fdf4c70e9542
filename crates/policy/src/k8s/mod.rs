//! Kubernetes objects in Calico's model, as Calico converts them (reference §1.2, §2.6, §2.7;
//! `libcalico-go/lib/backend/k8s/conversion/conversion.go`).
//!
//! Contract:
//! - [`to_calico`] turns a `networking.k8s.io/v1` NetworkPolicy into the Calico NetworkPolicy
//!   Calico would: plain name (v3.32+), tier `default`, order 1000, selector
//!   `projectcalico.org/orchestrator == 'k8s' && <podSelector>`, one `Allow` rule per
//!   (protocol × peer) with ports grouped per protocol (TCP when absent), numeric ports merged
//!   into ranges, `endPort` as `port:endPort`, ipBlock as nets/notNets, `namespaceSelector: {}`
//!   as `all()`. `policyTypes` left out are defaulted as the API server does: Ingress always,
//!   Egress when there are egress rules. What the API server would reject (bad label selector,
//!   CIDR, protocol, port, `endPort` below `port` or with a named port, `except` outside
//!   `cidr`, an empty peer) is rejected here with the Kubernetes field path.
//! - [`network_policy`] is that conversion checked into a [`Policy`] of kind
//!   `KubernetesNetworkPolicy` (Felix's `knp`).
//! - [`namespace_profile`] / [`service_account_profile`]: the `kns.<ns>` profile (allow all
//!   both ways, labels `pcns.<key>` and `pcns.projectcalico.org/name`) and the
//!   `ksa.<ns>.<sa>` profile (labels `pcsa.<key>` and `pcsa.projectcalico.org/name`, no rules),
//!   as wire objects (what Calico's controllers write to etcd) and checked.

mod selector;

use std::collections::BTreeMap;

use ipnet::IpNet;
use starling_selector::{Expr, Selector};

pub use selector::{is_label_key, is_label_value};

use crate::model::{self, KubePort, NumOrString, ObjectMeta, ObjectRef, Peer};
use crate::program::PolicyKind;
use crate::validate::scope::{NAMESPACE_LABEL_PREFIX, NAME_LABEL, SERVICE_ACCOUNT_LABEL_PREFIX};
use crate::validate::{self, Problems, Profile, Rule, ValidationError};

/// The order Calico gives every converted Kubernetes policy.
pub const KUBERNETES_POLICY_ORDER: f64 = 1000.0;
pub const NAMESPACE_PROFILE_PREFIX: &str = "kns.";
/// The name under which Calico's controllers store a converted Kubernetes policy (etcd mode),
/// and under which Felix orders it among policies of the same order.
pub const POLICY_NAME_PREFIX: &str = "knp.default.";
pub const SERVICE_ACCOUNT_PROFILE_PREFIX: &str = "ksa.";

/// A converted and checked Kubernetes NetworkPolicy.
pub fn network_policy(
    object: &model::KubeNetworkPolicy,
) -> Result<validate::Policy, ValidationError> {
    validate::network_policy_as(&to_calico(object)?, PolicyKind::KubernetesNetworkPolicy)
}

/// Decodes, converts and checks a Kubernetes NetworkPolicy from JSON.
pub fn network_policy_json(value: &serde_json::Value) -> Result<validate::Policy, ValidationError> {
    network_policy(&model::decode(
        model::KIND_KUBERNETES_NETWORK_POLICY,
        value,
    )?)
}

fn selector_text(expr: Expr) -> Result<String, String> {
    Selector::from_expr(expr)
        .map(|selector| selector.to_string())
        .map_err(|error| error.to_string())
}

/// The Calico NetworkPolicy Calico's converter makes of `object`.
pub fn to_calico(
    object: &model::KubeNetworkPolicy,
) -> Result<model::NetworkPolicy, ValidationError> {
    let reference = ObjectRef::new(model::KIND_KUBERNETES_NETWORK_POLICY, &object.metadata);
    let mut problems = Problems::default();
    let spec = &object.spec;
    let selector = problems.check(
        "spec.podSelector".to_string(),
        selector::pod_selector(Some(&spec.pod_selector))
            .map_err(|(field, message)| format!("{field}: {message}"))
            .and_then(selector_text),
    );
    let (mut ingress_type, mut egress_type) = (false, false);
    for (index, kind) in spec.policy_types.iter().enumerate() {
        match kind.as_str() {
            "Ingress" => ingress_type = true,
            "Egress" => egress_type = true,
            other => problems.push(
                format!("spec.policyTypes[{index}]"),
                format!("{other:?} is not a policy type (Ingress or Egress)"),
            ),
        }
    }
    if spec.policy_types.is_empty() {
        ingress_type = true;
        egress_type = !spec.egress.is_empty();
    }
    let mut ingress = Vec::new();
    for (index, rule) in spec.ingress.iter().enumerate() {
        let path = format!("spec.ingress[{index}]");
        ingress.extend(convert_rule(
            &rule.from,
            &rule.ports,
            &path,
            "from",
            true,
            &mut problems,
        ));
    }
    let mut egress = Vec::new();
    for (index, rule) in spec.egress.iter().enumerate() {
        let path = format!("spec.egress[{index}]");
        egress.extend(convert_rule(
            &rule.to,
            &rule.ports,
            &path,
            "to",
            false,
            &mut problems,
        ));
    }
    let types = [("Ingress", ingress_type), ("Egress", egress_type)]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| name.to_string())
        .collect();
    let converted = selector.map(|selector| model::NetworkPolicy {
        api_version: "projectcalico.org/v3".to_string(),
        kind: model::KIND_NETWORK_POLICY.to_string(),
        metadata: ObjectMeta {
            name: object.metadata.name.clone(),
            namespace: object.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        spec: model::NetworkPolicySpec {
            tier: Some(validate::DEFAULT_TIER.to_string()),
            order: Some(KUBERNETES_POLICY_ORDER),
            ingress,
            egress,
            selector: Some(selector),
            types,
            service_account_selector: None,
            performance_hints: Vec::new(),
        },
    });
    problems.finish(reference, converted)
}

/// One peer's Calico fields: (selector, namespaceSelector, nets, notNets).
type PeerFields = (Option<String>, Option<String>, Vec<String>, Vec<String>);

fn convert_peer(peer: &Peer, path: &str, problems: &mut Problems) -> Option<PeerFields> {
    if let Some(block) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            problems.push(
                format!("{path}.ipBlock"),
                "cannot be combined with podSelector or namespaceSelector".to_string(),
            );
            return None;
        }
        let cidr = problems.check(
            format!("{path}.ipBlock.cidr"),
            block
                .cidr
                .parse::<IpNet>()
                .map_err(|_| format!("{:?} is not a CIDR", block.cidr)),
        )?;
        let mut except = Vec::new();
        for (index, text) in block.except.iter().enumerate() {
            let field = format!("{path}.ipBlock.except[{index}]");
            let Some(net) = problems.check(
                field.clone(),
                text.parse::<IpNet>()
                    .map_err(|_| format!("{text:?} is not a CIDR")),
            ) else {
                continue;
            };
            if !cidr.trunc().contains(&net) || net.prefix_len() <= cidr.prefix_len() {
                problems.push(
                    field,
                    format!("{text:?} is not a strict subset of cidr {:?}", block.cidr),
                );
            }
            except.push(net.trunc().to_string());
        }
        return Some((None, None, vec![cidr.trunc().to_string()], except));
    }
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        problems.push(
            path.to_string(),
            "a peer needs podSelector, namespaceSelector or ipBlock".to_string(),
        );
        return None;
    }
    let pods = problems.check(
        format!("{path}.podSelector"),
        selector::pod_selector(peer.pod_selector.as_ref())
            .map_err(|(field, message)| format!("{field}: {message}"))
            .and_then(selector_text),
    );
    let namespaces = problems.check(
        format!("{path}.namespaceSelector"),
        selector::namespace_selector(peer.namespace_selector.as_ref())
            .map_err(|(field, message)| format!("{field}: {message}"))
            .and_then(|expr| expr.map(selector_text).transpose()),
    );
    Some((Some(pods?), namespaces?, Vec::new(), Vec::new()))
}

/// A Kubernetes port as (protocol name, port criterion; `None` = every port).
fn convert_port(
    port: &KubePort,
    path: &str,
    problems: &mut Problems,
) -> Option<(String, Option<NumOrString>)> {
    let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".to_string());
    if !matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP") {
        problems.push(
            format!("{path}.protocol"),
            format!("{protocol:?} is not a protocol (TCP, UDP or SCTP)"),
        );
        return None;
    }
    let in_range = |number: i64| (1..=65535).contains(&number);
    let criterion = match (&port.port, port.end_port) {
        (None, None) => None,
        (None, Some(_)) => {
            problems.push(
                format!("{path}.endPort"),
                "needs a numeric port".to_string(),
            );
            return None;
        }
        (Some(NumOrString::Number(number)), end) => {
            if !in_range(*number) {
                problems.push(
                    format!("{path}.port"),
                    format!("{number} is out of range (1-65535)"),
                );
                return None;
            }
            match end {
                None => Some(NumOrString::Number(*number)),
                Some(end) if !in_range(end) => {
                    problems.push(
                        format!("{path}.endPort"),
                        format!("{end} is out of range (1-65535)"),
                    );
                    return None;
                }
                Some(end) if end < *number => {
                    problems.push(
                        format!("{path}.endPort"),
                        format!("{end} is below port {number}"),
                    );
                    return None;
                }
                Some(end) if end == *number => Some(NumOrString::Number(*number)),
                Some(end) => Some(NumOrString::Text(format!("{number}:{end}"))),
            }
        }
        (Some(NumOrString::Text(name)), end) => {
            if !validate::is_port_name(name) {
                problems.push(
                    format!("{path}.port"),
                    format!("{name:?} is not a port name"),
                );
                return None;
            }
            if end.is_some() {
                problems.push(
                    format!("{path}.endPort"),
                    "cannot be used with a named port".to_string(),
                );
                return None;
            }
            Some(NumOrString::Text(name.clone()))
        }
    };
    Some((protocol, criterion))
}

/// Calico's `SimplifyPorts`: named ports as given, then numeric ports merged into the fewest
/// ranges; one numeric port or fewer leaves the list as it was.
fn simplify_ports(ports: Vec<NumOrString>) -> Vec<NumOrString> {
    let mut named = Vec::new();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for port in &ports {
        match port {
            NumOrString::Number(number) => ranges.push((*number as u32, *number as u32)),
            NumOrString::Text(text) => match text.split_once(':') {
                Some((first, last)) => {
                    if let (Ok(first), Ok(last)) = (first.parse(), last.parse()) {
                        ranges.push((first, last));
                    }
                }
                None => named.push(port.clone()),
            },
        }
    }
    let count: u32 = ranges.iter().map(|(first, last)| last - first + 1).sum();
    if ports.len() <= 1 || count <= 1 {
        return ports;
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(previous) if first <= previous.1 + 1 => previous.1 = previous.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    named.extend(merged.into_iter().map(|(first, last)| {
        if first == last {
            NumOrString::Number(i64::from(first))
        } else {
            NumOrString::Text(format!("{first}:{last}"))
        }
    }));
    named
}

fn convert_rule(
    peers: &[Peer],
    ports: &[KubePort],
    path: &str,
    peer_field: &str,
    ingress: bool,
    problems: &mut Problems,
) -> Vec<model::Rule> {
    let start = problems.len();
    let peer_fields: Vec<Option<PeerFields>> = if peers.is_empty() {
        vec![None]
    } else {
        peers
            .iter()
            .enumerate()
            .map(|(index, peer)| {
                convert_peer(peer, &format!("{path}.{peer_field}[{index}]"), problems).map(Some)
            })
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    };
    // Protocol name → ports (`None`: every port). No ports at all: one entry without protocol.
    let mut per_protocol: BTreeMap<String, Option<Vec<NumOrString>>> = BTreeMap::new();
    if ports.is_empty() {
        per_protocol.insert(String::new(), None);
    }
    for (index, port) in ports.iter().enumerate() {
        let Some((protocol, criterion)) =
            convert_port(port, &format!("{path}.ports[{index}]"), problems)
        else {
            continue;
        };
        match criterion {
            None => {
                per_protocol.insert(protocol, None);
            }
            Some(criterion) => {
                let entry = per_protocol
                    .entry(protocol)
                    .or_insert_with(|| Some(Vec::new()));
                // An "every port" entry stays so.
                if let Some(list) = entry {
                    list.push(criterion);
                }
            }
        }
    }
    if problems.len() != start {
        return Vec::new();
    }
    let mut rules = Vec::new();
    for (protocol, ports) in per_protocol {
        let ports = simplify_ports(ports.unwrap_or_default());
        let protocol = (!protocol.is_empty()).then_some(NumOrString::Text(protocol));
        for peer in &peer_fields {
            let (selector, namespace_selector, nets, not_nets) = peer.clone().unwrap_or_default();
            let peer_side = model::EntityRule {
                nets,
                not_nets,
                selector,
                namespace_selector,
                ..model::EntityRule::default()
            };
            let mut rule = model::Rule {
                action: "Allow".to_string(),
                protocol: protocol.clone(),
                ..model::Rule::default()
            };
            if ingress {
                rule.source = peer_side;
                rule.destination.ports = ports.clone();
            } else {
                rule.destination = model::EntityRule {
                    ports: ports.clone(),
                    ..peer_side
                };
            }
            rules.push(rule);
        }
    }
    rules
}

fn prefixed_labels(
    labels: &BTreeMap<String, String>,
    prefix: &str,
    name: &str,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = labels
        .iter()
        .map(|(key, value)| (format!("{prefix}{key}"), value.clone()))
        .collect();
    out.insert(format!("{prefix}{NAME_LABEL}"), name.to_string());
    out
}

fn profile_object(name: String, spec: model::ProfileSpec) -> model::Profile {
    model::Profile {
        api_version: "projectcalico.org/v3".to_string(),
        kind: model::KIND_PROFILE.to_string(),
        metadata: ObjectMeta {
            name,
            ..ObjectMeta::default()
        },
        spec,
    }
}

/// The `kns.<namespace>` profile as Calico writes it.
pub fn namespace_profile_object(namespace: &model::Namespace) -> model::Profile {
    let name = &namespace.metadata.name;
    let allow = || {
        vec![model::Rule {
            action: "Allow".to_string(),
            ..model::Rule::default()
        }]
    };
    profile_object(
        format!("{NAMESPACE_PROFILE_PREFIX}{name}"),
        model::ProfileSpec {
            ingress: allow(),
            egress: allow(),
            labels_to_apply: prefixed_labels(
                &namespace.metadata.labels,
                NAMESPACE_LABEL_PREFIX,
                name,
            ),
        },
    )
}

/// The `kns.<namespace>` profile, checked.
pub fn namespace_profile(namespace: &model::Namespace) -> Profile {
    let object = namespace_profile_object(namespace);
    Profile {
        name: object.metadata.name,
        ingress: vec![Rule::allow_all()],
        egress: vec![Rule::allow_all()],
        labels_to_apply: object.spec.labels_to_apply,
    }
}

/// The name of a service account's profile (`ksa.<namespace>.<name>`, namespace `default`
/// when empty).
pub fn service_account_profile_name(namespace: &str, name: &str) -> String {
    let namespace = if namespace.is_empty() {
        "default"
    } else {
        namespace
    };
    format!("{SERVICE_ACCOUNT_PROFILE_PREFIX}{namespace}.{name}")
}

/// The `ksa.<namespace>.<sa>` profile as Calico writes it.
pub fn service_account_profile_object(account: &model::ServiceAccount) -> model::Profile {
    let metadata = &account.metadata;
    profile_object(
        service_account_profile_name(
            metadata.namespace.as_deref().unwrap_or_default(),
            &metadata.name,
        ),
        model::ProfileSpec {
            labels_to_apply: prefixed_labels(
                &metadata.labels,
                SERVICE_ACCOUNT_LABEL_PREFIX,
                &metadata.name,
            ),
            ..model::ProfileSpec::default()
        },
    )
}

/// The `ksa.<namespace>.<sa>` profile, checked.
pub fn service_account_profile(account: &model::ServiceAccount) -> Profile {
    let object = service_account_profile_object(account);
    Profile {
        name: object.metadata.name,
        ingress: Vec::new(),
        egress: Vec::new(),
        labels_to_apply: object.spec.labels_to_apply,
    }
}
