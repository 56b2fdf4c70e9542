//! Wire objects → the checked policy model: selectors parsed and made cluster-wide (reference
//! §2.4, [`scope`]), CIDRs, protocols, ports and ICMP fields checked, `types` defaulted.
//!
//! Contract: an object is accepted whole or rejected whole. A [`ValidationError`] names the
//! object (kind, namespace/name) and every problem with its field path, e.g.
//! `NetworkPolicy x/deny: spec.ingress[1].source.nets[0]: "10.0.0.0/33" is not a CIDR`; the
//! caller treats a rejected object as absent. Accepted policies carry selectors that need no
//! further context: a NetworkPolicy's own namespace is already part of every selector.

mod fields;
mod rules;
pub mod scope;

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;
use starling_selector::{Expr, Selector};

pub use fields::{
    has_ports, is_port_name, protocol_name, protocol_number, PROTOCOL_ICMP, PROTOCOL_ICMPV6,
    PROTOCOL_SCTP, PROTOCOL_TCP, PROTOCOL_UDP, PROTOCOL_UDPLITE,
};

use crate::model::{self, ObjectMeta, ObjectRef};
use crate::program::{Action, Family, Icmp, PolicyId, PolicyKind, PortRange, TierDefault};

/// The tier of policies that name none.
pub const DEFAULT_TIER: &str = "default";

/// One problem: the field path inside the object and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

/// Why an object was rejected: the object and every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub object: ObjectRef,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.object)?;
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            if problem.field.is_empty() {
                write!(f, "{}", problem.message)?;
            } else {
                write!(f, "{}: {}", problem.field, problem.message)?;
            }
        }
        Ok(())
    }
}

impl From<model::DecodeError> for ValidationError {
    fn from(error: model::DecodeError) -> Self {
        ValidationError {
            object: error.object,
            problems: vec![Problem {
                field: String::new(),
                message: error.message,
            }],
        }
    }
}

/// Collects problems while a whole object is checked.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, field: String, message: String) {
        self.0.push(Problem { field, message });
    }

    /// The value, or `None` with the problem recorded at `field`.
    pub fn check<T>(&mut self, field: String, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.push(field, message);
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was found, else the error for `object`.
    pub fn finish<T>(self, object: ObjectRef, value: Option<T>) -> Result<T, ValidationError> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(ValidationError {
                object,
                problems: if self.0.is_empty() {
                    vec![Problem {
                        field: String::new(),
                        message: "invalid".to_string(),
                    }]
                } else {
                    self.0
                },
            }),
        }
    }
}

/// A port criterion: a numeric range or a named port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    Range(PortRange),
    Named(String),
}

/// One rule side. `selector` is cluster-wide (namespace, namespaceSelector and
/// serviceAccounts folded in); `not_selector` is as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entity {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    pub selector: Option<Selector>,
    pub not_selector: Option<Selector>,
    pub ports: Vec<Port>,
    pub not_ports: Vec<Port>,
}

/// One checked rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub ip_version: Option<Family>,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    pub icmp: Option<Icmp>,
    pub not_icmp: Option<Icmp>,
    pub source: Entity,
    pub destination: Entity,
}

impl Rule {
    /// `{action: Allow}`: matches everything.
    pub fn allow_all() -> Rule {
        Rule {
            action: Action::Allow,
            ip_version: None,
            protocol: None,
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            source: Entity::default(),
            destination: Entity::default(),
        }
    }
}

/// A checked policy of any kind. `selector` picks the endpoints it applies to, cluster-wide.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub id: PolicyId,
    pub tier: String,
    /// Lower first; `None` = after every ordered policy.
    pub order: Option<f64>,
    pub selector: Selector,
    pub ingress_type: bool,
    pub egress_type: bool,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    /// `doNotTrack` or `preDNAT`: host endpoints only, never applied to workloads.
    pub host_only: bool,
    pub apply_on_forward: bool,
}

impl Policy {
    /// Whether the policy governs `direction` (its `types`).
    pub fn governs(&self, direction: crate::program::Direction) -> bool {
        match direction {
            crate::program::Direction::Ingress => self.ingress_type,
            crate::program::Direction::Egress => self.egress_type,
        }
    }
}

/// A checked tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub name: String,
    pub order: Option<f64>,
    pub default_action: TierDefault,
}

/// A checked profile: rules (global scope) and labels its endpoints inherit.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub labels_to_apply: BTreeMap<String, String>,
}

/// The fields NetworkPolicy and GlobalNetworkPolicy share.
struct Common<'a> {
    tier: &'a Option<String>,
    order: Option<f64>,
    selector: &'a Option<String>,
    types: &'a [String],
    ingress: &'a [model::Rule],
    egress: &'a [model::Rule],
    service_account_selector: &'a Option<String>,
}

fn name_problems(metadata: &ObjectMeta, namespaced: bool, problems: &mut Problems) {
    if metadata.name.is_empty() {
        problems.push("metadata.name".to_string(), "missing".to_string());
    }
    let namespace = metadata.namespace.as_deref().unwrap_or_default();
    if namespaced && namespace.is_empty() {
        problems.push("metadata.namespace".to_string(), "missing".to_string());
    }
}

fn order(order: Option<f64>, problems: &mut Problems) -> Option<f64> {
    match order {
        Some(value) if !value.is_finite() => {
            problems.push("spec.order".to_string(), format!("{value} is not a number"));
            None
        }
        other => other,
    }
}

fn rule_list(
    list: &[model::Rule],
    field: &str,
    namespace: Option<&str>,
    problems: &mut Problems,
) -> Vec<Rule> {
    list.iter()
        .enumerate()
        .filter_map(|(index, rule)| {
            rules::rule(rule, &format!("spec.{field}[{index}]"), namespace, problems)
        })
        .collect()
}

fn optional_selector(
    text: &Option<String>,
    field: &str,
    problems: &mut Problems,
) -> Option<Selector> {
    match text.as_deref() {
        None | Some("") => None,
        Some(text) => problems.check(field.to_string(), fields::selector(text)),
    }
}

/// Checks what both policy kinds share; `extra` is ANDed into the endpoint selector.
fn common(
    id: PolicyId,
    spec: Common<'_>,
    problems: &mut Problems,
    extra: impl FnOnce(&mut Problems) -> Vec<Expr>,
) -> Option<Policy> {
    let namespace = id.namespace.clone();
    let tier = match spec.tier.as_deref() {
        None | Some("") => DEFAULT_TIER.to_string(),
        Some(tier) => tier.to_string(),
    };
    let order = order(spec.order, problems);
    let selector = optional_selector(spec.selector, "spec.selector", problems);
    let (mut ingress_type, mut egress_type) = (false, false);
    for (index, kind) in spec.types.iter().enumerate() {
        match kind.as_str() {
            "Ingress" => ingress_type = true,
            "Egress" => egress_type = true,
            other => problems.push(
                format!("spec.types[{index}]"),
                format!("{other:?} is not a policy type (Ingress or Egress)"),
            ),
        }
    }
    if spec.types.is_empty() {
        // Calico's defaulting (reference §2.2): Ingress unless there are only egress rules.
        egress_type = !spec.egress.is_empty();
        ingress_type = !spec.ingress.is_empty() || spec.egress.is_empty();
    }
    let ingress = rule_list(spec.ingress, "ingress", namespace.as_deref(), problems);
    let egress = rule_list(spec.egress, "egress", namespace.as_deref(), problems);
    let service_accounts = optional_selector(
        spec.service_account_selector,
        "spec.serviceAccountSelector",
        problems,
    );
    let mut parts = vec![selector.map(|s| s.expr().clone()).unwrap_or(Expr::All)];
    if let Some(namespace) = &namespace {
        parts.push(scope::in_namespace(namespace));
    }
    parts.extend(extra(problems));
    if let Some(service_accounts) = &service_accounts {
        parts.push(scope::policy_service_account_selector(
            service_accounts,
            namespace.is_none(),
        ));
    }
    let selector = problems.check(
        "spec.selector".to_string(),
        Selector::from_expr(scope::and(parts))
            .map_err(|error| format!("cannot be scoped: {error}")),
    )?;
    if !problems.is_empty() {
        return None;
    }
    Some(Policy {
        id,
        tier,
        order,
        selector,
        ingress_type,
        egress_type,
        ingress,
        egress,
        host_only: false,
        apply_on_forward: false,
    })
}

/// A `projectcalico.org/v3` NetworkPolicy.
pub fn network_policy(object: &model::NetworkPolicy) -> Result<Policy, ValidationError> {
    network_policy_as(object, PolicyKind::NetworkPolicy)
}

/// A NetworkPolicy-shaped object of `kind` (Kubernetes policies arrive converted to one).
pub fn network_policy_as(
    object: &model::NetworkPolicy,
    kind: PolicyKind,
) -> Result<Policy, ValidationError> {
    let kind_name = match kind {
        PolicyKind::KubernetesNetworkPolicy => model::KIND_KUBERNETES_NETWORK_POLICY,
        _ => model::KIND_NETWORK_POLICY,
    };
    let reference = ObjectRef::new(kind_name, &object.metadata);
    let mut problems = Problems::default();
    name_problems(&object.metadata, true, &mut problems);
    let spec = &object.spec;
    let id = PolicyId {
        kind,
        namespace: reference.namespace.clone(),
        name: object.metadata.name.clone(),
    };
    let policy = common(
        id,
        Common {
            tier: &spec.tier,
            order: spec.order,
            selector: &spec.selector,
            types: &spec.types,
            ingress: &spec.ingress,
            egress: &spec.egress,
            service_account_selector: &spec.service_account_selector,
        },
        &mut problems,
        |_| Vec::new(),
    );
    problems.finish(reference, policy)
}

/// A `projectcalico.org/v3` GlobalNetworkPolicy.
pub fn global_network_policy(
    object: &model::GlobalNetworkPolicy,
) -> Result<Policy, ValidationError> {
    let reference = ObjectRef {
        namespace: None,
        ..ObjectRef::new(model::KIND_GLOBAL_NETWORK_POLICY, &object.metadata)
    };
    let mut problems = Problems::default();
    name_problems(&object.metadata, false, &mut problems);
    let spec = &object.spec;
    if spec.pre_dnat && spec.do_not_track {
        problems.push(
            "spec.preDNAT".to_string(),
            "cannot be combined with doNotTrack".to_string(),
        );
    }
    for (set, field) in [
        (spec.pre_dnat, "spec.preDNAT"),
        (spec.do_not_track, "spec.doNotTrack"),
    ] {
        if set && !spec.apply_on_forward {
            problems.push(field.to_string(), "needs applyOnForward: true".to_string());
        }
    }
    if spec.pre_dnat && !spec.egress.is_empty() {
        problems.push(
            "spec.egress".to_string(),
            "a preDNAT policy has ingress rules only".to_string(),
        );
    }
    let id = PolicyId {
        kind: PolicyKind::GlobalNetworkPolicy,
        namespace: None,
        name: object.metadata.name.clone(),
    };
    let policy = common(
        id,
        Common {
            tier: &spec.tier,
            order: spec.order,
            selector: &spec.selector,
            types: &spec.types,
            ingress: &spec.ingress,
            egress: &spec.egress,
            service_account_selector: &spec.service_account_selector,
        },
        &mut problems,
        |problems| {
            optional_selector(&spec.namespace_selector, "spec.namespaceSelector", problems)
                .map(|selector| scope::policy_namespace_selector(&selector))
                .into_iter()
                .collect()
        },
    )
    .map(|policy| Policy {
        host_only: spec.pre_dnat || spec.do_not_track,
        apply_on_forward: spec.apply_on_forward,
        ..policy
    });
    problems.finish(reference, policy)
}

/// A `projectcalico.org/v3` Tier.
pub fn tier(object: &model::Tier) -> Result<Tier, ValidationError> {
    let reference = ObjectRef {
        namespace: None,
        ..ObjectRef::new(model::KIND_TIER, &object.metadata)
    };
    let mut problems = Problems::default();
    name_problems(&object.metadata, false, &mut problems);
    let order = order(object.spec.order, &mut problems);
    let default_action = match object.spec.default_action.as_deref() {
        None | Some("") | Some("Deny") => Some(TierDefault::Deny),
        Some("Pass") => Some(TierDefault::Pass),
        Some(other) => {
            problems.push(
                "spec.defaultAction".to_string(),
                format!("{other:?} is not a tier default action (Deny or Pass)"),
            );
            None
        }
    };
    let tier = default_action.map(|default_action| Tier {
        name: object.metadata.name.clone(),
        order,
        default_action,
    });
    problems.finish(reference, tier)
}

/// A `projectcalico.org/v3` Profile (rules are global: no namespace scoping).
pub fn profile(object: &model::Profile) -> Result<Profile, ValidationError> {
    let reference = ObjectRef {
        namespace: None,
        ..ObjectRef::new(model::KIND_PROFILE, &object.metadata)
    };
    let mut problems = Problems::default();
    name_problems(&object.metadata, false, &mut problems);
    let ingress = rule_list(&object.spec.ingress, "ingress", None, &mut problems);
    let egress = rule_list(&object.spec.egress, "egress", None, &mut problems);
    let profile = Profile {
        name: object.metadata.name.clone(),
        ingress,
        egress,
        labels_to_apply: object.spec.labels_to_apply.clone(),
    };
    problems.finish(reference, Some(profile))
}

/// Decodes then checks a NetworkPolicy from JSON.
pub fn network_policy_json(value: &serde_json::Value) -> Result<Policy, ValidationError> {
    network_policy(&model::decode(model::KIND_NETWORK_POLICY, value)?)
}

/// Decodes then checks a GlobalNetworkPolicy from JSON.
pub fn global_network_policy_json(value: &serde_json::Value) -> Result<Policy, ValidationError> {
    global_network_policy(&model::decode(model::KIND_GLOBAL_NETWORK_POLICY, value)?)
}

/// Decodes then checks a Tier from JSON.
pub fn tier_json(value: &serde_json::Value) -> Result<Tier, ValidationError> {
    tier(&model::decode(model::KIND_TIER, value)?)
}

/// Decodes then checks a Profile from JSON.
pub fn profile_json(value: &serde_json::Value) -> Result<Profile, ValidationError> {
    profile(&model::decode(model::KIND_PROFILE, value)?)
}
