//! Per-Service addresses (service advertisement): originated and withdrawn one prefix at a
//! time, without touching the configuration's routes or re-exporting anything else. A prefix
//! the configuration also originates (a single-address service range) stays while either asks.

use starling_bgp::rib::RouteAttributes;
use starling_calc::services::RouteChanges;

use super::Actor;

impl Actor {
    pub(super) fn apply_service_routes(&mut self, changes: RouteChanges) {
        let mut changed = Vec::new();
        for prefix in changes.removed.iter().map(|p| p.trunc()) {
            let configured = self.config.originated.iter().any(|p| p.trunc() == prefix);
            if self.service_routes.remove(&prefix) && !configured && self.originated.remove(&prefix)
            {
                changed.extend(self.rib.withdraw_local(prefix));
            }
        }
        for prefix in changes.added.iter().map(|p| p.trunc()) {
            if self.service_routes.insert(prefix) && self.originated.insert(prefix) {
                changed.extend(self.rib.originate(prefix, RouteAttributes::local()));
            }
        }
        tracing::debug!(
            added = changes.added.len(),
            removed = changes.removed.len(),
            "service routes changed"
        );
        changed.sort();
        changed.dedup();
        self.learned
            .refresh(&self.rib, &self.config.policy, &changed);
        self.export_all();
    }
}
