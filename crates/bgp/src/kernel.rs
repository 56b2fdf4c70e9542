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
