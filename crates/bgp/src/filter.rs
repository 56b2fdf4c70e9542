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

use starling_model::bgpfilter::{BgpFilter, Direction, FilterAction, FilterRule, RouteFacts};

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
    /// A named filter is missing or invalid: everything is rejected.
    Unusable(FilterProblem),
}

/// Why a peer's filters cannot be used: the first listed filter that is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterProblem {
    /// The BGPPeer naming the filter.
    pub peer: String,
    pub filter: String,
    pub reason: ProblemReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemReason {
    NotFound,
    /// The filter's validation error (names the field and why).
    Invalid(String),
}

impl ProblemReason {
    /// A short, fixed label (for metrics).
    pub fn label(&self) -> &'static str {
        match self {
            ProblemReason::NotFound => "not_found",
            ProblemReason::Invalid(_) => "invalid",
        }
    }
}

impl std::fmt::Display for ProblemReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProblemReason::NotFound => write!(f, "not found"),
            ProblemReason::Invalid(error) => write!(f, "invalid: {error}"),
        }
    }
}

impl std::fmt::Display for FilterProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BGPPeer {:?}: spec.filters names BGPFilter {:?}, which is {}; rejecting every route to and from this peer",
            self.peer, self.filter, self.reason
        )
    }
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
            let reason = match known.get(name) {
                Some(Ok(filter)) => {
                    filters.push(Arc::clone(filter));
                    continue;
                }
                Some(Err(error)) => ProblemReason::Invalid(error.clone()),
                None => ProblemReason::NotFound,
            };
            return FilterChain::Unusable(FilterProblem {
                peer: peer.to_string(),
                filter: name.clone(),
                reason,
            });
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
    pub fn problem(&self) -> Option<&FilterProblem> {
        match self {
            FilterChain::Unusable(problem) => Some(problem),
            _ => None,
        }
    }

    /// Whether the import rules of `self` and `other` can decide any route differently (then
    /// routes the peer sent must be filtered again).
    pub fn import_differs(&self, other: &FilterChain) -> bool {
        // First match across the filters in order is first match in their rules laid end to end.
        let import_rules = |chain: &FilterChain| -> Option<(Vec<FilterRule>, Vec<FilterRule>)> {
            match chain {
                FilterChain::None => Some(Default::default()),
                FilterChain::Unusable(_) => None,
                FilterChain::Filters(filters) => Some((
                    filters.iter().flat_map(|f| f.import_v4.clone()).collect(),
                    filters.iter().flat_map(|f| f.import_v6.clone()).collect(),
                )),
            }
        };
        import_rules(self) != import_rules(other)
    }
}
