//! Pure decisions around the OPEN exchange: building our OPEN from the configuration,
//! validating the peer's OPEN (RFC 4271 §6.2, RFC 6793 §4.1 AS checks), negotiating hold time,
//! families and capabilities, and resolving connection collisions (RFC 4271 §6.8, RFC 6286 §2.3).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::codec::{
    error_code, open_subcode, Capability, CodecOptions, Family, GracefulRestart,
    GracefulRestartFamily, Notification, Open,
};
use starling_model::AsNumber;

use super::FsmConfig;

/// What both sides agreed on when the session came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_as: AsNumber,
    pub peer_identifier: Ipv4Addr,
    /// Negotiated hold time; zero means no hold timer and no keepalives (RFC 4271 §4.2).
    pub hold_time: Duration,
    /// Interval between our KEEPALIVEs; `None` when the hold time is zero.
    pub keepalive_interval: Option<Duration>,
    /// Families both sides advertised (RFC 4760 §8).
    pub families: Vec<Family>,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    /// The peer's graceful restart capability, if it sent one (RFC 4724 §3).
    pub peer_graceful_restart: Option<GracefulRestart>,
}

impl Negotiated {
    /// Wire-format options for this session.
    pub fn codec_options(&self) -> CodecOptions {
        CodecOptions {
            four_octet_as: self.four_octet_as,
        }
    }

    /// Whether the peer preserved forwarding state for `family` across its restart, i.e. our
    /// stale routes from it may stay until its End-of-RIB (RFC 4724 §4.2).
    pub fn peer_preserved_forwarding(&self, family: Family) -> bool {
        self.peer_graceful_restart.as_ref().is_some_and(|restart| {
            restart
                .families
                .iter()
                .any(|entry| entry.family == family && entry.forwarding_preserved)
        })
    }
}

/// Why a peer's OPEN was refused; each maps to one NOTIFICATION (RFC 4271 §6.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenRejection {
    #[error("peer speaks BGP version {version}, only 4 is supported")]
    UnsupportedVersion { version: u8 },
    #[error("peer says it is AS {received} (2-octet field {two_octet}), expected AS {expected}")]
    BadPeerAs {
        received: AsNumber,
        two_octet: u16,
        expected: AsNumber,
    },
    #[error("peer BGP identifier {identifier} is not acceptable")]
    BadBgpIdentifier { identifier: Ipv4Addr },
    #[error("peer hold time {hold_time} s is neither 0 nor at least 3 s")]
    UnacceptableHoldTime { hold_time: u16 },
}

impl OpenRejection {
    pub fn notification(&self) -> Notification {
        let (subcode, data) = match self {
            // Data: the largest version we support (RFC 4271 §6.2).
            OpenRejection::UnsupportedVersion { .. } => {
                (open_subcode::UNSUPPORTED_VERSION_NUMBER, vec![0, 4])
            }
            OpenRejection::BadPeerAs { .. } => (open_subcode::BAD_PEER_AS, Vec::new()),
            OpenRejection::BadBgpIdentifier { .. } => {
                (open_subcode::BAD_BGP_IDENTIFIER, Vec::new())
            }
            OpenRejection::UnacceptableHoldTime { .. } => {
                (open_subcode::UNACCEPTABLE_HOLD_TIME, Vec::new())
            }
        };
        Notification::new(error_code::OPEN_MESSAGE, subcode, data)
    }
}

/// Our OPEN: multiprotocol for each configured family, route refresh, graceful restart when
/// configured, and the 4-octet AS capability (AS_TRANS in the 2-octet field when needed).
pub fn local_open(config: &FsmConfig) -> Open {
    let mut capabilities: Vec<Capability> = config
        .families
        .iter()
        .map(|family| Capability::Multiprotocol(*family))
        .collect();
    capabilities.push(Capability::RouteRefresh);
    if let Some(restart) = &config.graceful_restart {
        capabilities.push(Capability::GracefulRestart(GracefulRestart {
            restarting: restart.restarting,
            notification: false,
            restart_time: u16::try_from(restart.restart_time.as_secs())
                .unwrap_or(0x0fff)
                .min(0x0fff),
            families: config
                .families
                .iter()
                .map(|family| GracefulRestartFamily {
                    family: *family,
                    forwarding_preserved: restart.forwarding_preserved,
                })
                .collect(),
        }));
    }
    capabilities.push(Capability::FourOctetAs(config.local_as));
    // 1 and 2 s are not valid hold times (RFC 4271 §4.2); round up rather than be refused.
    let hold_time = match config.hold_time_seconds {
        1 | 2 => 3,
        other => other,
    };
    Open::new(config.local_as, hold_time, config.router_id, capabilities)
}

/// Validates the peer's OPEN against the configuration and negotiates the session parameters.
pub fn validate_open(
    config: &FsmConfig,
    local: &Open,
    remote: &Open,
) -> Result<Negotiated, OpenRejection> {
    if remote.version != 4 {
        return Err(OpenRejection::UnsupportedVersion {
            version: remote.version,
        });
    }
    let received = remote.asn();
    let two_octet_consistent = match remote.four_octet_as() {
        // RFC 6793 §4.1: the 2-octet field carries the AS itself when it fits, else AS_TRANS.
        Some(asn) if asn.is_two_octet() => u32::from(remote.my_as) == asn.0,
        Some(_) => u32::from(remote.my_as) == AsNumber::TRANS.0,
        None => true,
    };
    if received != config.peer_as || !two_octet_consistent {
        return Err(OpenRejection::BadPeerAs {
            received,
            two_octet: remote.my_as,
            expected: config.peer_as,
        });
    }
    if remote.hold_time == 1 || remote.hold_time == 2 {
        return Err(OpenRejection::UnacceptableHoldTime {
            hold_time: remote.hold_time,
        });
    }
    let identifier = remote.bgp_identifier;
    let internal = config.peer_as == config.local_as;
    if identifier.is_unspecified()
        || identifier.is_broadcast()
        || identifier.is_multicast()
        || (internal && identifier == config.router_id)
    {
        return Err(OpenRejection::BadBgpIdentifier { identifier });
    }
    Ok(negotiate(local, remote, config.keepalive_time))
}

/// Capability negotiation as a pure function of both OPENs: hold = min of both (0 disables),
/// keepalive = configured interval or hold/3, never above hold/3 and at least one second.
pub fn negotiate(
    local: &Open,
    remote: &Open,
    configured_keepalive: Option<Duration>,
) -> Negotiated {
    let hold_time = Duration::from_secs(u64::from(local.hold_time.min(remote.hold_time)));
    let keepalive_interval = (!hold_time.is_zero()).then(|| {
        let third = hold_time / 3;
        configured_keepalive
            .map_or(third, |configured| configured.min(third))
            .max(Duration::from_secs(1))
    });
    let remote_families = remote.families();
    let families = local
        .families()
        .into_iter()
        .filter(|family| remote_families.contains(family))
        .collect();
    Negotiated {
        peer_as: remote.asn(),
        peer_identifier: remote.bgp_identifier,
        hold_time,
        keepalive_interval,
        families,
        four_octet_as: local.four_octet_as().is_some() && remote.four_octet_as().is_some(),
        route_refresh: local.supports_route_refresh() && remote.supports_route_refresh(),
        peer_graceful_restart: remote.graceful_restart().cloned(),
    }
}

/// Which end opened a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnectionOrigin {
    /// We connected to the peer.
    Local,
    /// The peer connected to us.
    Remote,
}

/// RFC 4271 §6.8: of two connections to the same peer, the one initiated by the speaker with
/// the higher BGP identifier survives. Equal identifiers (allowed between ASes, RFC 6286 §2.3)
/// are broken by the higher AS number.
pub fn collision_survivor(
    local_identifier: Ipv4Addr,
    local_as: AsNumber,
    remote_identifier: Ipv4Addr,
    remote_as: AsNumber,
) -> ConnectionOrigin {
    let local = (u32::from(local_identifier), local_as.0);
    let remote = (u32::from(remote_identifier), remote_as.0);
    if local > remote {
        ConnectionOrigin::Local
    } else {
        ConnectionOrigin::Remote
    }
}
