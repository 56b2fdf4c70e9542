//! Validated BGPFilters and how one rule matches a route (Calico renders each rule as one
//! BIRD `if ... then { accept|reject; }` statement; this is that statement's condition).

use ipnet::IpNet;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterAction {
    Accept,
    Reject,
}

/// `matchOperator`, applied to the route's prefix and the rule's CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOperator {
    /// The prefix is exactly the CIDR.
    Equal,
    NotEqual,
    /// The prefix lies inside the CIDR, with a length in the rule's range.
    In,
    NotIn,
}

/// The CIDR condition of a rule. For `In`/`NotIn` the length range is already resolved the way
/// Calico renders `cidr{min,max}`: `min` at least the CIDR's own length, `max` at most the
/// family's width. An empty range (min > max) makes `In` never match.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CidrMatch {
    pub operator: MatchOperator,
    pub cidr: IpNet,
    pub min_length: u8,
    pub max_length: u8,
}

impl CidrMatch {
    pub fn matches(&self, prefix: &IpNet) -> bool {
        let inside = || {
            self.cidr.contains(prefix)
                && (self.min_length..=self.max_length).contains(&prefix.prefix_len())
        };
        match self.operator {
            MatchOperator::Equal => *prefix == self.cidr,
            MatchOperator::NotEqual => *prefix != self.cidr,
            MatchOperator::In => inside(),
            MatchOperator::NotIn => !inside(),
        }
    }
}

/// One validated rule: every condition it has must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FilterRule {
    pub cidr: Option<CidrMatch>,
    /// `source: RemotePeers`: only routes learned from a BGP peer (BIRD's `source = RTS_BGP`).
    pub remote_peers_only: bool,
    /// `interface`: a pattern where `*` stands for any run of characters.
    pub interface: Option<String>,
    pub action: FilterAction,
}

/// The route facts a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteFacts<'a> {
    pub prefix: &'a IpNet,
    /// Learned over BGP (rather than originated by this node).
    pub from_peer: bool,
    /// The route's interface when known; an `interface` condition never matches without one
    /// (BIRD's `defined(ifname)` guard).
    pub interface: Option<&'a str>,
}

impl FilterRule {
    pub fn matches(&self, route: &RouteFacts<'_>) -> bool {
        self.cidr
            .as_ref()
            .is_none_or(|cidr| cidr.matches(route.prefix))
            && (!self.remote_peers_only || route.from_peer)
            && self.interface.as_deref().is_none_or(|pattern| {
                route
                    .interface
                    .is_some_and(|name| glob_matches(pattern, name))
            })
    }
}

/// Direction of a rule list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Import,
    Export,
}

/// A validated BGPFilter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct BgpFilter {
    pub name: String,
    pub import_v4: Vec<FilterRule>,
    pub export_v4: Vec<FilterRule>,
    pub import_v6: Vec<FilterRule>,
    pub export_v6: Vec<FilterRule>,
}

impl BgpFilter {
    /// The rules for one direction and the family of `prefix`.
    pub fn rules(&self, direction: Direction, prefix: &IpNet) -> &[FilterRule] {
        match (direction, prefix) {
            (Direction::Import, IpNet::V4(_)) => &self.import_v4,
            (Direction::Export, IpNet::V4(_)) => &self.export_v4,
            (Direction::Import, IpNet::V6(_)) => &self.import_v6,
            (Direction::Export, IpNet::V6(_)) => &self.export_v6,
        }
    }

    /// The action of the first matching rule, `None` when no rule matches.
    pub fn first_match(
        &self,
        direction: Direction,
        route: &RouteFacts<'_>,
    ) -> Option<FilterAction> {
        self.rules(direction, route.prefix)
            .iter()
            .find(|rule| rule.matches(route))
            .map(|rule| rule.action)
    }
}

/// BIRD's shell-like pattern match as Calico uses it for `interface`: `*` matches any run of
/// characters (including none), everything else itself.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.as_bytes();
    let name = name.as_bytes();
    let (mut p, mut n) = (0, 0);
    // Position of the last `*` seen and the name position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        for (pattern, name, expected) in [
            ("*", "eth0", true),
            ("eth0", "eth0", true),
            ("eth0", "eth1", false),
            ("eth*", "eth0", true),
            ("*.calico", "vxlan.calico", true),
            ("*.calico", "vxlan.cali", false),
            ("cali*", "cali1234", true),
            ("*a*b", "xaxxb", true),
            ("*a*b", "xaxxbc", false),
            ("", "", true),
            ("e", "", false),
        ] {
            assert_eq!(glob_matches(pattern, name), expected, "{pattern} vs {name}");
        }
    }
}
