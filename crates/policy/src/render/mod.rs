//! A compiled [`Program`](crate::program::Program) rendered as nftables objects, one table per
//! family (`table ip starling`, `table ip6 starling`), and the smallest `nft -f -` transaction
//! between two states.
//!
//! Layout of each table (names in [`names`]):
//! * `forward-egress` — base chain, filter hook forward, priority `config.priority` (Felix's
//!   filter priority 0, after kube-proxy's DNAT and filter chains): established/related accept,
//!   then `iifname "cali*" goto from-wl-dispatch`.
//! * `forward-ingress` — the same hook at `priority + 1`: `oifname "cali*" goto to-wl-dispatch`.
//!   Two base chains make Allow a plain `accept`: an accept only ends the chain it is in, so a
//!   packet between two local pods still meets the destination's ingress program, and it passes
//!   the forward path only when neither chain dropped it. No accept mark is needed.
//! * `from-wl-dispatch` / `to-wl-dispatch` — conntrack INVALID drop, `iifname vmap @from-wl` /
//!   `oifname vmap @to-wl`, then `drop`: a workload interface not in the map (a pod whose program
//!   is not installed yet) is closed.
//! * maps `from-wl` / `to-wl` (`ifname : verdict`): `"<iface>" : goto fw-<iface>` / `tw-<iface>`.
//! * `fw-<iface>` / `tw-<iface>` — an endpoint's egress / ingress pipeline: per tier, clear the
//!   pass mark, jump each policy chain while the pass mark is clear, drop unless passed (tier
//!   default Deny); clear the pass mark, jump each profile; then drop.
//! * `po-<policy>` / `pi-<policy>`, `pro-<profile>` / `pri-<profile>` — rules of one policy or
//!   profile in one direction: Allow `accept`, Deny `drop`, Pass sets the pass mark and returns
//!   (in a profile: returns), Log logs and goes on.
//! * sets `s-<hash>` (selector members, `flags interval`, overlaps coalesced) and `n-<hash>`
//!   (named ports, `addr . inet_proto . inet_service`).
//! * named counters ([`counters`]): `<policy chain>.r<index>.<action>` on every rule of a policy
//!   or profile, `<endpoint chain>.drop` on an endpoint chain's own drops.
//!
//! Every chain ends with a trailer rule (its final verdict) whose comment is
//! `starling h=<content hash> n=<rule count>`, so a resync compares chains without reading
//! their rules. Nothing here does I/O: [`Renderer`] produces scripts, [`installed`] parses
//! `nft -j list table` output, the edge (src/dataplane/policy) runs `nft`.

mod chains;
pub mod counters;
pub mod installed;
pub mod names;
mod renderer;
mod rules;
mod sets;
pub mod synthetic;
mod view;

#[cfg(test)]
mod tests;

pub use counters::CounterUse;
pub use installed::CounterValue;
pub use renderer::{ObjectCounts, Renderer};
pub use sets::{coalesce, Element, SetKind, SetView};
pub use view::{BaseSpec, ChainState, TableView};

use crate::program::Family;

/// Knobs of the rendering; [`RenderConfig::default`] matches Felix's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// Workload interface prefixes (Felix's `InterfacePrefix`, default `cali`).
    pub interface_prefixes: Vec<String>,
    /// Packet mark bit meaning "a policy passed this tier" (Felix's pass bit, 0x20000).
    pub pass_mark: u32,
    /// Scratch bit for a Log rule whose match needs several nft rules (Felix's 0x80000).
    pub scratch_mark: u32,
    /// Prefix of Log rule messages (Calico's `calico-packet`).
    pub log_prefix: String,
    /// Priority of `forward-egress`; `forward-ingress` runs at this plus one.
    pub priority: i32,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            interface_prefixes: vec!["cali".to_string()],
            pass_mark: 0x0002_0000,
            scratch_mark: 0x0008_0000,
            log_prefix: "calico-packet: ".to_string(),
            priority: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("interface prefix {0:?}: must be 1-14 characters of [A-Za-z0-9._-]")]
    InterfacePrefix(String),
    #[error("no interface prefix: workload traffic could not be recognised")]
    NoInterfacePrefix,
    #[error("pass mark {pass:#x} and scratch mark {scratch:#x} must be distinct single bits")]
    Marks { pass: u32, scratch: u32 },
    #[error("log prefix {0:?}: at most 64 printable characters without '\"' or '\\\\'")]
    LogPrefix(String),
    #[error("priority {0}: must leave room for priority + 1")]
    Priority(i32),
}

impl RenderConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interface_prefixes.is_empty() {
            return Err(ConfigError::NoInterfacePrefix);
        }
        for prefix in &self.interface_prefixes {
            let legal = !prefix.is_empty()
                && prefix.len() < 15
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !legal {
                return Err(ConfigError::InterfacePrefix(prefix.clone()));
            }
        }
        let (pass, scratch) = (self.pass_mark, self.scratch_mark);
        if pass.count_ones() != 1 || scratch.count_ones() != 1 || pass == scratch {
            return Err(ConfigError::Marks { pass, scratch });
        }
        let prefix = &self.log_prefix;
        if prefix.len() > 64
            || prefix
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Err(ConfigError::LogPrefix(prefix.clone()));
        }
        if self.priority == i32::MAX {
            return Err(ConfigError::Priority(self.priority));
        }
        Ok(())
    }
}

/// How many nftables objects a transaction touches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Touched {
    pub sets_created: usize,
    pub sets_deleted: usize,
    /// Sets flushed and refilled (only when an installed set held elements we cannot name).
    pub sets_flushed: usize,
    pub set_elements_added: usize,
    pub set_elements_removed: usize,
    pub chains_created: usize,
    pub chains_rewritten: usize,
    pub chains_deleted: usize,
    pub map_elements_added: usize,
    pub map_elements_removed: usize,
    /// Named counters created or deleted (a counter's value is never written).
    pub counters_created: usize,
    pub counters_deleted: usize,
    /// Rules written into created or rewritten chains.
    pub rules_written: usize,
}

impl Touched {
    /// Objects touched: sets, set and map elements, chains and counters (not counting rules).
    pub fn objects(&self) -> usize {
        self.sets_created
            + self.sets_deleted
            + self.sets_flushed
            + self.set_elements_added
            + self.set_elements_removed
            + self.chains_created
            + self.chains_rewritten
            + self.chains_deleted
            + self.map_elements_added
            + self.map_elements_removed
            + self.counters_created
            + self.counters_deleted
    }

    pub fn add(&mut self, other: &Touched) {
        self.sets_created += other.sets_created;
        self.sets_deleted += other.sets_deleted;
        self.sets_flushed += other.sets_flushed;
        self.set_elements_added += other.set_elements_added;
        self.set_elements_removed += other.set_elements_removed;
        self.chains_created += other.chains_created;
        self.chains_rewritten += other.chains_rewritten;
        self.chains_deleted += other.chains_deleted;
        self.map_elements_added += other.map_elements_added;
        self.map_elements_removed += other.map_elements_removed;
        self.counters_created += other.counters_created;
        self.counters_deleted += other.counters_deleted;
        self.rules_written += other.rules_written;
    }
}

/// One `nft -f -` input covering both tables (empty when nothing changes), with what it touches
/// and what the renderer had to leave out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    pub script: String,
    pub touched: Touched,
    /// Objects of the program that could not be rendered (named, with the reason); their
    /// traffic stays dropped.
    pub warnings: Vec<String>,
}

impl Transaction {
    pub fn is_empty(&self) -> bool {
        self.script.is_empty()
    }
}

/// `ip` / `ip6`: the nft family of a table.
pub fn nft_family(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

pub(crate) const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

pub(crate) fn family_index(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}
