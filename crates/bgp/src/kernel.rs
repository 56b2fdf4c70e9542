//! What the BGP side asks of the kernel: a best learned route the kernel-programming policy
//! accepts, as a route to install.

use std::net::IpAddr;

use ipnet::IpNet;

/// A route learned over BGP, to be installed in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedRoute {
    pub prefix: IpNet,
    pub next_hop: IpAddr,
    /// Learned for an IPIP pool: carried through tunl0 onlink, as BIRD did.
    pub via_ipip: bool,
}

/// Best-path changes for the kernel since the last [`RouteDeltas::take`], one entry per prefix:
/// a burst of UPDATEs for the same prefix leaves only its last state.
#[derive(Debug, Default)]
pub struct RouteDeltas {
    pending: std::collections::BTreeMap<IpNet, Option<LearnedRoute>>,
}

/// What the dataplane applies in one step: each prefix's route now, or `None` when it has none.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeltaBatch {
    pub changes: Vec<(IpNet, Option<LearnedRoute>)>,
}

impl RouteDeltas {
    /// Records the prefix's current kernel route (or its absence).
    pub fn set(&mut self, prefix: IpNet, route: Option<LearnedRoute>) {
        self.pending.insert(prefix, route);
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Everything recorded so far, in prefix order; leaves the set empty.
    pub fn take(&mut self) -> DeltaBatch {
        DeltaBatch {
            changes: std::mem::take(&mut self.pending).into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, next_hop: &str) -> LearnedRoute {
        LearnedRoute {
            prefix: prefix.parse().unwrap(),
            next_hop: next_hop.parse().unwrap(),
            via_ipip: false,
        }
    }

    #[test]
    fn a_burst_for_one_prefix_leaves_its_last_state() {
        let mut deltas = RouteDeltas::default();
        let prefix: IpNet = "10.0.0.0/24".parse().unwrap();
        deltas.set(prefix, Some(route("10.0.0.0/24", "192.0.2.1")));
        deltas.set(prefix, Some(route("10.0.0.0/24", "192.0.2.2")));
        deltas.set("10.0.1.0/24".parse().unwrap(), None);
        assert_eq!(deltas.len(), 2);
        let batch = deltas.take();
        assert_eq!(
            batch.changes,
            vec![
                (prefix, Some(route("10.0.0.0/24", "192.0.2.2"))),
                ("10.0.1.0/24".parse().unwrap(), None),
            ]
        );
        assert!(deltas.is_empty());
    }
}
