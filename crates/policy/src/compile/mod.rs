//! The incremental policy compiler: checked policies, tiers, profiles and endpoints in, this
//! node's [`Program`] and the [`Changes`] since the last look out.
//!
//! API: [`Compiler::new`]`(node)`; `upsert_*`/`remove_*` for policies ([`PolicyId`]), tiers
//! and profiles (by name) and endpoints (by key `<namespace>/<name>`); [`Compiler::program`];
//! [`Compiler::take_changes`]. Endpoints of every node feed the selector sets; only those of
//! this node get an [`EndpointProgram`] (keyed by interface; should two local endpoints share
//! an interface, the smaller key holds it).
//!
//! Semantics: an endpoint's labels are its own plus its existing profiles' `labelsToApply`
//! (own labels win, then earlier profiles). A policy applies to a local endpoint when its
//! (cluster-wide) selector matches those labels, unless it is host-endpoint only; it appears
//! in the endpoint's pipeline for each direction its `types` include (order: `pipeline`).
//! Active = a policy applying to at least one local endpoint, or an existing profile one
//! names; only active policies and profiles, and the sets their rules use, are in the
//! program. A direction a policy does not govern compiles to no rules.
//!
//! Cost: an endpoint change re-evaluates that endpoint against every set selector in use and,
//! when local, every policy; a policy change recompiles it and re-evaluates the local
//! endpoints (only when its selector changed); a tier change rebuilds the pipelines of the
//! local endpoints with a policy in it; a profile's label change re-evaluates its endpoints.
//! Nothing recompiles from scratch, except [`Compiler::recompile`], the reference the
//! incremental result must equal.

mod owners;
mod pipeline;
mod rules;
mod sets;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

pub use pipeline::{policy_cmp, DEFAULT_TIER_ORDER};
pub use rules::set_selector;

use crate::program::{Changes, Direction, EndpointProgram, PolicyId, Program};
use crate::validate::{Policy, Profile, Tier};
use rules::Compiled;
use sets::SetIndex;

/// A named container port of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedPort {
    pub name: String,
    /// IP protocol number (TCP 6, UDP 17, SCTP 132).
    pub protocol: u8,
    pub port: u16,
}

/// A workload endpoint, of any node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `<namespace>/<name>`.
    pub key: String,
    pub node: String,
    /// Host-side interface (`cali...`).
    pub interface: String,
    pub addresses: Vec<IpAddr>,
    /// The endpoint's own labels (Calico adds `projectcalico.org/namespace`, `.../orchestrator`
    /// and `.../serviceaccount`; the caller passes them in).
    pub labels: BTreeMap<String, String>,
    /// Profile names in order (`kns.<ns>`, `ksa.<ns>.<sa>`).
    pub profiles: Vec<String>,
    pub named_ports: Vec<NamedPort>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct EndpointState {
    endpoint: Endpoint,
    /// Own labels plus inherited profile labels.
    labels: BTreeMap<String, String>,
}

/// Who uses a set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Policy(PolicyId),
    Profile(String),
}

/// Sizes, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub endpoints: usize,
    pub local_endpoints: usize,
    pub policies: usize,
    pub active_policies: usize,
    pub active_profiles: usize,
    pub selectors: usize,
    pub sets: usize,
}

/// The incremental compiler of one node (see the module header).
#[derive(Debug)]
pub struct Compiler {
    node: String,
    policies: BTreeMap<PolicyId, Policy>,
    tiers: BTreeMap<String, Tier>,
    profiles: BTreeMap<String, Profile>,
    endpoints: BTreeMap<String, EndpointState>,
    /// Profile name → keys of the endpoints (any node) naming it.
    profile_users: BTreeMap<String, BTreeSet<String>>,
    /// Local endpoint key → the policies applying to it.
    local: BTreeMap<String, BTreeSet<PolicyId>>,
    /// Policy → the local endpoints it applies to (no empty entries).
    policy_locals: BTreeMap<PolicyId, BTreeSet<String>>,
    /// Profile name → the local endpoints naming it (no empty entries).
    profile_locals: BTreeMap<String, BTreeSet<String>>,
    /// Interface → local endpoint keys with it.
    interfaces: BTreeMap<String, BTreeSet<String>>,
    /// Active policies and profiles, compiled.
    compiled: BTreeMap<Owner, Compiled>,
    sets: SetIndex,
    program: Program,
    changes: Changes,
}

fn applies(policy: &Policy, labels: &BTreeMap<String, String>) -> bool {
    !policy.host_only && policy.selector.matches(labels)
}

fn remove_from(map: &mut BTreeMap<String, BTreeSet<String>>, name: &str, key: &str) {
    if let Some(keys) = map.get_mut(name) {
        keys.remove(key);
        if keys.is_empty() {
            map.remove(name);
        }
    }
}

impl Compiler {
    pub fn new(node: impl Into<String>) -> Compiler {
        Compiler {
            node: node.into(),
            policies: BTreeMap::new(),
            tiers: BTreeMap::new(),
            profiles: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            profile_users: BTreeMap::new(),
            local: BTreeMap::new(),
            policy_locals: BTreeMap::new(),
            profile_locals: BTreeMap::new(),
            interfaces: BTreeMap::new(),
            compiled: BTreeMap::new(),
            sets: SetIndex::default(),
            program: Program::default(),
            changes: Changes::default(),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The current program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// What changed in the program since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    pub fn policy(&self, id: &PolicyId) -> Option<&Policy> {
        self.policies.get(id)
    }

    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.policies.values()
    }

    pub fn tiers(&self) -> impl Iterator<Item = &Tier> {
        self.tiers.values()
    }

    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    pub fn endpoint(&self, key: &str) -> Option<&Endpoint> {
        self.endpoints.get(key).map(|state| &state.endpoint)
    }

    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values().map(|state| &state.endpoint)
    }

    /// An endpoint's labels as selectors see them (own plus inherited).
    pub fn endpoint_labels(&self, key: &str) -> Option<&BTreeMap<String, String>> {
        self.endpoints.get(key).map(|state| &state.labels)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            endpoints: self.endpoints.len(),
            local_endpoints: self.local.len(),
            policies: self.policies.len(),
            active_policies: self.policy_locals.len(),
            active_profiles: self.program.profiles.len(),
            selectors: self.sets.selector_count(),
            sets: self.program.sets.len(),
        }
    }

    /// The program compiled from scratch from the current inputs (the reference for the
    /// incremental result; also a resync check).
    pub fn recompile(&self) -> Program {
        let mut fresh = Compiler::new(self.node.clone());
        for tier in self.tiers.values() {
            fresh.upsert_tier(tier.clone());
        }
        for profile in self.profiles.values() {
            fresh.upsert_profile(profile.clone());
        }
        for policy in self.policies.values() {
            fresh.upsert_policy(policy.clone());
        }
        for state in self.endpoints.values() {
            fresh.upsert_endpoint(state.endpoint.clone());
        }
        fresh.program
    }

    pub fn upsert_policy(&mut self, policy: Policy) {
        let id = policy.id.clone();
        let old = self.policies.insert(id.clone(), policy);
        if old.as_ref() != self.policies.get(&id) {
            self.policy_changed(&id, old);
        }
    }

    pub fn remove_policy(&mut self, id: &PolicyId) {
        if let Some(old) = self.policies.remove(id) {
            self.policy_changed(id, Some(old));
        }
    }

    pub fn upsert_tier(&mut self, tier: Tier) {
        let name = tier.name.clone();
        let old = self.tiers.insert(name.clone(), tier);
        if old.as_ref() != self.tiers.get(&name) {
            self.tier_changed(&name);
        }
    }

    pub fn remove_tier(&mut self, name: &str) {
        if self.tiers.remove(name).is_some() {
            self.tier_changed(name);
        }
    }

    pub fn upsert_profile(&mut self, profile: Profile) {
        let name = profile.name.clone();
        let old = self.profiles.insert(name.clone(), profile);
        if old.as_ref() != self.profiles.get(&name) {
            self.profile_changed(&name, old);
        }
    }

    pub fn remove_profile(&mut self, name: &str) {
        if let Some(old) = self.profiles.remove(name) {
            self.profile_changed(name, Some(old));
        }
    }

    pub fn upsert_endpoint(&mut self, endpoint: Endpoint) {
        let key = endpoint.key.clone();
        self.apply_endpoint(&key, Some(endpoint));
    }

    pub fn remove_endpoint(&mut self, key: &str) {
        self.apply_endpoint(key, None);
    }

    fn effective_labels(&self, endpoint: &Endpoint) -> BTreeMap<String, String> {
        let mut labels = endpoint.labels.clone();
        for name in &endpoint.profiles {
            if let Some(profile) = self.profiles.get(name) {
                for (key, value) in &profile.labels_to_apply {
                    labels.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
        }
        labels
    }

    fn is_local(&self, state: &EndpointState) -> bool {
        state.endpoint.node == self.node
    }

    fn apply_endpoint(&mut self, key: &str, endpoint: Option<Endpoint>) {
        let new = endpoint.map(|endpoint| EndpointState {
            labels: self.effective_labels(&endpoint),
            endpoint,
        });
        let old = match &new {
            Some(new) => self.endpoints.insert(key.to_string(), new.clone()),
            None => self.endpoints.remove(key),
        };
        if old == new {
            return;
        }
        if let Some(old) = &old {
            for name in &old.endpoint.profiles {
                remove_from(&mut self.profile_users, name, key);
            }
        }
        if let Some(new) = &new {
            for name in &new.endpoint.profiles {
                self.profile_users
                    .entry(name.clone())
                    .or_default()
                    .insert(key.to_string());
            }
        }
        self.sets.endpoint_changed(
            key,
            old.as_ref(),
            new.as_ref(),
            &mut self.program,
            &mut self.changes,
        );
        let old = old.filter(|state| self.is_local(state));
        let new = new.filter(|state| self.is_local(state));
        if old.is_some() || new.is_some() {
            self.update_local(key, old.as_ref(), new.as_ref());
        }
    }

    /// A local endpoint appeared, changed, left or moved to another node.
    fn update_local(
        &mut self,
        key: &str,
        old: Option<&EndpointState>,
        new: Option<&EndpointState>,
    ) {
        let matches: BTreeSet<PolicyId> = match new {
            Some(new) => self
                .policies
                .values()
                .filter(|policy| applies(policy, &new.labels))
                .map(|policy| policy.id.clone())
                .collect(),
            None => BTreeSet::new(),
        };
        let previous = self.local.remove(key).unwrap_or_default();
        if new.is_some() {
            self.local.insert(key.to_string(), matches.clone());
        }
        // Activations first: a set that a leaving and a joining policy share stays in place.
        for id in matches.difference(&previous) {
            self.policy_locals
                .entry(id.clone())
                .or_default()
                .insert(key.to_string());
            self.sync_activity(&Owner::Policy(id.clone()));
        }
        for id in previous.difference(&matches) {
            if let Some(keys) = self.policy_locals.get_mut(id) {
                keys.remove(key);
                if keys.is_empty() {
                    self.policy_locals.remove(id);
                }
            }
            self.sync_activity(&Owner::Policy(id.clone()));
        }
        let profiles = |state: Option<&EndpointState>| -> BTreeSet<String> {
            state.map_or_else(BTreeSet::new, |state| {
                state.endpoint.profiles.iter().cloned().collect()
            })
        };
        let (before, after) = (profiles(old), profiles(new));
        for name in after.difference(&before) {
            self.profile_locals
                .entry(name.clone())
                .or_default()
                .insert(key.to_string());
            self.sync_activity(&Owner::Profile(name.clone()));
        }
        for name in before.difference(&after) {
            remove_from(&mut self.profile_locals, name, key);
            self.sync_activity(&Owner::Profile(name.clone()));
        }
        let old_interface = old.map(|state| state.endpoint.interface.clone());
        let new_interface = new.map(|state| state.endpoint.interface.clone());
        if let Some(interface) = &old_interface {
            if old_interface != new_interface {
                remove_from(&mut self.interfaces, interface, key);
                self.refresh_interface(interface);
            }
        }
        if let Some(interface) = &new_interface {
            self.interfaces
                .entry(interface.clone())
                .or_default()
                .insert(key.to_string());
            self.refresh_interface(interface);
        }
    }

    fn policy_changed(&mut self, id: &PolicyId, old: Option<Policy>) {
        let previous = self.policy_locals.get(id).cloned().unwrap_or_default();
        let same_selection = match (&old, self.policies.get(id)) {
            (Some(old), Some(new)) => {
                old.selector == new.selector && old.host_only == new.host_only
            }
            _ => false,
        };
        let selected: BTreeSet<String> = match self.policies.get(id) {
            None => BTreeSet::new(),
            Some(_) if same_selection => previous.clone(),
            Some(policy) => self
                .local
                .keys()
                .filter(|key| {
                    self.endpoints
                        .get(*key)
                        .is_some_and(|state| applies(policy, &state.labels))
                })
                .cloned()
                .collect(),
        };
        for key in previous.difference(&selected) {
            if let Some(matches) = self.local.get_mut(key) {
                matches.remove(id);
            }
        }
        for key in selected.difference(&previous) {
            if let Some(matches) = self.local.get_mut(key) {
                matches.insert(id.clone());
            }
        }
        if selected.is_empty() {
            self.policy_locals.remove(id);
        } else {
            self.policy_locals.insert(id.clone(), selected.clone());
        }
        let owner = Owner::Policy(id.clone());
        self.recompile_owner(&owner);
        self.sync_activity(&owner);
        for key in previous.union(&selected) {
            if let Some(interface) = self
                .endpoints
                .get(key)
                .map(|s| s.endpoint.interface.clone())
            {
                self.refresh_interface(&interface);
            }
        }
    }

    fn tier_changed(&mut self, name: &str) {
        let affected: BTreeSet<String> = self
            .policy_locals
            .iter()
            .filter(|(id, _)| {
                self.policies
                    .get(*id)
                    .is_some_and(|policy| policy.tier == name)
            })
            .flat_map(|(_, keys)| keys.iter().cloned())
            .collect();
        for key in affected {
            if let Some(interface) = self
                .endpoints
                .get(&key)
                .map(|s| s.endpoint.interface.clone())
            {
                self.refresh_interface(&interface);
            }
        }
    }

    fn profile_changed(&mut self, name: &str, old: Option<Profile>) {
        let new_labels = self
            .profiles
            .get(name)
            .map(|profile| &profile.labels_to_apply);
        if old.as_ref().map(|profile| &profile.labels_to_apply) != new_labels {
            let users = self.profile_users.get(name).cloned().unwrap_or_default();
            for key in users {
                if let Some(endpoint) = self.endpoints.get(&key).map(|s| s.endpoint.clone()) {
                    self.apply_endpoint(&key, Some(endpoint));
                }
            }
        }
        let owner = Owner::Profile(name.to_string());
        self.recompile_owner(&owner);
        self.sync_activity(&owner);
        if old.is_some() != self.profiles.contains_key(name) {
            let locals = self.profile_locals.get(name).cloned().unwrap_or_default();
            for key in locals {
                if let Some(interface) = self
                    .endpoints
                    .get(&key)
                    .map(|s| s.endpoint.interface.clone())
                {
                    self.refresh_interface(&interface);
                }
            }
        }
    }

    fn endpoint_program(&self, key: &str) -> Option<EndpointProgram> {
        let state = self.endpoints.get(key)?;
        let matches = self.local.get(key)?;
        let mut profiles: Vec<String> = Vec::new();
        for name in &state.endpoint.profiles {
            if self.profiles.contains_key(name) && !profiles.contains(name) {
                profiles.push(name.clone());
            }
        }
        let pipeline = |direction| {
            pipeline::pipeline(
                direction,
                matches.iter().filter_map(|id| self.policies.get(id)),
                &self.tiers,
                &profiles,
            )
        };
        Some(EndpointProgram {
            key: key.to_string(),
            interface: state.endpoint.interface.clone(),
            addresses: state.endpoint.addresses.clone(),
            ingress: pipeline(Direction::Ingress),
            egress: pipeline(Direction::Egress),
        })
    }

    /// Rebuilds the program of the endpoint holding `interface`, recording a change if any.
    fn refresh_interface(&mut self, interface: &str) {
        let new = self
            .interfaces
            .get(interface)
            .and_then(|keys| keys.first())
            .and_then(|key| self.endpoint_program(key));
        if self.program.endpoints.get(interface) == new.as_ref() {
            return;
        }
        match new {
            Some(program) => {
                self.program
                    .endpoints
                    .insert(interface.to_string(), program);
            }
            None => {
                self.program.endpoints.remove(interface);
            }
        }
        self.changes.endpoints.insert(interface.to_string());
    }
}
