//! Command-line surface of the `starling` binary.
//!
//! Each subcommand is a thin shell over a library function so that the same behaviour is
//! reachable from tests without spawning the binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::run_args::RunArgs;

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
    /// ETCD_ENDPOINTS, IP, AS, CALICO_NETWORKING_BACKEND, CALICO_IPV4POOL_*, FELIX_* ...);
    /// the flags below override the variable named in their help.
    Run(Box<RunArgs>),
    /// Print the version of this binary.
    Version,
    /// Print the CustomResourceDefinitions (group crd.projectcalico.org, version v1) as YAML.
    Crds(CrdsArgs),
    /// CNI plugin tasks (the plugin itself runs when CNI_COMMAND is set).
    #[command(subcommand)]
    Cni(CniCommand),
    /// A multi-node Starling cluster on this machine, in network namespaces (needs root).
    Lab(LabCommand),
    /// Inspect and repair IP address management data (like `calicoctl ipam`).
    Ipam {
        #[command(subcommand)]
        command: crate::ipam::cli::IpamCommand,
    },
    /// Ask the running daemon on this node (like `calicoctl node`).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Network policy of the running daemon on this node.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Why a connection is allowed or denied: the verdict and the tier, policy and rule that
    /// decided, from the daemon's compiled policy. Only this node's endpoints are evaluated
    /// (the egress of a local source, the ingress of a local destination).
    Explain {
        /// `NAMESPACE/POD` or an IP address.
        source: String,
        /// `NAMESPACE/POD` or an IP address.
        destination: String,
        /// `PROTO/PORT`, e.g. `TCP/80`, `UDP/53`, `ICMP/8`.
        packet: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
        /// The daemon's control socket (default: STARLING_CONTROL_SOCKET, else
        /// /var/run/calico/starling.sock).
        #[arg(long, value_name = "PATH", env = "STARLING_CONTROL_SOCKET")]
        socket: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Print the BGP peer table of the running daemon.
    Status {
        /// The daemon's control socket (default: STARLING_CONTROL_SOCKET, else
        /// /var/run/calico/starling.sock).
        #[arg(long, value_name = "PATH", env = "STARLING_CONTROL_SOCKET")]
        socket: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CniCommand {
    /// Copy this binary to $CNI_BIN_DIR/starling and write $CNI_NETWORK_CONFIG to
    /// $CNI_NET_DIR/$CNI_CONF_NAME (the DaemonSet's init container).
    Install,
}

#[derive(Debug, Clone, Args)]
pub struct CrdsArgs {
    /// Write one file per CRD (crd.projectcalico.org_<plural>.yaml) into this directory
    /// instead of printing a multi-document stream.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LabCommand {
    #[command(flatten)]
    pub options: crate::lab::LabOptions,
    #[command(subcommand)]
    pub action: LabAction,
}

#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Start a private etcd, N node namespaces with one daemon each, and K pods per node;
    /// then print a summary.
    Up(crate::lab::UpArgs),
    /// Show nodes, daemon health, BGP sessions and pods.
    Status(crate::lab::verbs::StatusArgs),
    /// Make every pod ping every other pod; print the matrix and the loss (non-zero exit on loss).
    Ping,
    /// Stop everything the lab started and remove its namespaces and files (safe to repeat).
    Down,
    #[command(flatten)]
    More(crate::lab::verbs::LabVerb),
}
