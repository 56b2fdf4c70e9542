//! The node dataplane: tunnels, routes, VXLAN neighbours/FDB, natOutgoing and interface sysctls.
//!
//! Contract: `starling_calc::desired::compute` decides the desired state with no I/O; here
//! [`reconcile::Reconciler`] reads the kernel back through the narrow [`kernel::Kernel`] trait
//! and applies the minimal change; [`driver::run`] repeats that when the desired state changes,
//! when the netlink [`monitor`] sees drift, on retry deadlines and on a periodic resync.
//! Ownership rules (what Starling may touch) live in [`ownership`].

pub mod driver;
pub mod fake;
pub mod floating;
pub mod kernel;
pub mod monitor;
pub mod mtu;
pub mod nat;
pub mod netlink;
mod netlink_batch;
mod netlink_messages;
pub mod ownership;
pub mod policy;
pub mod reconcile;
pub mod sysctl;
