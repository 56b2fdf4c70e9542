//! A session's BGPFilters changing while it runs: routes from the peer are filtered again (a
//! stricter import filter takes effect at once; for a looser one the peer is asked with a
//! ROUTE-REFRESH to send its routes again), exports follow in place through the RIB's full
//! re-export, and a filter that cannot be used is reported once per episode: one error log line
//! naming session, BGPPeer, filter and reason, and `starling_bgp_filter_errors` at 1 until fixed.
//! The session is never reset for a filter change.

use super::{Actor, Which};
use starling_bgp::codec::{Message, RouteRefresh};
use starling_bgp::filter::FilterChain;
use starling_bgp::fsm::State;
use starling_bgp::policy::{CalicoRibPolicy, RouteKind};
use starling_bgp::rib::Candidate;

impl Actor {
    /// After the RIB got the session's new peer configuration (`old` → `new` filters).
    pub(super) fn filters_changed(&mut self, name: &str, old: &FilterChain, new: &FilterChain) {
        self.report_filter_problem(name, Some(old), new);
        if !old.import_differs(new) {
            return;
        }
        let Some(state) = self.sessions.get(name) else {
            return;
        };
        let id = state.peer_id;
        let policy = CalicoRibPolicy {
            policy: &self.config.policy,
            classify: |_: &ipnet::IpNet, _: &Candidate| (RouteKind::LocalBlockOrWorkload, false),
        };
        let changed = self.rib.reimport(id, &policy);
        self.learned
            .refresh(&self.rib, &self.config.policy, &changed);
        let Some(negotiated) = state
            .primary
            .fsm
            .negotiated()
            .filter(|_| state.primary.fsm.state() == State::Established)
        else {
            // Not up: the next session brings every route through the new filter anyway.
            return;
        };
        if !negotiated.route_refresh {
            tracing::warn!(
                session = %name,
                "import filter changed, but the peer does not support ROUTE-REFRESH: routes it sent earlier that the new filter accepts arrive only when the session restarts"
            );
            return;
        }
        let families = negotiated.families.clone();
        tracing::info!(session = %name, ?families, "import filter changed: asking the peer for its routes again (ROUTE-REFRESH)");
        for family in families {
            self.send(
                name,
                Which::Primary,
                &Message::RouteRefresh(RouteRefresh::new(family)),
            );
        }
    }

    /// Logs and counts a session's filters becoming unusable (or usable again); nothing when
    /// the problem is the same as before, so a recomputed configuration logs nothing twice.
    pub(super) fn report_filter_problem(
        &self,
        name: &str,
        old: Option<&FilterChain>,
        new: &FilterChain,
    ) {
        let old_problem = old.and_then(FilterChain::problem);
        let new_problem = new.problem();
        if old_problem == new_problem {
            return;
        }
        if let Some(old) = old {
            self.forget_filter_problem(name, old);
        }
        if let Some(problem) = old_problem {
            if new_problem.is_none() {
                tracing::info!(session = %name, bgppeer = %problem.peer, "BGP filters usable again");
            }
        }
        if let Some(problem) = new_problem {
            tracing::error!(
                session = %name,
                bgppeer = %problem.peer,
                filter = %problem.filter,
                reason = %problem.reason,
                "{problem}"
            );
            self.metrics
                .bgp_filter_errors
                .with_label_values(&[name, &problem.peer, &problem.filter, problem.reason.label()])
                .set(1);
        }
    }

    /// Drops the session's `starling_bgp_filter_errors` series (session removed or fixed).
    pub(super) fn forget_filter_problem(&self, name: &str, filters: &FilterChain) {
        if let Some(problem) = filters.problem() {
            let _ = self.metrics.bgp_filter_errors.remove_label_values(&[
                name,
                &problem.peer,
                &problem.filter,
                problem.reason.label(),
            ]);
        }
    }
}
