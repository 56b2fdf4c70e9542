//! Per-peer import limits (BIRD's `import limit N action ...`): after each UPDATE the session's
//! accepted prefixes are compared with its limit; the action logs, blocks further prefixes, or
//! ends the session with Cease "Maximum Number of Prefixes Reached" (RFC 4486 §4).

use starling_bgp::codec::{cease_subcode, Family, Notification};
use starling_bgp::fsm::Input;
use starling_model::bgp::LimitAction;

use super::{Actor, Which};

/// The Cease for a passed limit, with RFC 4486's data: AFI, SAFI and the limit.
fn limit_notification(family: Family, limit: u32) -> Notification {
    let mut data = Vec::with_capacity(7);
    data.extend_from_slice(&family.afi.to_be_bytes());
    data.push(family.safi);
    data.extend_from_slice(&limit.to_be_bytes());
    Notification::new(6, cease_subcode::MAXIMUM_PREFIXES_REACHED, data)
}

impl Actor {
    /// Gives the RIB the session's `block` limit (or lifts it).
    pub(super) fn apply_import_block(&mut self, name: &str) {
        let Some(state) = self.sessions.get(name) else {
            return;
        };
        let block = state
            .spec
            .import_limit
            .filter(|limit| limit.action == LimitAction::Block)
            .map(|limit| limit.limit as usize);
        self.rib.set_import_block(state.peer_id, block);
    }

    /// Acts on a passed import limit, once per episode.
    pub(super) fn check_import_limit(&mut self, name: &str) {
        let Some(state) = self.sessions.get_mut(name) else {
            return;
        };
        let Some(limit) = state.spec.import_limit else {
            return;
        };
        let accepted = self.rib.accepted_count(state.peer_id);
        let received = self.rib.received_count(state.peer_id);
        let passed = match limit.action {
            // Blocking keeps accepted at the limit: passing shows as refused prefixes.
            LimitAction::Block => received > limit.limit as usize,
            _ => accepted > limit.limit as usize,
        };
        if !passed {
            state.limit_reported = false;
            return;
        }
        if state.limit_reported {
            return;
        }
        state.limit_reported = true;
        let family = if state.spec.peer_address.is_ipv4() {
            Family::IPV4_UNICAST
        } else {
            Family::IPV6_UNICAST
        };
        self.metrics
            .bgp_import_limit_reached_total
            .with_label_values(&[name])
            .inc();
        tracing::warn!(
            session = %name,
            peer = %state.spec.peer_address,
            limit = limit.limit,
            accepted,
            received,
            action = ?limit.action,
            "BGP peer passed its import limit"
        );
        match limit.action {
            LimitAction::Warn | LimitAction::Block => {}
            LimitAction::Restart => {
                let notification = limit_notification(family, limit.limit);
                self.handle(name, Which::Primary, Input::LocalError(notification));
            }
            LimitAction::Disable => {
                state.disabled_by_limit = true;
                let notification = limit_notification(family, limit.limit);
                self.handle(name, Which::Primary, Input::LocalError(notification));
                // Stays down (no automatic restart) until the configuration changes.
                self.handle(name, Which::Primary, Input::ManualStop);
            }
        }
    }
}
