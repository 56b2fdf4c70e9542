//! Readiness rules of the daemon's health reporters (pure).
//!
//! BGP (reference §7.2): ready when there are no peers; within the grace period after start
//! only when every peer is Established; after it, when at least one is.

use std::time::Duration;

use crate::status::PeerStatus;

/// Grace period after start during which every peer must be up (calico-node's threshold).
pub const BGP_GRACE: Duration = Duration::from_secs(30);

/// `(ready, detail)` for the BGP reporter.
pub fn bgp_readiness(
    since_start: Duration,
    grace: Duration,
    peers: &[PeerStatus],
) -> (bool, String) {
    let established = peers
        .iter()
        .filter(|peer| peer.info.starts_with("Established"))
        .count();
    if peers.is_empty() {
        return (true, "no BGP peers".to_string());
    }
    let detail = format!("{established} of {} BGP peers established", peers.len());
    let ready = if since_start < grace {
        established == peers.len()
    } else {
        established > 0
    };
    (ready, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(info: &str) -> PeerStatus {
        PeerStatus {
            address: "10.0.0.2".parse().unwrap(),
            peer_type: "node-to-node mesh".into(),
            state: "up".into(),
            since: "00:00:00".into(),
            info: info.into(),
            bfd: None,
        }
    }

    #[test]
    fn grace_then_at_least_one() {
        let grace = Duration::from_secs(30);
        assert!(bgp_readiness(Duration::ZERO, grace, &[]).0);
        let mixed = [
            peer("Established"),
            peer("Active Socket: Connection refused"),
        ];
        assert!(!bgp_readiness(Duration::from_secs(5), grace, &mixed).0);
        assert!(bgp_readiness(Duration::from_secs(31), grace, &mixed).0);
        assert!(!bgp_readiness(Duration::from_secs(31), grace, &[peer("Connect")]).0);
        assert!(bgp_readiness(Duration::from_secs(5), grace, &[peer("Established")]).0);
    }
}
