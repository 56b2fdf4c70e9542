//! Starling's BGP speaker core (sans-IO).
pub mod codec;
pub mod fsm;
pub mod policy;
pub mod rib;
