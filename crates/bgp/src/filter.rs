//! A peer's BGPFilters (`BGPPeer.spec.filters`) as Calico's BIRD configuration applies them:
//! the filters' rules for the direction and family run in the listed order and the first
//! matching rule of any filter decides (BIRD's `accept`/`reject` end the whole filter). When
//! none matches, the default behaviour continues: on import the route is accepted (Calico's
//! "import all"), on export Calico's own export rules decide ([`crate::policy`]).
//!
//! Starling's addition: a peer that names a BGPFilter that is missing or invalid rejects
//! everything in both directions instead of running unfiltered (Calico silently skips such a
//! filter, which can leak routes the filter was meant to hold back).

use std::collections::BTreeMap;
use std::sync::Arc;

use starling_model::bgpfilter::{BgpFilter, Direction, FilterAction, RouteFacts};

/// The outcome of a peer's filters for one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterVerdict {
    Accept,
    Reject,
    /// No rule matched: the default behaviour for the direction applies.
    NoMatch,
}

/// The filters a session runs, resolved from the peer's `filters` names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FilterChain {
    /// The filters in `BGPPeer.spec.filters` order (empty: no filtering).
    #[default]
    None,
    Filters(Vec<Arc<BgpFilter>>),
    /// A named filter is missing or invalid: everything is rejected. The text says why.
    Unusable(String),
}

/// What the speaker knows about every BGPFilter: the valid ones, and the error of each
/// invalid one (by name), so a peer naming it fails closed with the reason.
pub type FilterSet = BTreeMap<String, Result<Arc<BgpFilter>, String>>;

impl FilterChain {
    /// Resolves `names` (a BGPPeer's `filters`) against the known filters.
    pub fn resolve(peer: &str, names: &[String], known: &FilterSet) -> FilterChain {
        if names.is_empty() {
            return FilterChain::None;
        }
        let mut filters = Vec::with_capacity(names.len());
        for name in names {
            match known.get(name) {
                Some(Ok(filter)) => filters.push(Arc::clone(filter)),
                Some(Err(error)) => {
                    return FilterChain::Unusable(format!(
                        "BGPPeer {peer:?}: spec.filters names an invalid filter: {error}"
                    ))
                }
                None => {
                    return FilterChain::Unusable(format!(
                    "BGPPeer {peer:?}: spec.filters names BGPFilter {name:?}, which does not exist"
                ))
                }
            }
        }
        FilterChain::Filters(filters)
    }

    /// The first matching rule's action across the filters in order.
    pub fn decide(&self, direction: Direction, route: &RouteFacts<'_>) -> FilterVerdict {
        match self {
            FilterChain::None => FilterVerdict::NoMatch,
            FilterChain::Unusable(_) => FilterVerdict::Reject,
            FilterChain::Filters(filters) => filters
                .iter()
                .find_map(|filter| filter.first_match(direction, route))
                .map_or(FilterVerdict::NoMatch, |action| match action {
                    FilterAction::Accept => FilterVerdict::Accept,
                    FilterAction::Reject => FilterVerdict::Reject,
                }),
        }
    }

    /// Why the chain rejects everything, if it does.
    pub fn unusable_reason(&self) -> Option<&str> {
        match self {
            FilterChain::Unusable(reason) => Some(reason),
            _ => None,
        }
    }
}
