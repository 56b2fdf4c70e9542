//! Network policy, pure: Calico's policy model (NetworkPolicy, GlobalNetworkPolicy, Tier,
//! Profile) and Kubernetes NetworkPolicy converted into it as Calico does; a compiler from
//! (policies, tiers, profiles, endpoints, namespaces) to per-endpoint, per-direction programs
//! ([`program`]); and the rendering of those programs as nftables objects with the smallest
//! transaction between two states ([`render`]).
//!
//! Contract: [`program::Program`] is the seam between the compiler and the renderer and holds
//! only what this node's endpoints need. The compiler is incremental: each input change marks
//! what it touched in [`program::Changes`], so the renderer rewrites only those objects. Nothing
//! here does I/O; the daemon feeds inputs and applies the transactions (src/dataplane/policy).

pub mod compile;
pub mod explain;
pub mod k8s;
pub mod model;
pub mod program;
pub mod render;
pub mod validate;
