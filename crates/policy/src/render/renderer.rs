//! The incremental renderer: what was rendered last, and the one transaction that moves the
//! kernel from it to a new program given the keys that changed.
//!
//! Cost is proportional to the change: an endpoint's chains and map elements, the chains of the
//! policies and profiles that changed or gained or lost their last user, and the sets that
//! changed or gained or lost their last reader (a changed set costs its size, to diff members).
//! Policy chains exist only while some endpoint's pipeline jumps to them, sets only while some
//! policy chain reads them; reference counts decide both. An endpoint's chain depends only on
//! its pipeline, a policy's chain only on its rules, a set only on its members, so a change to
//! one never rewrites the others.
//!
//! The renderer's state moves ahead when a transaction is produced. If applying it fails, the
//! caller must not trust that state: [`Renderer::rebuild`] from the program and
//! [`Renderer::resync`] against what the kernel holds.

use std::collections::{BTreeMap, BTreeSet};

use crate::program::{Changes, Direction, EndpointProgram, Family, PolicyId, Program, SetId};

use super::chains::{self, Sealed};
use super::names::{self, Owner};
use super::sets::{desired_set, Element, SetKind, SetView};
use super::view::{write_family, Before, TableView};
use super::{family_index, ConfigError, RenderConfig, Transaction, FAMILIES};

const DIRECTIONS: [Direction; 2] = [Direction::Ingress, Direction::Egress];

/// Objects in one family's desired table (for gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectCounts {
    pub chains: usize,
    pub rules: usize,
    /// Selector and named-port sets (the two dispatch maps not counted).
    pub sets: usize,
    pub set_elements: usize,
    pub map_elements: usize,
    /// Named counters (rules of policies and profiles, endpoint drops).
    pub counters: usize,
}

pub struct Renderer {
    config: RenderConfig,
    tables: [TableView; 2],
    started: bool,
    /// Endpoints as last rendered, by program key.
    endpoints: BTreeMap<String, EndpointProgram>,
    /// Pipelines jumping to each policy/profile chain.
    owner_refs: BTreeMap<(Owner, Direction), usize>,
    /// Sets read by each rendered policy/profile chain, per family.
    chain_sets: [BTreeMap<String, BTreeSet<SetId>>; 2],
    /// Chains reading each set, per family.
    set_refs: [BTreeMap<SetId, usize>; 2],
}

#[derive(Default)]
struct Pending {
    before: [Before; 2],
    warnings: Vec<String>,
}

fn all_changes(program: &Program) -> Changes {
    Changes {
        endpoints: program.endpoints.keys().cloned().collect(),
        policies: program.policies.keys().cloned().collect(),
        profiles: program.profiles.keys().cloned().collect(),
        sets: program.sets.keys().cloned().collect(),
    }
}

fn map_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => names::TO_WL_MAP,
        Direction::Egress => names::FROM_WL_MAP,
    }
}

impl Renderer {
    pub fn new(config: RenderConfig) -> Result<Renderer, ConfigError> {
        config.validate()?;
        Ok(Renderer::empty(config))
    }

    fn empty(config: RenderConfig) -> Renderer {
        Renderer {
            config,
            tables: Default::default(),
            started: false,
            endpoints: BTreeMap::new(),
            owner_refs: BTreeMap::new(),
            chain_sets: Default::default(),
            set_refs: Default::default(),
        }
    }

    pub fn config(&self) -> &RenderConfig {
        &self.config
    }

    /// The desired table of `family` as last rendered.
    pub fn table(&self, family: Family) -> &TableView {
        &self.tables[family_index(family)]
    }

    pub fn counts(&self, family: Family) -> ObjectCounts {
        let table = self.table(family);
        let mut counts = ObjectCounts {
            chains: table.chains.len(),
            rules: table.rule_count(),
            counters: table.counters.len(),
            ..ObjectCounts::default()
        };
        for set in table.sets.values() {
            if set.kind == SetKind::Verdict {
                counts.map_elements += set.elements.len();
            } else {
                counts.sets += 1;
                counts.set_elements += set.elements.len();
            }
        }
        counts
    }

    /// The tier of each policy some rendered endpoint's pipeline runs (a policy belongs to one
    /// tier), for naming its counters.
    pub fn policy_tiers(&self) -> BTreeMap<PolicyId, String> {
        let mut tiers = BTreeMap::new();
        for endpoint in self.endpoints.values() {
            for direction in DIRECTIONS {
                for step in &endpoint.pipeline(direction).tiers {
                    for policy in &step.policies {
                        if !tiers.contains_key(policy) {
                            tiers.insert(policy.clone(), step.tier.clone());
                        }
                    }
                }
            }
        }
        tiers
    }

    /// Forgets everything and renders `program` from nothing; returns the transaction that
    /// creates it all (what one `nft -f` of the whole ruleset would load).
    pub fn rebuild(&mut self, program: &Program) -> Transaction {
        *self = Renderer::empty(self.config.clone());
        self.update(program, &all_changes(program))
    }

    /// The transaction turning the `installed` tables (parsed from the kernel, V4 then V6) into
    /// the desired ones; empty when they already match.
    pub fn resync(&self, installed: &[TableView; 2]) -> Transaction {
        let mut transaction = Transaction::default();
        for family in FAMILIES {
            let index = family_index(family);
            let before = Before::between(&installed[index], &self.tables[index]);
            write_family(
                family,
                &before,
                &self.tables[index],
                &mut transaction.script,
                &mut transaction.touched,
            );
        }
        transaction
    }

    /// Renders the keys in `changes` from `program` (the state of every other key is assumed
    /// unchanged) and returns the one transaction that applies them.
    pub fn update(&mut self, program: &Program, changes: &Changes) -> Transaction {
        let mut pending = Pending::default();
        if !self.started {
            self.start(&mut pending);
        }
        let mut owners: BTreeSet<(Owner, Direction)> = BTreeSet::new();
        for key in &changes.endpoints {
            self.update_endpoint(program, key, &mut owners, &mut pending);
        }
        for direction in DIRECTIONS {
            for id in &changes.policies {
                owners.insert((Owner::Policy(id.clone()), direction));
            }
            for name in &changes.profiles {
                owners.insert((Owner::Profile(name.clone()), direction));
            }
        }
        let mut touched_sets: [BTreeSet<SetId>; 2] = Default::default();
        for (owner, direction) in &owners {
            let changed = match owner {
                Owner::Policy(id) => changes.policies.contains(id),
                Owner::Profile(name) => changes.profiles.contains(name),
            };
            self.update_owner(
                program,
                owner,
                *direction,
                changed,
                &mut touched_sets,
                &mut pending,
            );
        }
        for (id, family) in &changes.sets {
            touched_sets[family_index(*family)].insert(id.clone());
        }
        for family in FAMILIES {
            let index = family_index(family);
            for id in std::mem::take(&mut touched_sets[index]) {
                let changed = changes.sets.contains(&(id.clone(), family));
                self.update_set(program, &id, family, changed, &mut pending);
            }
        }
        let mut transaction = Transaction {
            warnings: pending.warnings,
            ..Transaction::default()
        };
        for family in FAMILIES {
            let index = family_index(family);
            write_family(
                family,
                &pending.before[index],
                &self.tables[index],
                &mut transaction.script,
                &mut transaction.touched,
            );
        }
        transaction
    }

    fn start(&mut self, pending: &mut Pending) {
        self.started = true;
        for family in FAMILIES {
            let index = family_index(family);
            self.tables[index].present = true;
            for sealed in chains::static_chains(&self.config) {
                self.put_chain(pending, index, sealed);
            }
            for map in [names::FROM_WL_MAP, names::TO_WL_MAP] {
                self.touch_set(pending, index, map);
                self.tables[index].sets.insert(
                    map.to_string(),
                    SetView {
                        kind: SetKind::Verdict,
                        elements: BTreeSet::new(),
                        opaque: false,
                    },
                );
            }
        }
    }

    fn touch_chain(&self, pending: &mut Pending, index: usize, name: &str) {
        if !pending.before[index].chains.contains_key(name) {
            let old = self.tables[index].chains.get(name).cloned();
            pending.before[index].chains.insert(name.to_string(), old);
        }
    }

    fn touch_set(&self, pending: &mut Pending, index: usize, name: &str) {
        if !pending.before[index].sets.contains_key(name) {
            let old = self.tables[index]
                .sets
                .get(name)
                .map(|set| (set.kind, set.opaque));
            pending.before[index].sets.insert(name.to_string(), old);
        }
    }

    fn touch_element(&self, pending: &mut Pending, index: usize, set: &str, element: &Element) {
        self.touch_set(pending, index, set);
        let was = self.tables[index]
            .sets
            .get(set)
            .is_some_and(|view| view.elements.contains(element));
        pending.before[index]
            .elements
            .entry(set.to_string())
            .or_default()
            .entry(element.clone())
            .or_insert(was);
    }

    fn touch_counters<'a>(
        &self,
        pending: &mut Pending,
        index: usize,
        names: impl IntoIterator<Item = &'a String>,
    ) {
        for name in names {
            if !pending.before[index].counters.contains_key(name) {
                let was = self.tables[index].counters.contains(name);
                pending.before[index].counters.insert(name.clone(), was);
            }
        }
    }

    fn put_chain(&mut self, pending: &mut Pending, index: usize, sealed: Sealed) {
        self.touch_chain(pending, index, &sealed.name);
        self.touch_counters(pending, index, self.tables[index].counters_of(&sealed.name));
        self.touch_counters(pending, index, sealed.counters.keys());
        self.tables[index].put_chain(&sealed.name, sealed.state, sealed.rules, sealed.counters);
    }

    fn remove_chain(&mut self, pending: &mut Pending, index: usize, name: &str) {
        self.touch_chain(pending, index, name);
        self.touch_counters(pending, index, self.tables[index].counters_of(name));
        self.tables[index].remove_chain(name);
    }

    fn set_map_element(
        &mut self,
        pending: &mut Pending,
        index: usize,
        direction: Direction,
        interface: &str,
        present: bool,
    ) {
        let map = map_name(direction);
        let target = names::endpoint_chain(interface, direction);
        let element = Element::Verdict(interface.to_string(), format!("goto {target}"));
        self.touch_element(pending, index, map, &element);
        if let Some(view) = self.tables[index].sets.get_mut(map) {
            if present {
                view.elements.insert(element);
            } else {
                view.elements.remove(&element);
            }
        }
    }

    fn update_endpoint(
        &mut self,
        program: &Program,
        key: &str,
        owners: &mut BTreeSet<(Owner, Direction)>,
        pending: &mut Pending,
    ) {
        let old = self.endpoints.remove(key);
        let mut new = program.endpoints.get(key);
        if let Some(endpoint) = new {
            if !names::legal_interface(&endpoint.interface) {
                pending.warnings.push(format!(
                    "endpoint {key} ({}): interface name {:?} cannot be written in nftables; its traffic stays dropped",
                    endpoint.key, endpoint.interface
                ));
                new = None;
            }
        }
        if old.as_ref() == new {
            if let Some(old) = old {
                self.endpoints.insert(key.to_string(), old);
            }
            return;
        }
        if let Some(old) = &old {
            for direction in DIRECTIONS {
                for owner in chains::pipeline_owners(old.pipeline(direction)) {
                    let entry = (owner, direction);
                    if let Some(count) = self.owner_refs.get_mut(&entry) {
                        *count -= 1;
                        if *count == 0 {
                            self.owner_refs.remove(&entry);
                        }
                    }
                    owners.insert(entry);
                }
                let name = names::endpoint_chain(&old.interface, direction);
                for family in FAMILIES {
                    let index = family_index(family);
                    self.set_map_element(pending, index, direction, &old.interface, false);
                    self.remove_chain(pending, index, &name);
                }
            }
        }
        if let Some(new) = new {
            for direction in DIRECTIONS {
                let pipeline = new.pipeline(direction);
                for owner in chains::pipeline_owners(pipeline) {
                    let entry = (owner, direction);
                    *self.owner_refs.entry(entry.clone()).or_default() += 1;
                    owners.insert(entry);
                }
                for family in FAMILIES {
                    let index = family_index(family);
                    let sealed = chains::endpoint_chain(
                        &new.interface,
                        &new.key,
                        direction,
                        pipeline,
                        &self.config,
                    );
                    self.put_chain(pending, index, sealed);
                    self.set_map_element(pending, index, direction, &new.interface, true);
                }
            }
            self.endpoints.insert(key.to_string(), new.clone());
        }
    }

    fn update_owner(
        &mut self,
        program: &Program,
        owner: &Owner,
        direction: Direction,
        changed: bool,
        touched_sets: &mut [BTreeSet<SetId>; 2],
        pending: &mut Pending,
    ) {
        let wanted = self.owner_refs.contains_key(&(owner.clone(), direction));
        let name = names::owner_chain(owner, direction);
        for family in FAMILIES {
            let index = family_index(family);
            let exists = self.tables[index].chains.contains_key(&name);
            let mut sets = BTreeSet::new();
            if wanted && (changed || !exists) {
                let rules = match owner {
                    Owner::Policy(id) => program.policies.get(id),
                    Owner::Profile(profile) => program.profiles.get(profile),
                }
                .map(|rules| rules.direction(direction));
                let sealed =
                    chains::owner_chain(owner, direction, family, rules, &self.config, &mut sets);
                self.put_chain(pending, index, sealed);
            } else if !wanted && exists {
                self.remove_chain(pending, index, &name);
            } else {
                continue;
            }
            let old = if sets.is_empty() {
                self.chain_sets[index].remove(&name).unwrap_or_default()
            } else {
                self.chain_sets[index]
                    .insert(name.clone(), sets.clone())
                    .unwrap_or_default()
            };
            for gone in old.difference(&sets) {
                if let Some(count) = self.set_refs[index].get_mut(gone) {
                    *count -= 1;
                    if *count == 0 {
                        self.set_refs[index].remove(gone);
                    }
                }
                touched_sets[index].insert(gone.clone());
            }
            for added in sets.difference(&old) {
                *self.set_refs[index].entry(added.clone()).or_default() += 1;
                touched_sets[index].insert(added.clone());
            }
        }
    }

    fn update_set(
        &mut self,
        program: &Program,
        id: &SetId,
        family: Family,
        changed: bool,
        pending: &mut Pending,
    ) {
        let index = family_index(family);
        let name = names::set_name(id);
        let wanted = self.set_refs[index].contains_key(id);
        let exists = self.tables[index].sets.contains_key(&name);
        if wanted && (changed || !exists) {
            let desired = desired_set(
                id,
                family,
                program.sets.get(&(id.clone(), family)),
                &mut pending.warnings,
            );
            self.touch_set(pending, index, &name);
            if let Some(old) = self.tables[index].sets.get(&name) {
                let differing: Vec<Element> = old
                    .elements
                    .symmetric_difference(&desired.elements)
                    .cloned()
                    .collect();
                for element in &differing {
                    self.touch_element(pending, index, &name, element);
                }
            }
            self.tables[index].sets.insert(name, desired);
        } else if !wanted && exists {
            self.touch_set(pending, index, &name);
            self.tables[index].sets.remove(&name);
        }
    }
}
