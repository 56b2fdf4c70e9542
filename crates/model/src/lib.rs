//! Starling's resource model (pure: no I/O, no runtime, no Kubernetes or kernel crate).
//!
//! Contract:
//! * [`wire`] — Calico's resources exactly as they appear on the wire (CRD `spec`s, etcd v3
//!   objects); nothing there is validated.
//! * [`validate`] — the only way from a wire shape to a domain type: every rule and default of
//!   the reference, with errors naming the object and the field. Callers validate once, where a
//!   resource enters the process (a watcher, a CLI reading a file), and pass domain types on.
//! * The domain types ([`IpPool`], [`BgpConfig`], [`BgpPeer`], [`CalicoNode`], [`FelixConfig`],
//!   [`WorkloadEndpoint`], ...) — what the rest of Starling reasons about; code holding one
//!   never sees an unvalidated value.
//! * [`config`] — calico-node's environment variables, parsed from a map the caller reads.
//!
//! Collections are `BTreeMap`/`BTreeSet` so everything computed from them is deterministic.

pub mod asn;
pub mod bgp;
pub mod bgpfilter;
pub mod config;
pub mod duration;
pub mod endpoint;
pub mod felix;
pub mod node;
pub mod pool;
pub mod reservation;
pub mod store;
pub mod validate;
pub mod wire;

pub use asn::AsNumber;
pub use bgp::{BgpConfig, BgpPeer, NextHopMode, PeerTarget, ProgramClusterRoutes};
pub use bgpfilter::BgpFilter;
pub use endpoint::{IpNat, PodEndpoint, WorkloadEndpoint};
pub use felix::{FelixConfig, FelixOverrides};
pub use node::{CalicoNode, MacAddr};
pub use pool::{AllowedUse, AssignmentMode, EncapMode, IpPool, PoolEncapsulation};
pub use reservation::IpReservation;
pub use validate::ValidationError;
