//! The selector sets in use and their members, kept current as endpoints change.
//!
//! A set (ID, family) exists while at least one active policy or profile references it. Its
//! members are counted per item (two endpoints may share an address), so one endpoint change
//! adds or removes items in O(log n); the program's [`SetMembers`] mirror the counted items.
//! Selectors are evaluated once per distinct canonical text, whatever sets share them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use starling_selector::Selector;

use super::rules::set_selector;
use super::{EndpointState, Owner};
use crate::program::{Changes, Family, Program, SetId, SetMembers};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Net(IpNet),
    AddressPort(IpAddr, u8, u16),
}

#[derive(Debug)]
struct SelectorEntry {
    selector: Selector,
    /// Keys of the endpoints (cluster-wide) the selector matches.
    members: BTreeSet<String>,
    sets: BTreeSet<(SetId, Family)>,
}

#[derive(Debug, Default)]
struct SetEntry {
    owners: BTreeSet<Owner>,
    counts: BTreeMap<Item, u32>,
}

/// Sets in use, by (ID, family), and the selectors behind them.
#[derive(Debug, Default)]
pub struct SetIndex {
    selectors: BTreeMap<String, SelectorEntry>,
    sets: BTreeMap<(SetId, Family), SetEntry>,
}

/// What an endpoint puts into one set.
fn items(id: &SetId, family: Family, endpoint: &EndpointState) -> Vec<Item> {
    let addresses = endpoint
        .endpoint
        .addresses
        .iter()
        .filter(|address| Family::of(address) == family);
    match id {
        SetId::Selector(_) => addresses.map(|a| Item::Net(IpNet::from(*a))).collect(),
        SetId::NamedPort { protocol, name, .. } => addresses
            .flat_map(|address| {
                endpoint
                    .endpoint
                    .named_ports
                    .iter()
                    .filter(|port| port.protocol == *protocol && &port.name == name)
                    .map(|port| Item::AddressPort(*address, port.protocol, port.port))
            })
            .collect(),
    }
}

fn members_mut<'a>(program: &'a mut Program, key: &(SetId, Family)) -> &'a mut SetMembers {
    program.sets.entry(key.clone()).or_default()
}

/// Adds (`add`) or removes one item in the program's members, keeping empty sets `Empty`.
fn mirror(members: &mut SetMembers, item: &Item, add: bool) {
    match item {
        Item::Net(net) => {
            if let SetMembers::Empty = members {
                *members = SetMembers::Nets(BTreeSet::new());
            }
            if let SetMembers::Nets(nets) = members {
                if add {
                    nets.insert(*net);
                } else {
                    nets.remove(net);
                }
                if nets.is_empty() {
                    *members = SetMembers::Empty;
                }
            }
        }
        Item::AddressPort(address, protocol, port) => {
            if let SetMembers::Empty = members {
                *members = SetMembers::AddressPorts(BTreeSet::new());
            }
            if let SetMembers::AddressPorts(items) = members {
                let item = (*address, *protocol, *port);
                if add {
                    items.insert(item);
                } else {
                    items.remove(&item);
                }
                if items.is_empty() {
                    *members = SetMembers::Empty;
                }
            }
        }
    }
}

impl SetEntry {
    /// Counts `items` in (`add`) or out; true when the program's members changed.
    fn count(&mut self, items: &[Item], add: bool, members: &mut SetMembers) -> bool {
        let mut changed = false;
        for item in items {
            if add {
                let count = self.counts.entry(item.clone()).or_insert(0);
                *count += 1;
                if *count == 1 {
                    mirror(members, item, true);
                    changed = true;
                }
            } else if let Some(count) = self.counts.get_mut(item) {
                *count -= 1;
                if *count == 0 {
                    self.counts.remove(item);
                    mirror(members, item, false);
                    changed = true;
                }
            }
        }
        changed
    }
}

impl SetIndex {
    /// Number of selectors evaluated on every endpoint change.
    pub fn selector_count(&self) -> usize {
        self.selectors.len()
    }

    /// `owner` uses set `key`; a new set is filled from every endpoint.
    pub fn acquire(
        &mut self,
        key: &(SetId, Family),
        selector: &Selector,
        owner: &Owner,
        endpoints: &BTreeMap<String, EndpointState>,
        program: &mut Program,
        changes: &mut Changes,
    ) {
        if let Some(entry) = self.sets.get_mut(key) {
            entry.owners.insert(owner.clone());
            return;
        }
        let text = set_selector(&key.0).to_string();
        let selector_entry = self.selectors.entry(text).or_insert_with(|| SelectorEntry {
            selector: selector.clone(),
            members: endpoints
                .iter()
                .filter(|(_, endpoint)| selector.matches(&endpoint.labels))
                .map(|(endpoint_key, _)| endpoint_key.clone())
                .collect(),
            sets: BTreeSet::new(),
        });
        selector_entry.sets.insert(key.clone());
        let mut entry = SetEntry::default();
        entry.owners.insert(owner.clone());
        let members = members_mut(program, key);
        for endpoint_key in &selector_entry.members {
            if let Some(endpoint) = endpoints.get(endpoint_key) {
                entry.count(&items(&key.0, key.1, endpoint), true, members);
            }
        }
        self.sets.insert(key.clone(), entry);
        changes.sets.insert(key.clone());
    }

    /// `owner` no longer uses set `key`; the last owner removes it.
    pub fn release(
        &mut self,
        key: &(SetId, Family),
        owner: &Owner,
        program: &mut Program,
        changes: &mut Changes,
    ) {
        let Some(entry) = self.sets.get_mut(key) else {
            return;
        };
        entry.owners.remove(owner);
        if !entry.owners.is_empty() {
            return;
        }
        self.sets.remove(key);
        program.sets.remove(key);
        changes.sets.insert(key.clone());
        let text = set_selector(&key.0);
        if let Some(selector_entry) = self.selectors.get_mut(text) {
            selector_entry.sets.remove(key);
            if selector_entry.sets.is_empty() {
                self.selectors.remove(text);
            }
        }
    }

    /// Re-evaluates one endpoint (old and new state) against every selector in use.
    pub fn endpoint_changed(
        &mut self,
        key: &str,
        old: Option<&EndpointState>,
        new: Option<&EndpointState>,
        program: &mut Program,
        changes: &mut Changes,
    ) {
        for selector_entry in self.selectors.values_mut() {
            let was = selector_entry.members.contains(key);
            let now = new.is_some_and(|endpoint| selector_entry.selector.matches(&endpoint.labels));
            if !was && !now {
                continue;
            }
            if now {
                selector_entry.members.insert(key.to_string());
            } else {
                selector_entry.members.remove(key);
            }
            for set_key in &selector_entry.sets {
                let Some(entry) = self.sets.get_mut(set_key) else {
                    continue;
                };
                let before = match (was, old) {
                    (true, Some(old)) => items(&set_key.0, set_key.1, old),
                    _ => Vec::new(),
                };
                let after = match (now, new) {
                    (true, Some(new)) => items(&set_key.0, set_key.1, new),
                    _ => Vec::new(),
                };
                if before == after {
                    continue;
                }
                let members = members_mut(program, set_key);
                // Add first: an item in both stays counted throughout.
                let added = entry.count(&after, true, members);
                let removed = entry.count(&before, false, members);
                if added || removed {
                    changes.sets.insert(set_key.clone());
                }
            }
        }
    }
}
