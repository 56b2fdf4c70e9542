//! The bodies of Starling's chains: the static forward path (base chains and dispatch), one
//! endpoint's pipeline, one policy's or profile's rules. Each returns its sealed state and rule
//! texts (trailer with the signature included), with the named counters those rules use.

use std::collections::{BTreeMap, BTreeSet};

use crate::program::{Direction, Family, Pipeline, RuleList, SetId, TierDefault};

use super::counters::CounterUse;
use super::names::{self, Owner};
use super::rules::{mark, render_rule, ChainKind};
use super::view::{seal, BaseSpec, ChainState};
use super::RenderConfig;

pub(crate) struct Sealed {
    pub name: String,
    pub state: ChainState,
    pub rules: Vec<String>,
    pub counters: BTreeMap<String, CounterUse>,
}

fn sealed(name: &str, base: Option<BaseSpec>, rules: Vec<String>, trailer: &str) -> Sealed {
    let (state, rules) = seal(base, rules, trailer);
    Sealed {
        name: name.to_string(),
        state,
        rules,
        counters: BTreeMap::new(),
    }
}

/// The two base chains and the two dispatch chains (the same in both families).
pub(crate) fn static_chains(config: &RenderConfig) -> Vec<Sealed> {
    let established = "ct state established,related accept".to_string();
    let base = |priority: i32| {
        Some(BaseSpec {
            hook: "forward".into(),
            priority,
        })
    };
    let jumps = |keyword: &str, target: &str| {
        let mut rules = vec![established.clone()];
        for prefix in &config.interface_prefixes {
            rules.push(format!("{keyword} \"{prefix}*\" goto {target}"));
        }
        rules
    };
    let dispatch = |keyword: &str, map: &str| {
        vec![
            "ct state invalid drop".to_string(),
            format!("{keyword} vmap @{map}"),
        ]
    };
    vec![
        // The trailer `accept` equals the chain policy: it only carries the signature.
        sealed(
            names::FORWARD_EGRESS,
            base(config.priority),
            jumps("iifname", names::FROM_WL_DISPATCH),
            "accept",
        ),
        sealed(
            names::FORWARD_INGRESS,
            base(config.priority + 1),
            jumps("oifname", names::TO_WL_DISPATCH),
            "accept",
        ),
        // Unknown workload interface: closed until its endpoint is in the map.
        sealed(
            names::FROM_WL_DISPATCH,
            None,
            dispatch("iifname", names::FROM_WL_MAP),
            "drop",
        ),
        sealed(
            names::TO_WL_DISPATCH,
            None,
            dispatch("oifname", names::TO_WL_MAP),
            "drop",
        ),
    ]
}

/// The policy and profile chains a pipeline jumps to.
pub(crate) fn pipeline_owners(pipeline: &Pipeline) -> impl Iterator<Item = Owner> + '_ {
    let policies = pipeline
        .tiers
        .iter()
        .flat_map(|tier| tier.policies.iter().cloned().map(Owner::Policy));
    let profiles = pipeline.profiles.iter().cloned().map(Owner::Profile);
    policies.chain(profiles)
}

/// An endpoint's chain for one direction. Tiers in order: the pass mark is cleared, each policy
/// is jumped to while no policy of the tier passed (the first one always), and a tier whose
/// default is Deny drops what no policy passed (an Allow or Deny never comes back). Then the
/// pass mark is cleared again, the profiles jumped to, and the rest dropped. Every drop of the
/// chain counts on the endpoint's denied counter (`key` is the endpoint's `<ns>/<name>`).
pub(crate) fn endpoint_chain(
    interface: &str,
    key: &str,
    direction: Direction,
    pipeline: &Pipeline,
    config: &RenderConfig,
) -> Sealed {
    let name = names::endpoint_chain(interface, direction);
    let counter = names::denied_counter(&name);
    let drop = format!("counter name \"{counter}\" drop");
    let pass = mark(config.pass_mark);
    let unpassed = format!("meta mark & {pass} == 0x00000000");
    let mut rules = vec![];
    for tier in &pipeline.tiers {
        rules.push(format!(
            "meta mark set meta mark & {}",
            mark(!config.pass_mark)
        ));
        for (index, policy) in tier.policies.iter().enumerate() {
            let target = names::owner_chain(&Owner::Policy(policy.clone()), direction);
            if index == 0 {
                rules.push(format!("jump {target}"));
            } else {
                rules.push(format!("{unpassed} jump {target}"));
            }
        }
        if tier.default_action == TierDefault::Deny {
            if tier.policies.is_empty() {
                rules.push(drop.clone());
            } else {
                rules.push(format!("{unpassed} {drop}"));
            }
        }
    }
    if !pipeline.tiers.is_empty() {
        // A pass out of the last tier must not leave our bit on the packet.
        rules.push(format!(
            "meta mark set meta mark & {}",
            mark(!config.pass_mark)
        ));
    }
    for profile in &pipeline.profiles {
        let target = names::owner_chain(&Owner::Profile(profile.clone()), direction);
        rules.push(format!("jump {target}"));
    }
    let mut sealed = sealed(&name, None, rules, &drop);
    sealed.counters.insert(
        counter,
        CounterUse::Denied {
            endpoint: key.to_string(),
            direction,
        },
    );
    sealed
}

/// A policy's or profile's chain for one direction and family; adds the sets it reads.
pub(crate) fn owner_chain(
    owner: &Owner,
    direction: Direction,
    family: Family,
    rules: Option<&RuleList>,
    config: &RenderConfig,
    sets: &mut BTreeSet<SetId>,
) -> Sealed {
    let kind = match owner {
        Owner::Policy(_) => ChainKind::Policy,
        Owner::Profile(_) => ChainKind::Profile,
    };
    let name = names::owner_chain(owner, direction);
    let mut texts = vec![];
    let mut counters = BTreeMap::new();
    for rule in rules.map(|list| list.family(family)).unwrap_or_default() {
        let counter = names::rule_counter(&name, rule.index, rule.action);
        let written = texts.len();
        render_rule(rule, family, kind, config, Some(&counter), &mut texts, sets);
        // A rule that cannot match in this family has no nft rule, hence no counter.
        if texts.len() > written {
            counters.insert(
                counter,
                CounterUse::Rule {
                    owner: owner.clone(),
                    direction,
                    index: rule.index,
                    action: rule.action,
                },
            );
        }
    }
    let mut sealed = sealed(&name, None, texts, "return");
    sealed.counters = counters;
    sealed
}
