//! Starling: a per-node Kubernetes networking daemon that replaces calico-node.
//!
//! This crate is the edge: everything that touches the kernel, the network, the datastores, the
//! file system or a clock. The decisions live in the pure crates it builds on (`crates/`):
//! `starling_selector`, `starling_model` (wire types, validation, configuration),
//! `starling_ipam` (IPAM over an abstract store), `starling_bgp` (codec, FSM, RIB, policy) and
//! `starling_calc` (cluster state → desired dataplane and speaker configuration). Data flows one
//! way: datastore watch → state → desired → dataplane; socket → codec → FSM → RIB → route
//! deltas → dataplane; CNI → IPAM service → allocator → store.

pub mod bgp;
pub mod cli;
pub mod cni;
pub mod control;
pub mod crds;
pub mod daemon;
pub mod dataplane;
pub mod datastore;
pub mod health;
pub mod http;
pub mod ipam;
pub mod lab;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod netns;
pub mod policy;
pub mod policy_metrics;
pub mod resources;
pub mod route_deltas;
pub mod run_args;
pub mod startup;
pub mod status;
pub mod syncer;
