//! Netlink monitor: notices drift (routes, neighbours, FDB entries, links changed by someone
//! else) and kicks the dataplane driver.
//!
//! Contract: subscribes to the link, neighbour and IPv4/IPv6 route multicast groups of the
//! calling thread's namespace; sends a kick (coalesced: at most one waiting) for every event
//! that may concern Starling: routes with Starling's, Felix's or BIRD's protocol, permanent or
//! deleted neighbours, FDB changes, any link change. A new route with Starling's own protocol is
//! the echo of our own write (a learned-route delta writes thousands) and kicks nothing: drift
//! of our routes shows as their deletion, and the periodic resync catches anything else.

use futures::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::neighbour::NeighbourState;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;

use super::kernel::KernelError;
use starling_calc::spec::{BIRD_ROUTE_PROTOCOL, FELIX_ROUTE_PROTOCOL};

/// Whether an event may concern Starling's objects.
pub fn is_relevant(message: &RouteNetlinkMessage, route_protocol: u8) -> bool {
    match message {
        RouteNetlinkMessage::NewRoute(route) => {
            let protocol = u8::from(route.header.protocol);
            protocol == FELIX_ROUTE_PROTOCOL || protocol == BIRD_ROUTE_PROTOCOL
        }
        RouteNetlinkMessage::DelRoute(route) => {
            let protocol = u8::from(route.header.protocol);
            protocol == route_protocol
                || protocol == FELIX_ROUTE_PROTOCOL
                || protocol == BIRD_ROUTE_PROTOCOL
        }
        RouteNetlinkMessage::DelNeighbour(_) => true,
        RouteNetlinkMessage::NewNeighbour(neighbour) => {
            neighbour.header.family == AddressFamily::Bridge
                || neighbour.header.state == NeighbourState::Permanent
        }
        RouteNetlinkMessage::NewLink(_) | RouteNetlinkMessage::DelLink(_) => true,
        _ => false,
    }
}

/// Starts the monitor on the current runtime; the receiver yields one `()` per burst of
/// relevant events. The task ends when the receiver is dropped.
pub fn spawn(route_protocol: u8) -> Result<mpsc::Receiver<()>, KernelError> {
    let (connection, handle, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Neigh,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ])
    .map_err(|error| KernelError::Io {
        operation: "subscribe to rtnetlink multicast groups".to_string(),
        message: error.to_string(),
    })?;
    let connection_task = tokio::spawn(connection);
    let (kicks, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        // The connection lives as long as a handle does.
        let _handle = handle;
        while let Some((message, _)) = messages.next().await {
            if let NetlinkPayload::InnerMessage(inner) = &message.payload {
                if is_relevant(inner, route_protocol) {
                    match kicks.try_send(()) {
                        Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                        Err(mpsc::error::TrySendError::Closed(())) => break,
                    }
                }
            }
        }
        connection_task.abort();
    });
    Ok(receiver)
}
