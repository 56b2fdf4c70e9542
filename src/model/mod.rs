//! Domain types: what the rest of Starling reasons about once a resource has been read and validated.
//!
//! Wire shapes (Calico's CRD/etcd JSON) live in `crate::resources` and convert into these through
//! validation (`validate`); code here never sees an unvalidated value. Collections are
//! `BTreeMap`/`BTreeSet` so everything computed from them is deterministic.

pub mod asn;
pub mod bgp;
pub mod duration;
pub mod felix;
pub mod node;
pub mod pool;
pub mod reservation;
pub mod validate;

pub use asn::AsNumber;
pub use bgp::{BgpConfig, BgpPeer, NextHopMode, PeerTarget, ProgramClusterRoutes};
pub use felix::{FelixConfig, FelixOverrides};
pub use node::{CalicoNode, MacAddr};
pub use pool::{AllowedUse, AssignmentMode, EncapMode, IpPool, PoolEncapsulation};
pub use reservation::IpReservation;
pub use validate::ValidationError;
