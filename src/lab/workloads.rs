//! The lab's Kubernetes-like objects: named pods (with labels, a service account and served
//! container ports), namespaces, `label` edits and `apply -f` / `delete -f`. The lab state is
//! their "API server" (`LabState::pods`, `LabState::namespaces`); what Calico's controllers
//! would derive from them goes to etcd through `controllers`.
//!
//! Contract: every verb holds the lab's state lock from loading the state to saving it, so
//! concurrent verbs do not lose each other's changes; a pod that fails half way (CNI ADD, its
//! endpoint, its servers) is taken down again and not recorded.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::controllers::{self, namespace_labels};
use super::labels::{LabelEdit, Labels};
use super::manifests::{self, Document};
use super::pods::{self, LabPod, DEFAULT_NAMESPACE};
use super::serve::{self, ServePort};
use super::{daemons, etcd, LabOptions, LabState};

/// How long `lab serve` may take to bind its ports.
const SERVE_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `change` on the lab's state under its lock and saves the state afterwards (also when
/// `change` fails: what it recorded before failing did happen).
pub fn with_state<T>(
    options: &LabOptions,
    change: impl FnOnce(&mut LabState) -> Result<T>,
) -> Result<T> {
    let state_dir = options.state_dir();
    let path = state_dir.join("state.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {} (is the lab up?)", path.display()))?;
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| anyhow::anyhow!("locking {}: {errno}", path.display()))?;
    let mut state = LabState::load(&state_dir)?;
    let outcome = change(&mut state);
    state.save(&state_dir)?;
    outcome
}

/// Kubernetes' DNS label (namespace names, the lab's pod names): 1-63 lower-case letters,
/// digits and `-`, beginning and ending alphanumeric.
pub fn check_dns_label(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        bail!("{what} {name:?} must be 1-63 lower-case letters, digits and '-', beginning and ending alphanumeric");
    }
    Ok(())
}

/// `NS/NAME` (or `NAME` in namespace `default`).
pub fn split_pod(text: &str) -> (&str, &str) {
    text.split_once('/').unwrap_or((DEFAULT_NAMESPACE, text))
}

fn find_pod<'a>(state: &'a mut LabState, target: &str) -> Result<&'a mut LabPod> {
    let (namespace, name) = split_pod(target);
    state
        .pods
        .iter_mut()
        .find(|pod| pod.pod_namespace == namespace && pod.name() == name)
        .with_context(|| format!("pods \"{name}\" not found in namespace {namespace:?}"))
}

/// What `lab pod add` makes.
#[derive(Debug, Clone, Default)]
pub struct PodRequest {
    pub namespace: String,
    pub name: String,
    pub node: Option<usize>,
    pub labels: Labels,
    pub service_account: Option<String>,
    /// Annotations the CNI plugin reads (e.g. `cni.projectcalico.org/floatingIPs`).
    pub annotations: Labels,
    pub serve: Vec<ServePort>,
}

/// The node with the fewest pods (the lowest-numbered on a tie).
fn least_loaded(state: &LabState) -> usize {
    (1..=state.nodes)
        .min_by_key(|node| state.pods.iter().filter(|pod| pod.node == *node).count())
        .unwrap_or(1)
}

/// `lab pod add`: wires the pod through CNI, records its labels, account and ports on its
/// WorkloadEndpoint, starts its servers; returns it.
pub fn add_pod(options: &LabOptions, request: &PodRequest) -> Result<LabPod> {
    super::require_root()?;
    let names = options.names()?;
    check_dns_label("namespace", &request.namespace)?;
    check_dns_label("pod name", &request.name)?;
    if let Some(account) = &request.service_account {
        check_dns_label("service account", account)?;
    }
    let state_dir = options.state_dir();
    with_state(options, |state| {
        if !state.has_namespace(&request.namespace) {
            bail!(
                "namespaces {:?} not found (create it first: starling lab namespace add {})",
                request.namespace,
                request.namespace
            );
        }
        if state
            .pods
            .iter()
            .any(|pod| pod.pod_namespace == request.namespace && pod.name() == request.name)
        {
            bail!(
                "pods {:?} already exists in namespace {:?}",
                request.name,
                request.namespace
            );
        }
        let node = request.node.unwrap_or_else(|| least_loaded(state));
        if node == 0 || node > state.nodes {
            bail!("--node {node}: the lab has nodes 1 to {}", state.nodes);
        }
        let mut pod = LabPod::named(&names, node, &request.namespace, &request.name);
        pod.labels = request.labels.clone();
        pod.service_account = request.service_account.clone();
        pod.annotations = request.annotations.clone();
        pod.ports = request.serve.clone();
        let mut pod = pods::wire(&names, &state_dir, &state.binary, pod)?;
        let finish = |pod: &mut LabPod| -> Result<()> {
            let mut objects = Vec::new();
            if let Some(account) = &pod.service_account {
                objects.push(controllers::service_account_profile(
                    &pod.pod_namespace,
                    account,
                )?);
            }
            controllers::put_objects(&names, &state.etcd_endpoints, objects)?;
            controllers::sync_endpoint(&names, &state.etcd_endpoints, pod)?;
            if !pod.ports.is_empty() {
                pod.server_pid = Some(serve::spawn(
                    &state.binary,
                    &pod.namespace,
                    &state_dir,
                    &pod.qualified(),
                    &pod.ports,
                    SERVE_READY_TIMEOUT,
                )?);
            }
            Ok(())
        };
        if let Err(error) = finish(&mut pod) {
            pods::delete(&names, &state_dir, &state.binary, &pod);
            return Err(error);
        }
        state.pods.push(pod.clone());
        Ok(pod)
    })
}

/// Stops a pod's servers, runs CNI DEL and removes its namespace.
pub fn remove_pod(options: &LabOptions, state: &LabState, pod: &LabPod) -> Result<()> {
    if let Some(pid) = pod.server_pid {
        daemons::stop(pid, Duration::from_secs(2));
    }
    pods::delete(&options.names()?, &options.state_dir(), &state.binary, pod);
    Ok(())
}

/// `lab pod delete NS/NAME`.
pub fn delete_pod(options: &LabOptions, target: &str) -> Result<LabPod> {
    super::require_root()?;
    with_state(options, |state| {
        let pod = find_pod(state, target)?.clone();
        remove_pod(options, state, &pod)?;
        state
            .pods
            .retain(|other| other.qualified() != pod.qualified());
        Ok(pod)
    })
}

/// Records namespace `name` with `labels` (plus its name label) and writes its profile; the
/// verdict as kubectl says it.
fn put_namespace(
    options: &LabOptions,
    state: &mut LabState,
    name: &str,
    labels: &Labels,
) -> Result<&'static str> {
    check_dns_label("namespace", name)?;
    let labels = namespace_labels(name, labels);
    let verdict = match state.namespaces.get(name) {
        None => "created",
        Some(old) if *old == labels => "unchanged",
        Some(_) => "configured",
    };
    let profile = controllers::namespace_profile(name, &labels)?;
    controllers::put_objects(&options.names()?, &state.etcd_endpoints, vec![profile])?;
    state.namespaces.insert(name.to_string(), labels);
    Ok(verdict)
}

/// `lab namespace add NAME`.
pub fn add_namespace(options: &LabOptions, name: &str, labels: &Labels) -> Result<()> {
    with_state(options, |state| {
        if state.has_namespace(name) {
            bail!("namespaces {name:?} already exists");
        }
        put_namespace(options, state, name, labels).map(drop)
    })
}

/// Removes namespace `name` and its profile; refused while it has pods.
fn remove_namespace(options: &LabOptions, state: &mut LabState, name: &str) -> Result<bool> {
    let pods: Vec<String> = state
        .pods
        .iter()
        .filter(|pod| pod.pod_namespace == name)
        .map(LabPod::qualified)
        .collect();
    if !pods.is_empty() {
        bail!(
            "namespace {name:?} still has pods: {} (delete them first)",
            pods.join(", ")
        );
    }
    let existed = state.namespaces.remove(name).is_some();
    let key = controllers::key("profiles", None, &format!("kns.{name}"));
    etcd::delete(&options.names()?, &state.etcd_endpoints, &key)?;
    Ok(existed)
}

/// `lab namespace delete NAME`.
pub fn delete_namespace(options: &LabOptions, name: &str) -> Result<()> {
    with_state(options, |state| {
        if remove_namespace(options, state, name)? {
            Ok(())
        } else {
            bail!("namespaces {name:?} not found")
        }
    })
}

/// What `lab label` edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelTarget {
    Pod,
    Namespace,
}

/// `lab label pod|namespace TARGET k=v k2- [--overwrite]`: kubectl's output line(s).
pub fn label(
    options: &LabOptions,
    target: LabelTarget,
    name: &str,
    changes: &[String],
    overwrite: bool,
) -> Result<String> {
    let edit = LabelEdit::parse(changes).map_err(anyhow::Error::msg)?;
    let names = options.names()?;
    with_state(options, |state| {
        let (current, reference) = match target {
            LabelTarget::Pod => {
                let pod = find_pod(state, name)?;
                (pod.labels.clone(), format!("pod/{}", pod.name()))
            }
            LabelTarget::Namespace => (
                state
                    .namespaces
                    .get(name)
                    .cloned()
                    .with_context(|| format!("namespaces {name:?} not found"))?,
                format!("namespace/{name}"),
            ),
        };
        let mut out = String::new();
        for key in edit.missing(&current) {
            out.push_str(&format!("label {key:?} not found.\n"));
        }
        let (next, verdict) = edit
            .apply(&current, overwrite)
            .map_err(anyhow::Error::msg)?;
        match target {
            LabelTarget::Pod => {
                let endpoints = state.etcd_endpoints.clone();
                let pod = find_pod(state, name)?;
                pod.labels = next;
                controllers::sync_endpoint(&names, &endpoints, pod)?;
            }
            LabelTarget::Namespace => {
                put_namespace(options, state, name, &next)?;
            }
        }
        out.push_str(&format!("{reference} {verdict}\n"));
        Ok(out)
    })
}

fn read_manifest(file: &PathBuf) -> Result<String> {
    if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the manifest from stdin")
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

/// `lab apply -f FILE`: kubectl's lines (`<kind>/<name> created|configured|unchanged`).
pub fn apply(options: &LabOptions, file: &PathBuf) -> Result<String> {
    let text = read_manifest(file)?;
    let documents =
        manifests::parse(&text).map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
    let names = options.names()?;
    with_state(options, |state| {
        // Every namespace a policy names must exist (or come earlier in the file) before
        // anything is written.
        let mut known: Vec<&str> = Vec::new();
        for document in &documents {
            match document {
                Document::Namespace { name, .. } => known.push(name),
                Document::Stored {
                    reference,
                    namespace: Some(namespace),
                    ..
                } if !state.has_namespace(namespace) && !known.contains(&namespace.as_str()) => {
                    bail!("{reference}: namespaces {namespace:?} not found");
                }
                Document::Stored { .. } => {}
            }
        }
        let mut out = String::new();
        for document in documents {
            match document {
                Document::Namespace { name, labels } => {
                    let verdict = put_namespace(options, state, &name, &labels)?;
                    out.push_str(&format!("namespace/{name} {verdict}\n"));
                }
                Document::Stored {
                    reference,
                    key,
                    value,
                    ..
                } => {
                    let stored = etcd::get(&names, &state.etcd_endpoints, &key)?;
                    let value = controllers::with_server_metadata(value, stored.as_ref());
                    let verdict = match &stored {
                        None => "created",
                        Some(old) if *old == value => "unchanged",
                        Some(_) => "configured",
                    };
                    etcd::put_all(&names, &state.etcd_endpoints, vec![(key, value)])?;
                    out.push_str(&format!("{reference} {verdict}\n"));
                }
            }
        }
        Ok(out)
    })
}

/// `lab delete -f FILE`: kubectl's lines, and whether everything named existed.
pub fn delete(options: &LabOptions, file: &PathBuf) -> Result<(String, bool)> {
    let text = read_manifest(file)?;
    let documents = manifests::parse_refs(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", file.display()))?;
    let names = options.names()?;
    with_state(options, |state| {
        let mut out = String::new();
        let mut all_found = true;
        for document in documents {
            let (reference, found) = match document {
                Document::Namespace { name, .. } => (
                    format!("namespace/{name}"),
                    remove_namespace(options, state, &name)?,
                ),
                Document::Stored { reference, key, .. } => (
                    reference,
                    etcd::delete(&names, &state.etcd_endpoints, &key)?,
                ),
            };
            if found {
                out.push_str(&format!("{reference} deleted\n"));
            } else {
                all_found = false;
                out.push_str(&format!("{reference} not found\n"));
            }
        }
        Ok((out, all_found))
    })
}
