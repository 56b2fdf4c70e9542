//! Named counters: what each one counts (their values are read back by
//! [`installed::parse_counters`](super::installed::parse_counters)).
//!
//! Every nft rule rendered from one policy or profile rule names the same counter (a rule with
//! port alternatives is several nft rules, the first match decides, so a packet counts once; a
//! Log rule with alternatives counts on its one logging rule). An endpoint chain's tier-default
//! drops and its final drop share the endpoint's `.drop` counter: what that endpoint denied by
//! itself (a Deny rule counts on its policy's counter instead). Counters are objects of their
//! own, so rewriting a chain keeps them and their values; they are created before the first
//! rule naming them and deleted after the last one is gone. A counter recreated later (a policy
//! removed and added again) starts from zero with a new handle.

use crate::program::{Action, Direction};

use super::names::Owner;

/// What one named counter counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CounterUse {
    /// The packets rule `index` of a policy or profile matched in one direction (its action
    /// taken: accepted, dropped, passed, or logged).
    Rule {
        owner: Owner,
        direction: Direction,
        index: usize,
        action: Action,
    },
    /// The packets an endpoint's own chain dropped in one direction: a tier whose policies all
    /// missed (default Deny), or no profile allowed. `endpoint` is the program's `<ns>/<name>`.
    Denied {
        endpoint: String,
        direction: Direction,
    },
}
