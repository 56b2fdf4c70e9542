//! `starling lab explain SOURCE DESTINATION PROTO/PORT`: `starling policy explain` across the
//! lab. Each node polices only its own endpoints, so the source pod's node answers for its
//! egress and the destination pod's node for its ingress; the two answers are combined.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::daemons::NodeFiles;
use super::{LabOptions, LabState};
use crate::daemon::control::DaemonRequest;
use crate::policy::explain_view::{ExplainReply, ExplainView};

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// `NAMESPACE/POD` (or a pod's address).
    pub source: String,
    /// `NAMESPACE/POD` (or a pod's address).
    pub destination: String,
    /// `PROTO/PORT`, e.g. `TCP/80`.
    pub packet: String,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The node of a pod named `NS/NAME` (or `NAME` in `default`) or by its address.
fn node_of(state: &LabState, name: &str) -> Option<usize> {
    let qualified = if name.contains('/') || name.parse::<std::net::IpAddr>().is_ok() {
        name.to_string()
    } else {
        format!("default/{name}")
    };
    state
        .pods
        .iter()
        .find(|pod| {
            pod.qualified() == qualified
                || pod.address.is_some_and(|a| a.to_string() == name)
                || pod.address_v6.is_some_and(|a| a.to_string() == name)
        })
        .map(|pod| pod.node)
}

fn ask(options: &LabOptions, node: usize, args: &ExplainArgs) -> Result<ExplainView> {
    let socket = NodeFiles::new(&options.state_dir(), node).control_socket();
    let request = DaemonRequest::PolicyExplain {
        source: args.source.clone(),
        destination: args.destination.clone(),
        packet: args.packet.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply: ExplainReply = runtime
        .block_on(crate::control::call(
            &socket,
            &request,
            Duration::from_secs(10),
        ))
        .with_context(|| format!("asking node{node}'s daemon"))?;
    match reply {
        ExplainReply::Answer(view) => Ok(*view),
        ExplainReply::Error { error } => bail!("node{node}: {error}"),
    }
}

pub fn explain(options: &LabOptions, args: &ExplainArgs) -> Result<ExplainView> {
    let state = LabState::load(&options.state_dir())?;
    let source_node = node_of(&state, &args.source);
    let destination_node = node_of(&state, &args.destination);
    match (source_node, destination_node) {
        (None, None) => bail!(
            "neither {:?} nor {:?} is a pod of lab {:?}",
            args.source,
            args.destination,
            options.name
        ),
        (Some(node), None) | (None, Some(node)) => ask(options, node, args),
        (Some(source), Some(destination)) if source == destination => ask(options, source, args),
        (Some(source), Some(destination)) => Ok(ExplainView::combine(
            ask(options, source, args)?,
            ask(options, destination, args)?,
        )),
    }
}
