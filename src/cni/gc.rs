//! CNI GC (1.1.0): the runtime lists the attachments it still has
//! (`cni.dev/valid-attachments`); every address of this network on this node whose handle names
//! another container is released, and the host-side veths of pods left with no address go too.
//!
//! - **Which allocations** ([`plan`], run by the daemon over its blocks and by the test
//!   allocator over its table, so both follow one rule): a handle is this network's when it is
//!   `<network>.<containerID>` with no further dot in the container ID (so network `a` never
//!   collects network `a.b`'s handles; runtimes use hex IDs), and this node's when every one of
//!   its allocations carries `node=<this node>`, or no node attribute in a block affine to this
//!   node. Another node's pod borrowing an address from our block is never touched.
//! - **Grace**: allocations younger than `gc_grace_seconds` (config, default
//!   [`DEFAULT_GRACE_SECONDS`]) stay: an ADD may be between its assignment and the runtime
//!   recording the sandbox in the list it hands GC.
//! - **Veths**: host-side names come from the pod (`veth_name`), so a recreated pod (new
//!   container) has the old sandbox's name. A veth goes only when its pod holds no other address
//!   on this node, and [`PodDataplane::remove_leftover`] also keeps one that routes an address GC
//!   did not release (a new sandbox wired in the meantime).
//! - **Errors**: as the specification asks, GC goes on past a failure and reports them all at
//!   the end; a daemon that cannot be reached is code 11, as for DEL.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDateTime, Utc};
use ipnet::IpNet;

use super::backend::IpamBackend;
use super::config::NetworkConfig;
use super::ipam_protocol::{GcRequest, IpamRequest, IpamResponse, PodRef, StalePod};
use super::plugin::HostSettings;
use super::result::{code, CniError};
use super::wiring::{Leftover, PodDataplane};
use starling_calc::spec::veth_name;

/// How young an allocation GC leaves alone when the config does not say.
pub const DEFAULT_GRACE_SECONDS: u64 = 60;

/// One allocation as GC sees it.
#[derive(Debug, Clone, Copy)]
pub struct Allocation<'a> {
    pub handle: &'a str,
    /// The allocation's attributes (`node`, `namespace`, `pod`, `timestamp`).
    pub attributes: &'a BTreeMap<String, String>,
    /// The node the allocation's block is affine to, if any.
    pub block_host: Option<&'a str>,
}

/// What GC will do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Stale handles of the network on this node, with the pod their attributes name.
    pub stale: BTreeMap<String, Option<PodRef>>,
    /// Pods that keep an address on this node (any network): their veths stay.
    pub kept_pods: BTreeSet<PodRef>,
}

#[derive(Default)]
struct HandleFacts {
    ours: bool,
    foreign: bool,
    young: bool,
    pod: Option<PodRef>,
}

/// The container ID of `handle` when it is one of `network`'s handles.
pub fn container_of<'a>(network: &str, handle: &'a str) -> Option<&'a str> {
    let container = handle.strip_prefix(network)?.strip_prefix('.')?;
    (!container.is_empty() && !container.contains('.')).then_some(container)
}

/// Calico's allocation timestamp (`2024-01-02 15:04:05.123 +0000 UTC`).
fn assigned_at(attributes: &BTreeMap<String, String>) -> Option<DateTime<Utc>> {
    let text = attributes.get(starling_ipam::block::ATTRIBUTE_TIMESTAMP)?;
    let text = text.trim().strip_suffix(" +0000 UTC")?;
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// Sorts this node's allocations into stale handles of the request's network and pods that
/// keep an address.
pub fn plan<'a>(
    request: &GcRequest,
    host: &str,
    now: DateTime<Utc>,
    allocations: impl IntoIterator<Item = Allocation<'a>>,
) -> Plan {
    use starling_ipam::block::{ATTRIBUTE_NAMESPACE, ATTRIBUTE_NODE, ATTRIBUTE_POD};
    let valid: BTreeSet<&str> = request.valid_handles.iter().map(String::as_str).collect();
    let grace = chrono::Duration::seconds(i64::try_from(request.grace_seconds).unwrap_or(i64::MAX));
    let mut handles: BTreeMap<&str, HandleFacts> = BTreeMap::new();
    for allocation in allocations {
        let facts = handles.entry(allocation.handle).or_default();
        let ours = match allocation.attributes.get(ATTRIBUTE_NODE) {
            Some(node) => node == host,
            None => allocation.block_host == Some(host),
        };
        if !ours {
            facts.foreign = true;
            continue;
        }
        facts.ours = true;
        // No readable timestamp: an old or foreign allocation, never one being made now.
        if assigned_at(allocation.attributes).is_some_and(|at| now - at < grace) {
            facts.young = true;
        }
        if let (Some(namespace), Some(name)) = (
            allocation.attributes.get(ATTRIBUTE_NAMESPACE),
            allocation.attributes.get(ATTRIBUTE_POD),
        ) {
            facts.pod = Some(PodRef {
                namespace: namespace.clone(),
                name: name.clone(),
            });
        }
    }
    let mut plan = Plan::default();
    for (handle, facts) in handles {
        if !facts.ours {
            continue;
        }
        let stale = container_of(&request.network_name, handle).is_some()
            && !valid.contains(handle)
            && !facts.foreign
            && !facts.young;
        if stale {
            plan.stale.insert(handle.to_string(), facts.pod);
        } else if let Some(pod) = facts.pod {
            plan.kept_pods.insert(pod);
        }
    }
    plan
}

impl Plan {
    /// Pods of the released handles that keep nothing on this node, with what was released.
    pub fn stale_pods(&self, released: &[(String, Vec<IpNet>)]) -> Vec<StalePod> {
        let mut pods: BTreeMap<&PodRef, Vec<IpNet>> = BTreeMap::new();
        for (handle, addresses) in released {
            if let Some(Some(pod)) = self.stale.get(handle) {
                if !self.kept_pods.contains(pod) {
                    pods.entry(pod).or_default().extend(addresses);
                }
            }
        }
        pods.into_iter()
            .map(|(pod, addresses)| StalePod {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                addresses,
            })
            .collect()
    }
}

/// The GC command.
pub async fn garbage_collect(
    config: &NetworkConfig,
    settings: &HostSettings,
    ipam: &impl IpamBackend,
    dataplane: &impl PodDataplane,
) -> Result<(), CniError> {
    let valid = config.valid_attachments()?;
    let request = GcRequest {
        network_name: config.name.clone(),
        valid_handles: valid
            .iter()
            .map(|attachment| format!("{}.{}", config.name, attachment.container_id))
            .collect(),
        grace_seconds: config.gc_grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS),
    };
    let action = format!("garbage-collecting network {}", config.name);
    let (released, stale_pods, mut problems) =
        match ipam.exchange(IpamRequest::GarbageCollect(request)).await? {
            IpamResponse::GarbageCollected {
                released,
                stale_pods,
                problems,
            } => (released, stale_pods, problems),
            IpamResponse::Error(error) => return Err(error.to_cni_error(&action)),
            other => {
                return Err(CniError::new(
                    code::IPAM_INTERNAL,
                    format!("{action}: the daemon gave an unexpected answer"),
                    format!("{other:?}"),
                ))
            }
        };
    // The daemon's problems are IPAM ones; what follows are the veths'.
    let ipam_problems = problems.len();
    for handle in &released {
        tracing::info!(handle = %handle.handle, addresses = ?handle.addresses, "GC released a stale allocation");
    }
    for pod in &stale_pods {
        let interface = veth_name(&settings.interface_prefix, &pod.namespace, &pod.name);
        let addresses: Vec<_> = pod.addresses.iter().map(IpNet::addr).collect();
        match dataplane.remove_leftover(&interface, &addresses).await {
            Ok(Leftover::Removed) => {
                tracing::info!(%interface, pod = %format!("{}/{}", pod.namespace, pod.name), "GC removed a leftover host veth");
            }
            Ok(Leftover::Absent) => {}
            Ok(Leftover::InUse(routed)) => {
                tracing::info!(%interface, ?routed, "GC kept a host veth that routes addresses it did not release");
            }
            Err(error) => problems.push(format!(
                "removing the host veth {interface} of pod {}/{}: {error}",
                pod.namespace, pod.name
            )),
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let code = if ipam_problems > 0 {
        code::IPAM_INTERNAL
    } else {
        code::WIRING_FAILED
    };
    Err(CniError::new(
        code,
        format!(
            "{action}: {} of the stale resources could not be removed (released {} handles)",
            problems.len(),
            released.len()
        ),
        problems.join("; "),
    ))
}
