//! Calico-compatible IP address management (reference §1.2–1.6, §4, §8.4).
//!
//! Pure parts: `block` (block math), `pools` (pool choice), `request` (pod annotations → request),
//! `reserve` (range → CIDR cover), `records` (domain records). Parts over a `Datastore`:
//! `allocator` (assign/claim/borrow/reclaim with CAS and bounded retry), `release`, `tunnel`,
//! `check`, `show`. `cli` wires the `starling ipam` subcommands to a datastore chosen from the
//! environment.

pub mod block;
pub mod records;
