//! Command-line surface of the `starling` binary.
//!
//! Each subcommand is a thin shell over a library function so that the same behaviour is
//! reachable from tests without spawning the binary.

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

/// Starling: Calico-compatible pod networking (IPAM, routes, BGP) in one small daemon.
#[derive(Debug, Parser)]
#[command(name = "starling", version, about, long_about = None)]
pub struct Cli {
    /// Log line format (the level comes from RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "STARLING_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node daemon: watch the datastore, assign addresses, program routes and speak BGP.
    ///
    /// Configuration comes from calico-node's environment variables (NODENAME, DATASTORE_TYPE,
    /// ETCD_ENDPOINTS, IP, AS, CALICO_NETWORKING_BACKEND, CALICO_IPV4POOL_*, FELIX_* ...).
    Run,
    /// Print the version of this binary.
    Version,
    /// Print the CustomResourceDefinitions (group crd.projectcalico.org, version v1) as YAML.
    Crds,
    /// Inspect and repair IP address management data (like `calicoctl ipam`).
    Ipam {
        #[command(subcommand)]
        command: crate::ipam::cli::IpamCommand,
    },
}
