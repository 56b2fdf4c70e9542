//! The lab's policy verbs on the command line (`pod`, `namespace`, `label`, `apply`, `delete`,
//! `probe`, the hidden `serve`) and `status --json`: argument types and one dispatch function,
//! so `cli.rs` and `main.rs` only gain a line each.
//!
//! `lab pod add` names the pod with `--name`, so there the lab is chosen with `--lab` (every
//! other verb takes the lab's `--name` as `lab up` does).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use super::labels::{self, Labels};
use super::serve::{self, Protocol, ServePort};
use super::topology::node_name;
use super::workloads::{self, LabelTarget, PodRequest};
use super::{daemons, probe, LabOptions, LabState};

/// The verbs, flattened into `starling lab`'s subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum LabVerb {
    /// Add or delete a named pod (labels, served ports; made through the CNI plugin).
    #[command(subcommand)]
    Pod(PodCommand),
    /// Add or delete a namespace (written as Calico's kns.<ns> profile).
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Change labels of a pod or namespace, with kubectl's syntax: k=v sets, k- removes.
    #[command(subcommand)]
    Label(LabelCommand),
    /// Write the objects of a YAML file to the lab's etcd as Calico's controllers would
    /// (networking.k8s.io/v1 NetworkPolicy; projectcalico.org/v3 NetworkPolicy,
    /// GlobalNetworkPolicy, Tier; v1 Namespace).
    Apply(FileArgs),
    /// Delete the objects a YAML file names (non-zero exit when one did not exist).
    Delete(FileArgs),
    /// Every pod connects to every other pod on one protocol and port; prints the matrix.
    Probe(ProbeArgs),
    /// Why one pod may or may not reach another: the verdict and the tier, policy and rule that
    /// decided, from the daemons of the two pods' nodes.
    Explain(super::explain::ExplainArgs),
    /// Serve ports inside a pod's namespace (run by `lab pod add --serve`).
    #[command(hide = true)]
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Subcommand)]
pub enum PodCommand {
    /// Create a pod: `--namespace x --name a --labels pod=a --serve serve-80-tcp=tcp/80`.
    Add(PodAddArgs),
    /// Delete pod NS/NAME (stops its servers, runs CNI DEL).
    Delete {
        /// NS/NAME (or NAME in namespace default).
        pod: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct PodAddArgs {
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The pod's name (a DNS label).
    #[arg(long)]
    pub name: String,
    /// The lab (here `--name` is the pod's).
    #[arg(long, default_value = "lab")]
    pub lab: String,
    /// The node (1-based); default: the one with the fewest pods.
    #[arg(long)]
    pub node: Option<usize>,
    /// k=v,k2=v2
    #[arg(long, value_parser = labels::parse_list, default_value = "")]
    pub labels: Labels,
    #[arg(long)]
    pub service_account: Option<String>,
    /// KEY=VALUE, repeatable: a pod annotation the CNI plugin reads, e.g.
    /// `cni.projectcalico.org/floatingIPs=["10.244.250.1"]` (the value may hold commas).
    #[arg(long = "annotation", value_parser = parse_annotation)]
    pub annotations: Vec<(String, String)>,
    /// [NAME=]PROTO/PORT,...: ports the pod serves (tcp, udp, sctp); NAME is the named
    /// container port.
    #[arg(long, default_value = "")]
    pub serve: String,
}

/// `KEY=VALUE` of `--annotation`: split at the first `=`; the key is a qualified name, as the
/// API server requires of annotation keys.
fn parse_annotation(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("invalid annotation {text:?} (want KEY=VALUE)"))?;
    if !starling_policy::k8s::is_label_key(key) {
        return Err(format!(
            "invalid annotation key {key:?}: a qualified name is [prefix/]name"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// The `--annotation` list as a map; a key given twice is an error naming it.
fn annotation_map(list: Vec<(String, String)>) -> Result<Labels> {
    let mut annotations = Labels::new();
    for (key, value) in list {
        if annotations.insert(key.clone(), value).is_some() {
            bail!("--annotation {key:?} is given twice");
        }
    }
    Ok(annotations)
}

#[derive(Debug, Clone, Subcommand)]
pub enum NamespaceCommand {
    /// Create a namespace (`kubernetes.io/metadata.name` is set automatically).
    Add {
        namespace: String,
        /// k=v,k2=v2
        #[arg(long, value_parser = labels::parse_list, default_value = "")]
        labels: Labels,
    },
    /// Delete an empty namespace and its profile.
    Delete { namespace: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum LabelCommand {
    /// `label pod NS/NAME k=v k2- [--overwrite]`
    Pod(LabelArgs),
    /// `label namespace NS k=v k2- [--overwrite]`
    Namespace(LabelArgs),
}

#[derive(Debug, Clone, Args)]
pub struct LabelArgs {
    pub target: String,
    /// k=v to set, k- to remove.
    #[arg(required = true)]
    pub changes: Vec<String>,
    /// Replace existing values.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Clone, Args)]
pub struct FileArgs {
    /// The YAML file (`-` for stdin).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    #[arg(long, value_parser = parse_protocol)]
    pub protocol: Protocol,
    #[arg(long)]
    pub port: u16,
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    /// Print {"probe":..,"pods":[..],"reachable":{..}} instead of the matrix.
    #[arg(long)]
    pub json: bool,
}

fn parse_protocol(text: &str) -> Result<Protocol, String> {
    text.parse()
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Written once every port is bound.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// [NAME=]PROTO/PORT
    #[arg(required = true)]
    pub ports: Vec<ServePort>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct StatusArgs {
    /// Print nodes, namespaces and pods (namespace, name, node, addresses, labels) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a verb; prints its output; `Ok(false)` for a non-zero exit without an error.
pub fn run(options: &LabOptions, verb: LabVerb) -> Result<bool> {
    match verb {
        LabVerb::Pod(PodCommand::Add(args)) => {
            let options = LabOptions {
                name: args.lab.clone(),
                state_dir: options.state_dir.clone(),
            };
            let pod = workloads::add_pod(
                &options,
                &PodRequest {
                    namespace: args.namespace,
                    name: args.name,
                    node: args.node,
                    labels: args.labels,
                    service_account: args.service_account,
                    annotations: annotation_map(args.annotations)?,
                    serve: serve::parse_list(&args.serve)
                        .map_err(|error| anyhow::anyhow!("--serve: {error}"))?,
                },
            )?;
            println!(
                "pod/{} created on {} with address {}",
                pod.name(),
                node_name(pod.node),
                pod.addresses_text()
            );
        }
        LabVerb::Pod(PodCommand::Delete { pod }) => {
            let pod = workloads::delete_pod(options, &pod)?;
            println!("pod/{} deleted", pod.name());
        }
        LabVerb::Namespace(NamespaceCommand::Add { namespace, labels }) => {
            workloads::add_namespace(options, &namespace, &labels)?;
            println!("namespace/{namespace} created");
        }
        LabVerb::Namespace(NamespaceCommand::Delete { namespace }) => {
            workloads::delete_namespace(options, &namespace)?;
            println!("namespace/{namespace} deleted");
        }
        LabVerb::Label(command) => {
            let (target, args) = match command {
                LabelCommand::Pod(args) => (LabelTarget::Pod, args),
                LabelCommand::Namespace(args) => (LabelTarget::Namespace, args),
            };
            let out =
                workloads::label(options, target, &args.target, &args.changes, args.overwrite)?;
            print!("{out}");
        }
        LabVerb::Apply(args) => print!("{}", workloads::apply(options, &args.file)?),
        LabVerb::Delete(args) => {
            let (out, all_found) = workloads::delete(options, &args.file)?;
            print!("{out}");
            return Ok(all_found);
        }
        LabVerb::Probe(args) => {
            let matrix = probe_matrix(options, args.protocol, args.port, args.timeout_ms)?;
            if args.json {
                println!("{}", serde_json::to_string(&matrix)?);
            } else {
                print!("{}", matrix.render());
            }
        }
        LabVerb::Explain(args) => {
            let view = super::explain::explain(options, &args)?;
            if args.json {
                println!("{}", serde_json::to_string(&view)?);
            } else {
                print!("{}", view.text);
            }
        }
        LabVerb::Serve(args) => serve::run(&args.ports, args.ready_file.as_deref())?,
    }
    Ok(true)
}

/// `lab probe`: the matrix of one protocol and port over every pod of the lab.
pub fn probe_matrix(
    options: &LabOptions,
    protocol: Protocol,
    port: u16,
    timeout_ms: u64,
) -> Result<probe::ProbeMatrix> {
    let state = LabState::load(&options.state_dir())?;
    if state.pods.len() < 2 {
        bail!("the lab has fewer than two pods");
    }
    if port == 0 {
        bail!("--port must be 1-65535");
    }
    if protocol == Protocol::Sctp {
        // Fail clearly rather than print a matrix of failures when the kernel has no SCTP.
        serve::sctp_socket()?;
    }
    Ok(probe::matrix(
        &state.pods,
        protocol,
        port,
        Duration::from_millis(timeout_ms),
    ))
}

/// `lab status --json`.
pub fn status_json(options: &LabOptions) -> Result<serde_json::Value> {
    let names = options.names()?;
    let state = LabState::load(&options.state_dir())?;
    let nodes: Vec<serde_json::Value> = (1..=state.nodes)
        .map(|index| {
            let running = state
                .daemon_pids
                .get(index - 1)
                .is_some_and(|pid| daemons::alive(*pid));
            json!({
                "name": node_name(index),
                "address": state.node_address(index).to_string(),
                "addressV6": state.node_address_v6(index).map(|a| a.to_string()),
                "running": running,
                "ready": running && daemons::ready(&names, index).unwrap_or(false),
            })
        })
        .collect();
    let pods: Vec<serde_json::Value> = state
        .pods
        .iter()
        .map(|pod| {
            json!({
                "namespace": pod.pod_namespace,
                "name": pod.name(),
                "node": node_name(pod.node),
                "addresses": pod
                    .address
                    .iter()
                    .map(ToString::to_string)
                    .chain(pod.address_v6.iter().map(ToString::to_string))
                    .collect::<Vec<_>>(),
                "labels": pod.labels,
                "annotations": pod.annotations,
                "serviceAccount": pod.service_account,
                "ports": pod.ports,
                "netns": pod.namespace,
            })
        })
        .collect();
    Ok(json!({
        "name": state.name,
        "mode": state.mode,
        "ipv6": state.ipv6,
        "nodes": nodes,
        "namespaces": state.namespaces,
        "pods": pods,
    }))
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command, LabAction};
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|error| panic!("{args:?}: {error}"))
    }

    #[test]
    fn pod_add_names_the_pod_with_name_and_the_lab_with_lab() {
        let cli = parse(&[
            "starling",
            "lab",
            "pod",
            "add",
            "--namespace",
            "x",
            "--name",
            "a",
            "--lab",
            "t1",
            "--labels",
            "pod=a",
            "--serve",
            "serve-80-tcp=tcp/80,udp/81",
            "--annotation",
            r#"cni.projectcalico.org/floatingIPs=["10.244.250.1","10.244.250.2"]"#,
            "--annotation",
            "example.com/note=a=b",
        ]);
        let Command::Lab(lab) = cli.command else {
            panic!("not a lab command")
        };
        let LabAction::More(LabVerb::Pod(PodCommand::Add(args))) = lab.action else {
            panic!("not pod add")
        };
        assert_eq!((args.namespace.as_str(), args.name.as_str()), ("x", "a"));
        assert_eq!(args.lab, "t1");
        assert_eq!(args.labels.get("pod").map(String::as_str), Some("a"));
        assert_eq!(serve::parse_list(&args.serve).unwrap().len(), 2);
        let annotations = annotation_map(args.annotations.clone()).unwrap();
        assert_eq!(
            annotations
                .get("cni.projectcalico.org/floatingIPs")
                .map(String::as_str),
            Some(r#"["10.244.250.1","10.244.250.2"]"#)
        );
        assert_eq!(
            annotations.get("example.com/note").map(String::as_str),
            Some("a=b")
        );
        assert!(annotation_map([args.annotations.clone(), args.annotations].concat()).is_err());
        for bad in ["novalue", "-bad=x"] {
            assert!(
                Cli::try_parse_from([
                    "starling",
                    "lab",
                    "pod",
                    "add",
                    "--name",
                    "a",
                    "--annotation",
                    bad
                ])
                .is_err(),
                "{bad}"
            );
        }
        assert!(Cli::try_parse_from(["starling", "lab", "pod", "add", "--labels", "x"]).is_err());
    }

    #[test]
    fn other_verbs_take_the_lab_name() {
        let cli = parse(&[
            "starling",
            "lab",
            "label",
            "pod",
            "x/a",
            "pod=b",
            "old-",
            "--overwrite",
            "--name",
            "t2",
        ]);
        let Command::Lab(lab) = cli.command else {
            panic!("not a lab command")
        };
        assert_eq!(lab.options.name, "t2");
        let LabAction::More(LabVerb::Label(LabelCommand::Pod(args))) = lab.action else {
            panic!("not label pod")
        };
        assert_eq!(args.changes, vec!["pod=b", "old-"]);
        assert!(args.overwrite);
        let cli = parse(&[
            "starling",
            "lab",
            "probe",
            "--protocol",
            "udp",
            "--port",
            "81",
            "--json",
            "--name",
            "t3",
        ]);
        let Command::Lab(lab) = cli.command else {
            panic!("not a lab command")
        };
        assert_eq!(lab.options.name, "t3");
        let LabAction::More(LabVerb::Probe(args)) = lab.action else {
            panic!("not probe")
        };
        assert_eq!(
            (args.protocol, args.port, args.timeout_ms),
            (Protocol::Udp, 81, 1000)
        );
        parse(&["starling", "lab", "apply", "-f", "p.yaml", "--name", "t4"]);
        parse(&["starling", "lab", "status", "--json", "--name", "t4"]);
        parse(&[
            "starling",
            "lab",
            "namespace",
            "add",
            "x",
            "--labels",
            "ns=x",
        ]);
        assert!(Cli::try_parse_from([
            "starling",
            "lab",
            "namespace",
            "add",
            "x",
            "--labels",
            "-x=1"
        ])
        .is_err());
    }
}
