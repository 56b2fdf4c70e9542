//! Starling: a per-node Kubernetes networking daemon that replaces calico-node.
//!
//! The pure core (`selector`, `model`, `ipam` decisions, `bgp` codec/FSM/RIB, `dataplane::desired`)
//! imports no I/O; the edges (`datastore`, `dataplane` kernel access, BGP sessions, HTTP) live beside it.

pub mod bgp;
pub mod cli;
pub mod cni;
pub mod config;
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
pub mod metrics;
pub mod model;
pub mod netns;
pub mod resources;
pub mod selector;
pub mod startup;
pub mod state;
pub mod status;
pub mod syncer;
