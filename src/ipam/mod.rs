//! The edge half of IPAM: the daemon's IPAM service behind the control socket ([`service`],
//! with the WorkloadEndpoints it records in [`endpoint_records`]),
//! the `starling ipam` commands ([`cli`], [`cli_usage`]) and the adapter that lets the
//! decisions of `starling_ipam` run over a real datastore ([`store`]).

pub mod cli;
pub mod cli_usage;
pub mod endpoint_records;
pub mod service;
pub mod store;
