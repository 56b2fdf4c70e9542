//! Who owns a kernel object (reference §5.3, adapted to one process owning every route).
//!
//! Contract, for routes in the main table:
//! * ours: the route carries Starling's protocol number;
//! * adoptable (left by calico-node, which Starling replaces): Felix's protocol 80; Felix's
//!   protocol 3 routes on workload interfaces (`cali*`) and on the VXLAN devices; BIRD's
//!   protocol 12 routes for destinations inside a pool, that are blackholes or leave through
//!   `tunl0` or the parent interface. Adoptable routes that Starling wants are replaced in place
//!   (never deleted first); the others are swept like stale routes of our own;
//! * foreign: everything else. Never written, never deleted.
//!
//! Neighbours and FDB entries are ours when permanent on a device we manage (the VXLAN devices,
//! workload interfaces); devices are ours by name.

use super::kernel::{FdbEntry, Neighbour};
use starling_calc::spec::{
    Desired, RouteSpec, BIRD_ROUTE_PROTOCOL, BOOT_ROUTE_PROTOCOL, FELIX_ROUTE_PROTOCOL,
    IPIP_DEVICE, VXLAN_DEVICE, VXLAN_V6_DEVICE,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousOwner {
    Felix,
    Bird,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOwnership {
    Ours,
    Adoptable(PreviousOwner),
    Foreign,
}

impl RouteOwnership {
    /// Starling may rewrite or delete it.
    pub fn is_managed(self) -> bool {
        !matches!(self, RouteOwnership::Foreign)
    }
}

pub fn is_vxlan_device(name: &str) -> bool {
    name == VXLAN_DEVICE || name == VXLAN_V6_DEVICE
}

pub fn classify_route(route: &RouteSpec, desired: &Desired) -> RouteOwnership {
    if route.protocol == desired.route_protocol {
        return RouteOwnership::Ours;
    }
    if route.protocol == FELIX_ROUTE_PROTOCOL {
        return RouteOwnership::Adoptable(PreviousOwner::Felix);
    }
    let device = route.device.as_deref();
    if route.protocol == BOOT_ROUTE_PROTOCOL
        && device.is_some_and(|name| desired.is_workload_interface(name) || is_vxlan_device(name))
    {
        return RouteOwnership::Adoptable(PreviousOwner::Felix);
    }
    if route.protocol == BIRD_ROUTE_PROTOCOL {
        let in_pool = desired
            .pool_cidrs
            .iter()
            .any(|pool| pool.contains(&route.destination));
        let through_cluster_path = match device {
            None => true,
            Some(name) => {
                name == IPIP_DEVICE
                    || Some(name) == desired.parent_interface_v4.as_deref()
                    || Some(name) == desired.parent_interface_v6.as_deref()
            }
        };
        if in_pool && through_cluster_path {
            return RouteOwnership::Adoptable(PreviousOwner::Bird);
        }
    }
    RouteOwnership::Foreign
}

pub fn neighbour_is_managed(neighbour: &Neighbour, desired: &Desired) -> bool {
    neighbour.permanent
        && (is_vxlan_device(&neighbour.device) || desired.is_workload_interface(&neighbour.device))
}

pub fn fdb_is_managed(entry: &FdbEntry) -> bool {
    entry.permanent && entry.destination.is_some() && is_vxlan_device(&entry.device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_calc::spec::{RouteScope, RouteType};

    fn route(destination: &str, device: Option<&str>, protocol: u8) -> RouteSpec {
        RouteSpec {
            destination: destination.parse().unwrap(),
            route_type: if device.is_some() {
                RouteType::Unicast
            } else {
                RouteType::Blackhole
            },
            gateway: None,
            device: device.map(str::to_string),
            onlink: false,
            scope: RouteScope::Universe,
            metric: 0,
            mtu: None,
            protocol,
        }
    }

    #[test]
    fn ownership_rules() {
        let mut desired = Desired::empty(81);
        desired.pool_cidrs.insert("10.244.0.0/16".parse().unwrap());
        desired.parent_interface_v4 = Some("eth0".to_string());
        let check = |spec: RouteSpec| classify_route(&spec, &desired);
        assert_eq!(
            check(route("10.1.0.0/24", Some("eth9"), 81)),
            RouteOwnership::Ours
        );
        assert_eq!(
            check(route("10.244.1.0/26", None, 80)),
            RouteOwnership::Adoptable(PreviousOwner::Felix)
        );
        assert_eq!(
            check(route("10.244.0.5/32", Some("cali12345678901"), 3)),
            RouteOwnership::Adoptable(PreviousOwner::Felix)
        );
        assert_eq!(
            check(route("10.244.0.5/32", Some("eth0"), 3)),
            RouteOwnership::Foreign
        );
        assert_eq!(
            check(route("10.244.2.0/26", Some("tunl0"), 12)),
            RouteOwnership::Adoptable(PreviousOwner::Bird)
        );
        assert_eq!(
            check(route("10.244.2.0/26", Some("eth0"), 12)),
            RouteOwnership::Adoptable(PreviousOwner::Bird)
        );
        // BIRD routes outside pools (e.g. learned external prefixes) stay foreign.
        assert_eq!(
            check(route("192.0.2.0/24", Some("eth0"), 12)),
            RouteOwnership::Foreign
        );
        assert_eq!(
            check(route("10.244.2.0/26", Some("eth1"), 12)),
            RouteOwnership::Foreign
        );
        assert_eq!(
            check(route("0.0.0.0/0", Some("eth0"), 16)),
            RouteOwnership::Foreign
        );
        assert_eq!(
            check(route("10.244.3.0/26", Some("eth0"), 2)),
            RouteOwnership::Foreign
        );
    }
}
