//! Calico-compatible IP address management (reference §1.2–1.6, §4, §8.4), pure: no runtime,
//! no datastore client, no clock (time is passed in).
//!
//! Contract: every decision reads and writes through [`store::IpamStore`], a compare-and-swap
//! store of the IPAM records defined here and implemented at the edge. Every write to a block is
//! conditioned on the revision it was read at; a conflict re-reads and retries with a bound, so
//! two nodes (or two pods on one node) never get the same address.
//!
//! Parts: `block` (block math), `pools` (pool choice), `request` (pod annotations → request),
//! `reserve` (range → CIDR cover), `records` (the records); over the store: `allocator`
//! (assign/claim/borrow/reclaim), `claim`, `handles`, `release`, `tunnel`, `check` (the leak and
//! invariant check), `show` (calicoctl's tables).

pub mod allocator;
pub mod block;
pub mod check;
pub mod claim;
pub mod handles;
pub mod pools;
pub mod records;
pub mod release;
pub mod request;
pub mod reserve;
pub mod show;
pub mod store;
pub mod tunnel;

use std::net::IpAddr;

use ipnet::IpNet;

use starling_model::store::StoreError;

/// Why an IPAM operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pool(#[from] pools::PoolError),
    #[error(transparent)]
    Block(#[from] block::BlockError),
    #[error(
        "gave up on {what} after {} conflicting writes",
        handles::DATASTORE_RETRIES
    )]
    RetriesExhausted { what: String },
    #[error("not enough free IPv{version} addresses: wanted {wanted}, found {found} ({reason})")]
    Exhausted {
        version: u8,
        wanted: usize,
        found: usize,
        reason: String,
    },
    #[error("{address} is not inside any enabled IP pool")]
    AddressNotInPool { address: IpAddr },
    #[error("{address} is already in use by handle {handle}{pod}")]
    AddressInUse {
        address: IpAddr,
        handle: String,
        /// ` (pod namespace/name)` when the owner is a pod, else empty.
        pod: String,
    },
    #[error("{address} is in block {block} owned by {owner:?} and strict affinity is enabled")]
    NotAffine {
        address: IpAddr,
        block: IpNet,
        owner: String,
    },
}
