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

/// Hands the heap's free pages back to the kernel after a burst of short-lived allocations
/// (a policy resync's JSON read-back, a learned table's worth of route deltas); glibc would
/// otherwise keep the burst's peak resident for good.
pub(crate) fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
