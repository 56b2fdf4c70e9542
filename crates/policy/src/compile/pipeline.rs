//! One local endpoint's pipelines: which tiers and policies apply per direction, in Felix's
//! order (reference §2.2, §2.5; `felix/calc/policy_sorter.go`).
//!
//! Tiers: those with a Tier object first (the `default` tier always counts as having one, at
//! order 1 000 000 unless its object says otherwise), by order (omitted = last) then name;
//! tiers that only policies name follow, by name, with default action Deny. Policies inside a
//! tier: by order (omitted = +∞), then name, namespace and kind (Felix's `name/namespace/kind`
//! tie-break).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::program::{Direction, Pipeline, PolicyKind, TierDefault, TierStep};
use crate::validate::{Policy, Tier, DEFAULT_TIER};

/// The order of the `default` tier when no Tier object gives one (Calico v3.30+).
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// (has a Tier object, order, name) — sorts as Felix's `TierLess`.
fn tier_key<'a>(name: &'a str, tiers: &BTreeMap<String, Tier>) -> (bool, Option<f64>, &'a str) {
    match tiers.get(name) {
        Some(tier) => (true, tier.order, name),
        None if name == DEFAULT_TIER => (true, Some(DEFAULT_TIER_ORDER), name),
        None => (false, None, name),
    }
}

fn order_cmp(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn tier_cmp(a: &(bool, Option<f64>, &str), b: &(bool, Option<f64>, &str)) -> Ordering {
    b.0.cmp(&a.0)
        .then_with(|| order_cmp(a.1, b.1))
        .then_with(|| a.2.cmp(b.2))
}

/// The name ties are broken on, as bytes: a converted Kubernetes policy is `knp.default.<name>`
/// to Felix (compared without building the string: this runs inside sorts).
fn sort_name(policy: &Policy) -> impl Iterator<Item = u8> + '_ {
    let prefix = match policy.id.kind {
        PolicyKind::KubernetesNetworkPolicy => crate::k8s::POLICY_NAME_PREFIX,
        _ => "",
    };
    prefix.bytes().chain(policy.id.name.bytes())
}

/// Policy order inside a tier.
pub fn policy_cmp(a: &Policy, b: &Policy) -> Ordering {
    order_cmp(a.order, b.order)
        .then_with(|| sort_name(a).cmp(sort_name(b)))
        .then_with(|| a.id.namespace.cmp(&b.id.namespace))
        .then_with(|| a.id.kind.short().cmp(b.id.kind.short()))
}

/// The pipeline of one direction from the policies that select the endpoint and the names of
/// its existing profiles.
pub fn pipeline<'a>(
    direction: Direction,
    policies: impl Iterator<Item = &'a Policy>,
    tiers: &BTreeMap<String, Tier>,
    profiles: &[String],
) -> Pipeline {
    let mut by_tier: BTreeMap<&str, Vec<&Policy>> = BTreeMap::new();
    for policy in policies.filter(|policy| policy.governs(direction)) {
        by_tier
            .entry(policy.tier.as_str())
            .or_default()
            .push(policy);
    }
    let mut steps: Vec<(_, Vec<&Policy>)> = by_tier
        .into_iter()
        .map(|(name, policies)| (tier_key(name, tiers), policies))
        .collect();
    steps.sort_by(|a, b| tier_cmp(&a.0, &b.0));
    Pipeline {
        tiers: steps
            .into_iter()
            .map(|((_, _, name), mut policies)| {
                policies.sort_by(|a, b| policy_cmp(a, b));
                TierStep {
                    tier: name.to_string(),
                    default_action: tiers
                        .get(name)
                        .map_or(TierDefault::Deny, |tier| tier.default_action),
                    policies: policies.iter().map(|policy| policy.id.clone()).collect(),
                }
            })
            .collect(),
        profiles: profiles.to_vec(),
    }
}
