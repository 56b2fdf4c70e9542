//! Learned BGP routes as kernel routes. The rules depend on the cluster state (this node's
//! blocks, whether `tunl0` exists, IPv6), the routes on the BGP speaker alone: the rules travel
//! in [`crate::spec::Desired`], so the dataplane turns each learned-route change into one route
//! write without a recomputation of the desired state.

use ipnet::IpNet;

use crate::spec::{
    default_metric, DesiredRoute, LearnedRouteRules, RouteClass, RouteScope, RouteSpec, RouteType,
    IPIP_DEVICE,
};
use starling_bgp::kernel::LearnedRoute;

/// The kernel route for a learned route, or `None` when it must not be installed.
pub fn learned_route_spec(
    rules: &LearnedRouteRules,
    learned: &LearnedRoute,
) -> Option<DesiredRoute> {
    let ipv4 = matches!(learned.prefix, IpNet::V4(_));
    if ipv4 != learned.next_hop.is_ipv4()
        || (!ipv4 && !rules.ipv6_support)
        || rules.inside_local_block(&learned.prefix)
    {
        return None;
    }
    let tunnel_mtu = rules.ipip_mtu.filter(|_| learned.via_ipip);
    Some(DesiredRoute {
        spec: RouteSpec {
            destination: learned.prefix.trunc(),
            route_type: RouteType::Unicast,
            gateway: Some(learned.next_hop),
            device: tunnel_mtu.map(|_| IPIP_DEVICE.to_string()),
            onlink: tunnel_mtu.is_some(),
            scope: RouteScope::Universe,
            metric: default_metric(&learned.prefix),
            mtu: tunnel_mtu,
            protocol: rules.protocol,
        },
        class: RouteClass::BgpLearned,
    })
}
