//! (being built)
pub mod peering;
