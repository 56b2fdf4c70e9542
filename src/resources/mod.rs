//! (being built)
pub mod ipam;
