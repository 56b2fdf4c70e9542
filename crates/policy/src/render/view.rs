//! The objects of one table (desired, or parsed from the kernel) and the script that turns a
//! recorded "before" into them.
//!
//! Order inside a family's part of the transaction (nft checks references command by command):
//! table; new sets and maps; set element deletions then additions (deletions first so a
//! coalesced replacement never overlaps); new chains declared (so any chain may jump to any);
//! new and changed chains filled (changed ones flushed first); map element deletions then
//! additions (targets exist now); removed chains flushed, removed sets, maps and counters
//! deleted (nothing refers to them any more), removed chains deleted. New named counters come
//! right after the new sets, before any rule names them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::program::Family;

use super::counters::CounterUse;
use super::names::{self, SIGNATURE_PREFIX, TABLE};
use super::sets::{Element, SetKind, SetView};
use super::{nft_family, Touched};

/// A base chain's hook and priority (type filter, policy accept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseSpec {
    pub hook: String,
    pub priority: i32,
}

/// What a resync compares of a chain: its signature (the trailer's comment; `None` for an
/// installed chain without a valid one) and whether it is a base chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    pub signature: Option<String>,
    pub base: Option<BaseSpec>,
}

/// One table's chains (with their rules when desired) and sets/maps (with elements).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableView {
    pub present: bool,
    pub chains: BTreeMap<String, ChainState>,
    /// Rule texts per chain, trailer included (desired views only).
    pub rules: BTreeMap<String, Vec<String>>,
    pub sets: BTreeMap<String, SetView>,
    /// Named counters. A resync compares names only: values never make a difference.
    pub counters: BTreeSet<String>,
    /// What each counter counts (desired views only).
    pub counter_uses: BTreeMap<String, CounterUse>,
    /// The counters each chain's rules name (desired views only).
    pub(crate) chain_counters: BTreeMap<String, Vec<String>>,
    pub(crate) rule_total: usize,
}

impl TableView {
    pub(crate) fn put_chain(
        &mut self,
        name: &str,
        state: ChainState,
        rules: Vec<String>,
        counters: BTreeMap<String, CounterUse>,
    ) {
        self.rule_total += rules.len();
        if let Some(old) = self.rules.insert(name.to_string(), rules) {
            self.rule_total -= old.len();
        }
        self.chains.insert(name.to_string(), state);
        self.forget_counters(name);
        self.chain_counters
            .insert(name.to_string(), counters.keys().cloned().collect());
        for (counter, what) in counters {
            self.counters.insert(counter.clone());
            self.counter_uses.insert(counter, what);
        }
    }

    pub(crate) fn remove_chain(&mut self, name: &str) {
        if let Some(old) = self.rules.remove(name) {
            self.rule_total -= old.len();
        }
        self.chains.remove(name);
        self.forget_counters(name);
    }

    /// Counter names are derived from their chain's, so a chain's counters are its alone.
    fn forget_counters(&mut self, chain: &str) {
        for counter in self.chain_counters.remove(chain).unwrap_or_default() {
            self.counters.remove(&counter);
            self.counter_uses.remove(&counter);
        }
    }

    /// The counters chain `name`'s rules name (desired views).
    pub fn counters_of(&self, chain: &str) -> &[String] {
        self.chain_counters
            .get(chain)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Rules in the desired chains.
    pub fn rule_count(&self) -> usize {
        self.rule_total
    }
}

/// Hash-sealed chain: the rules followed by `trailer` carrying the signature comment.
pub(crate) fn seal(
    base: Option<BaseSpec>,
    mut rules: Vec<String>,
    trailer: &str,
) -> (ChainState, Vec<String>) {
    let base_text = base
        .as_ref()
        .map(|b| format!("{} {}", b.hook, b.priority))
        .unwrap_or_default();
    let mut parts: Vec<&[u8]> = vec![base_text.as_bytes()];
    parts.extend(rules.iter().map(|rule| rule.as_bytes()));
    parts.push(trailer.as_bytes());
    let signature = format!(
        "{SIGNATURE_PREFIX}{} n={}",
        names::digest_hex(&parts, 8),
        rules.len() + 1
    );
    rules.push(format!("{trailer} comment \"{signature}\""));
    (
        ChainState {
            signature: Some(signature),
            base,
        },
        rules,
    )
}

/// The state of every object a transaction touches, as it was before (`None`: absent).
#[derive(Debug, Clone, Default)]
pub(crate) struct Before {
    pub chains: BTreeMap<String, Option<ChainState>>,
    /// Sets and maps: kind and opacity.
    pub sets: BTreeMap<String, Option<(SetKind, bool)>>,
    /// Touched elements of sets present before and after: whether each was present.
    pub elements: BTreeMap<String, BTreeMap<Element, bool>>,
    /// Touched named counters: whether each was present.
    pub counters: BTreeMap<String, bool>,
}

impl Before {
    /// Everything needed to turn `installed` into `desired`.
    pub fn between(installed: &TableView, desired: &TableView) -> Before {
        let mut before = Before::default();
        for name in installed.chains.keys().chain(desired.chains.keys()) {
            before
                .chains
                .insert(name.clone(), installed.chains.get(name).cloned());
        }
        for name in installed.sets.keys().chain(desired.sets.keys()) {
            let old = installed.sets.get(name);
            before
                .sets
                .insert(name.clone(), old.map(|set| (set.kind, set.opaque)));
            if let (Some(old), Some(new)) = (old, desired.sets.get(name)) {
                let touched: BTreeMap<Element, bool> = old
                    .elements
                    .symmetric_difference(&new.elements)
                    .map(|element| (element.clone(), old.elements.contains(element)))
                    .collect();
                if !touched.is_empty() {
                    before.elements.insert(name.clone(), touched);
                }
            }
        }
        for name in installed.counters.symmetric_difference(&desired.counters) {
            before
                .counters
                .insert(name.clone(), installed.counters.contains(name));
        }
        before
    }
}

fn elements_line(out: &mut String, family: &str, set: &str, verb: &str, items: &[String]) {
    // Chunks keep single lines of a big initial load reasonable for nft's parser and errors.
    for chunk in items.chunks(512) {
        let _ = writeln!(
            out,
            "{verb} element {family} {TABLE} {set} {{ {} }}",
            chunk.join(", ")
        );
    }
}

fn declare_chain(out: &mut String, family: &str, name: &str, base: &Option<BaseSpec>) {
    match base {
        Some(spec) => {
            let _ = writeln!(
                out,
                "add chain {family} {TABLE} {name} {{ type filter hook {} priority {}; policy accept; }}",
                spec.hook, spec.priority
            );
        }
        None => {
            let _ = writeln!(out, "add chain {family} {TABLE} {name}");
        }
    }
}

/// Appends the commands turning `before` into `after` for `family`; counts them in `touched`.
pub(crate) fn write_family(
    family: Family,
    before: &Before,
    after: &TableView,
    out: &mut String,
    touched: &mut Touched,
) {
    let fam = nft_family(family);
    let mut text = String::new();
    let mut t = Touched::default();

    // New sets and maps; element changes of existing sets (maps wait for their chains).
    let mut removed_sets = vec![];
    let mut refill_maps = vec![];
    for (name, old) in &before.sets {
        let Some(new) = after.sets.get(name) else {
            if old.is_some() {
                removed_sets.push(name);
            }
            continue;
        };
        let created = old.is_none();
        if created {
            let (keyword, body) = new.kind.declaration(family);
            let _ = writeln!(text, "add {keyword} {fam} {TABLE} {name} {body}");
            t.sets_created += 1;
        }
        if new.kind == SetKind::Verdict {
            refill_maps.push((name, created));
            continue;
        }
        let flush = old.is_some_and(|(_, opaque)| opaque);
        if created || flush {
            if flush {
                let _ = writeln!(text, "flush set {fam} {TABLE} {name}");
                t.sets_flushed += 1;
            }
            let all: Vec<String> = new.elements.iter().map(ToString::to_string).collect();
            t.set_elements_added += all.len();
            elements_line(&mut text, fam, name, "add", &all);
        } else if let Some(elements) = before.elements.get(name) {
            let (gone, added) = element_changes(elements, new);
            t.set_elements_removed += gone.len();
            t.set_elements_added += added.len();
            elements_line(&mut text, fam, name, "delete", &gone);
            elements_line(&mut text, fam, name, "add", &added);
        }
    }

    // Named counters before any rule names them.
    let mut removed_counters = vec![];
    for (name, was) in &before.counters {
        match (*was, after.counters.contains(name)) {
            (false, true) => {
                let _ = writeln!(text, "add counter {fam} {TABLE} {name}");
                t.counters_created += 1;
            }
            (true, false) => removed_counters.push(name),
            _ => {}
        }
    }

    // Chains: declare the new ones, then fill new and changed ones.
    let mut removed_chains = vec![];
    let mut fill = vec![];
    for (name, old) in &before.chains {
        let Some(new) = after.chains.get(name) else {
            if old.is_some() {
                removed_chains.push(name);
            }
            continue;
        };
        match old {
            None => {
                declare_chain(&mut text, fam, name, &new.base);
                t.chains_created += 1;
                fill.push((name, false));
            }
            Some(old) if old.base != new.base => {
                // A hook cannot change in place; nothing jumps to a base chain, and a chain
                // turning into one is not referenced by anything we keep.
                let _ = writeln!(text, "delete chain {fam} {TABLE} {name}");
                declare_chain(&mut text, fam, name, &new.base);
                t.chains_rewritten += 1;
                fill.push((name, false));
            }
            Some(old) if old.signature != new.signature => {
                t.chains_rewritten += 1;
                fill.push((name, true));
            }
            Some(_) => {}
        }
    }
    for (name, flush) in fill {
        if flush {
            let _ = writeln!(text, "flush chain {fam} {TABLE} {name}");
        }
        for rule in after.rules.get(name.as_str()).into_iter().flatten() {
            let _ = writeln!(text, "add rule {fam} {TABLE} {name} {rule}");
            t.rules_written += 1;
        }
    }

    // Map elements, now that every target chain exists.
    for (name, created) in refill_maps {
        let Some(new) = after.sets.get(name.as_str()) else {
            continue;
        };
        let flush = before
            .sets
            .get(name)
            .cloned()
            .flatten()
            .is_some_and(|(_, o)| o);
        if created || flush {
            if flush {
                let _ = writeln!(text, "flush map {fam} {TABLE} {name}");
                t.sets_flushed += 1;
            }
            let all: Vec<String> = new.elements.iter().map(ToString::to_string).collect();
            t.map_elements_added += all.len();
            elements_line(&mut text, fam, name, "add", &all);
        } else if let Some(elements) = before.elements.get(name) {
            let (gone, added) = element_changes(elements, new);
            t.map_elements_removed += gone.len();
            t.map_elements_added += added.len();
            elements_line(&mut text, fam, name, "delete", &gone);
            elements_line(&mut text, fam, name, "add", &added);
        }
    }

    // Removals: unreference, then delete.
    for name in &removed_chains {
        let _ = writeln!(text, "flush chain {fam} {TABLE} {name}");
    }
    for name in removed_sets {
        let keyword = match before.sets.get(name).cloned().flatten() {
            Some((SetKind::Verdict, _)) => "map",
            _ => "set",
        };
        let _ = writeln!(text, "delete {keyword} {fam} {TABLE} {name}");
        t.sets_deleted += 1;
    }
    for name in removed_counters {
        let _ = writeln!(text, "delete counter {fam} {TABLE} {name}");
        t.counters_deleted += 1;
    }
    for name in removed_chains {
        let _ = writeln!(text, "delete chain {fam} {TABLE} {name}");
        t.chains_deleted += 1;
    }

    if !text.is_empty() {
        let _ = writeln!(out, "add table {fam} {TABLE}");
        out.push_str(&text);
        touched.add(&t);
    }
}

/// Keys of touched elements gone from `new` (for `delete element`) and elements new in it.
fn element_changes(touched: &BTreeMap<Element, bool>, new: &SetView) -> (Vec<String>, Vec<String>) {
    let mut gone = vec![];
    let mut added = vec![];
    for (element, was) in touched {
        let now = new.elements.contains(element);
        if *was && !now {
            gone.push(element.key());
        } else if !*was && now {
            added.push(element.to_string());
        }
    }
    (gone, added)
}
