//! The reconciler: read the kernel back, diff it against [`Desired`], apply the minimal change.
//!
//! Contract:
//! * Planning ([`plan_devices`], [`plan_objects`]) is pure: snapshot + desired → changes.
//! * Minimal: objects already right get no write, so a resync of an unchanged kernel writes
//!   nothing; wrong ones are replaced in place (routes keyed by destination and metric, so an
//!   adopted Felix/BIRD route is never absent); missing ones are created; stale ones deleted.
//! * Nothing stale is deleted until `desired.allow_deletions` (datastore in sync).
//! * Foreign objects are never written; a desired route whose key is held by a foreign route
//!   is reported as a conflict and left alone.
//! * Flush order: devices, then VXLAN neighbours/FDB, then routes, then stale routes, then
//!   stale neighbours/FDB, then stale devices. A route through a VXLAN device waits while the
//!   neighbour of its gateway failed to install.
//! * A failed item stays pending with exponential backoff; the rest of the batch proceeds.
//! * Routes on a workload interface first seen less than `workload_route_grace` (10 s) ago are
//!   not deleted yet, as in Felix: the CNI plugin adds a pod's route before the pod is known.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::kernel::{Change, ItemKey, Kernel, KernelError, LinkKind, Snapshot};
use super::ownership::{self, classify_route, is_vxlan_device};
use starling_calc::spec::{Desired, DeviceKind, NeighbourKey, RouteSpec, IPIP_DEVICE};

#[derive(Debug, Clone)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub maximum: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            maximum: Duration::from_secs(30),
        }
    }
}

impl BackoffPolicy {
    fn delay(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.maximum)
    }
}

#[derive(Debug, Clone)]
struct RetryState {
    attempts: u32,
    next_attempt: Instant,
}

/// What one reconcile pass did.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Writes attempted (successful or not).
    pub writes: usize,
    pub route_writes: usize,
    pub failures: Vec<(ItemKey, KernelError)>,
    /// Items skipped because their backoff has not expired (or a prerequisite failed).
    pub deferred: usize,
    /// Items waiting for a device that does not exist yet (e.g. a workload veth).
    pub waiting_for_device: usize,
    /// Desired routes whose (destination, metric) is held by a foreign route.
    pub conflicts: Vec<IpNet>,
    /// When the earliest pending item may be retried.
    pub next_retry: Option<Instant>,
}

impl ReconcileReport {
    pub fn converged(&self) -> bool {
        self.failures.is_empty() && self.deferred == 0
    }
}

/// The changes of one pass, by phase.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ObjectPlan {
    pub neighbours: Vec<Change>,
    pub routes: Vec<Change>,
    pub route_deletions: Vec<Change>,
    pub neighbour_deletions: Vec<Change>,
    pub device_deletions: Vec<Change>,
    pub conflicts: Vec<IpNet>,
    pub waiting_for_device: usize,
}

/// Felix's grace period: routes on a workload interface first seen less than this long ago
/// are not deleted (the CNI plugin installs a pod's route before the datastore shows the pod).
pub const DEFAULT_WORKLOAD_ROUTE_GRACE: Duration = Duration::from_secs(10);

/// Keeps retry state and when workload interfaces were first seen; otherwise stateless (a new
/// one on a correctly programmed kernel writes nothing).
#[derive(Debug)]
pub struct Reconciler {
    pending: BTreeMap<ItemKey, RetryState>,
    /// (name, index) of workload interfaces → first seen.
    first_seen: BTreeMap<(String, u32), Instant>,
    pub backoff: BackoffPolicy,
    pub workload_route_grace: Duration,
}

impl Default for Reconciler {
    fn default() -> Self {
        Reconciler::new(BackoffPolicy::default())
    }
}

impl Reconciler {
    pub fn new(backoff: BackoffPolicy) -> Self {
        Reconciler {
            pending: BTreeMap::new(),
            first_seen: BTreeMap::new(),
            backoff,
            workload_route_grace: DEFAULT_WORKLOAD_ROUTE_GRACE,
        }
    }

    /// Holds back deletions of routes on workload interfaces still in their grace period;
    /// returns when the earliest of them may go.
    fn hold_young_workload_routes(
        &mut self,
        desired: &Desired,
        snapshot: &Snapshot,
        deletions: &mut Vec<Change>,
        now: Instant,
        report: &mut ReconcileReport,
    ) -> Option<Instant> {
        let workload_links: BTreeSet<(String, u32)> = snapshot
            .links
            .iter()
            .filter(|link| desired.is_workload_interface(&link.name))
            .map(|link| (link.name.clone(), link.index))
            .collect();
        self.first_seen
            .retain(|key, _| workload_links.contains(key));
        for key in workload_links {
            self.first_seen.entry(key).or_insert(now);
        }
        let mut release_at: Option<Instant> = None;
        deletions.retain(|change| {
            let Change::DeleteRoute(RouteSpec {
                device: Some(device),
                ..
            }) = change
            else {
                return true;
            };
            let seen = self
                .first_seen
                .iter()
                .find(|((name, _), _)| name == device)
                .map(|(_, seen)| *seen);
            match seen {
                Some(seen) if seen + self.workload_route_grace > now => {
                    let at = seen + self.workload_route_grace;
                    release_at = Some(release_at.map_or(at, |earliest| earliest.min(at)));
                    report.deferred += 1;
                    false
                }
                _ => true,
            }
        });
        release_at
    }

    /// Items currently failing, with their attempt counts.
    pub fn pending(&self) -> impl Iterator<Item = (&ItemKey, u32)> {
        self.pending
            .iter()
            .map(|(key, state)| (key, state.attempts))
    }

    pub async fn reconcile<K: Kernel + Send>(
        &mut self,
        kernel: &mut K,
        desired: &Desired,
        now: Instant,
    ) -> Result<ReconcileReport, KernelError> {
        let mut report = ReconcileReport::default();
        let mut planned: BTreeSet<ItemKey> = BTreeSet::new();

        let mut snapshot = kernel.dump().await?;
        let device_changes = plan_devices(desired, &snapshot);
        if !device_changes.is_empty() {
            planned.extend(device_changes.iter().map(Change::key));
            self.apply_phase(kernel, device_changes, now, &mut report)
                .await;
            // Creating or recreating devices moves indexes and drops their objects.
            snapshot = kernel.dump().await?;
        }

        let plan = plan_objects(desired, &snapshot);
        report.conflicts = plan.conflicts.clone();
        report.waiting_for_device = plan.waiting_for_device;
        for phase in [
            &plan.neighbours,
            &plan.routes,
            &plan.route_deletions,
            &plan.neighbour_deletions,
            &plan.device_deletions,
        ] {
            planned.extend(phase.iter().map(Change::key));
        }

        let failed_neighbours = self
            .apply_phase(kernel, plan.neighbours, now, &mut report)
            .await;
        let (routes, blocked): (Vec<Change>, Vec<Change>) =
            plan.routes.into_iter().partition(|change| match change {
                Change::ReplaceRoute(spec) => !needs_failed_neighbour(spec, &failed_neighbours),
                _ => true,
            });
        report.deferred += blocked.len();
        self.apply_phase(kernel, routes, now, &mut report).await;
        let mut route_deletions = plan.route_deletions;
        let grace_ends = self.hold_young_workload_routes(
            desired,
            &snapshot,
            &mut route_deletions,
            now,
            &mut report,
        );
        self.apply_phase(kernel, route_deletions, now, &mut report)
            .await;
        self.apply_phase(kernel, plan.neighbour_deletions, now, &mut report)
            .await;
        self.apply_phase(kernel, plan.device_deletions, now, &mut report)
            .await;

        // Items no longer planned fixed themselves (or stopped being wanted).
        self.pending.retain(|key, _| planned.contains(key));
        report.next_retry = self
            .pending
            .values()
            .map(|state| state.next_attempt)
            .chain(grace_ends)
            .min();
        Ok(report)
    }

    /// Applies the changes whose backoff has expired; returns the keys that failed or waited.
    async fn apply_phase<K: Kernel + Send>(
        &mut self,
        kernel: &mut K,
        changes: Vec<Change>,
        now: Instant,
        report: &mut ReconcileReport,
    ) -> BTreeSet<ItemKey> {
        let mut unsuccessful = BTreeSet::new();
        let mut ready = Vec::with_capacity(changes.len());
        for change in changes {
            match self.pending.get(&change.key()) {
                Some(state) if state.next_attempt > now => {
                    report.deferred += 1;
                    unsuccessful.insert(change.key());
                }
                _ => ready.push(change),
            }
        }
        if ready.is_empty() {
            return unsuccessful;
        }
        let results = kernel.apply(&ready).await;
        for (index, change) in ready.iter().enumerate() {
            report.writes += 1;
            if change.is_route() {
                report.route_writes += 1;
            }
            let key = change.key();
            match results.get(index) {
                Some(Ok(())) => {
                    self.pending.remove(&key);
                }
                Some(Err(error)) => {
                    tracing::warn!(item = ?key, %error, "dataplane write failed; will retry");
                    self.record_failure(&key, now);
                    report.failures.push((key.clone(), error.clone()));
                    unsuccessful.insert(key);
                }
                None => {
                    let error = KernelError::Io {
                        operation: format!("{change:?}"),
                        message: "kernel implementation returned no result".to_string(),
                    };
                    self.record_failure(&key, now);
                    report.failures.push((key.clone(), error));
                    unsuccessful.insert(key);
                }
            }
        }
        unsuccessful
    }

    fn record_failure(&mut self, key: &ItemKey, now: Instant) {
        let attempts = self.pending.get(key).map_or(0, |state| state.attempts) + 1;
        let next_attempt = now + self.backoff.delay(attempts);
        self.pending.insert(
            key.clone(),
            RetryState {
                attempts,
                next_attempt,
            },
        );
    }
}

fn needs_failed_neighbour(route: &RouteSpec, failed: &BTreeSet<ItemKey>) -> bool {
    match (&route.device, route.gateway) {
        (Some(device), Some(gateway)) if is_vxlan_device(device) => {
            failed.contains(&ItemKey::Neighbour(device.clone(), gateway))
        }
        _ => false,
    }
}

/// Device creation, recreation (immutable VXLAN parameters differ), MTU/up fixes, addresses.
pub fn plan_devices(desired: &Desired, snapshot: &Snapshot) -> Vec<Change> {
    let mut changes = Vec::new();
    for spec in desired.devices.values() {
        let fresh = |changes: &mut Vec<Change>| {
            changes.push(Change::CreateDevice(spec.clone()));
            changes.push(Change::SetDevice {
                name: spec.name.clone(),
                mtu: spec.mtu,
                mac: None,
            });
            changes.push(Change::AddAddress {
                device: spec.name.clone(),
                address: spec.address,
            });
        };
        let Some(link) = snapshot.link(&spec.name) else {
            if let DeviceKind::Vxlan { parent, .. } = &spec.kind {
                if snapshot.link(parent).is_none() {
                    continue;
                }
            }
            fresh(&mut changes);
            continue;
        };
        let recreate = match (&spec.kind, &link.kind) {
            (
                DeviceKind::Vxlan {
                    vni,
                    port,
                    local,
                    parent,
                },
                LinkKind::Vxlan(existing),
            ) => {
                existing.vni != *vni
                    || existing.port != *port
                    || existing.local != Some(*local)
                    || existing.parent_index != snapshot.link(parent).map(|link| link.index)
                    || existing.learning
                    || link.mac != spec.mac
            }
            (DeviceKind::Vxlan { .. }, _) => true,
            // The fallback device cannot be recreated; use what is there.
            (DeviceKind::Ipip, _) => false,
        };
        if recreate {
            tracing::info!(device = %spec.name, "recreating device: an immutable parameter differs");
            changes.push(Change::DeleteDevice {
                name: spec.name.clone(),
            });
            fresh(&mut changes);
            continue;
        }
        if link.mtu != spec.mtu || !link.admin_up {
            changes.push(Change::SetDevice {
                name: spec.name.clone(),
                mtu: spec.mtu,
                mac: None,
            });
        }
        let family_v4 = spec.address.addr().is_ipv4();
        let mut present = false;
        for address in snapshot.addresses.iter().filter(|address| {
            address.device == spec.name
                && !address.link_scope
                && address.address.addr().is_ipv4() == family_v4
        }) {
            if address.address == spec.address {
                present = true;
            } else if desired.allow_deletions {
                changes.push(Change::DeleteAddress {
                    device: spec.name.clone(),
                    address: address.address,
                });
            }
        }
        if !present {
            changes.push(Change::AddAddress {
                device: spec.name.clone(),
                address: spec.address,
            });
        }
    }
    // IPIP off (or no tunnel address): tunl0 keeps no IPv4 address of ours.
    if desired.allow_deletions && !desired.devices.contains_key(IPIP_DEVICE) {
        for address in snapshot
            .addresses
            .iter()
            .filter(|address| address.device == IPIP_DEVICE && address.address.addr().is_ipv4())
        {
            changes.push(Change::DeleteAddress {
                device: IPIP_DEVICE.to_string(),
                address: address.address,
            });
        }
    }
    changes
}

/// Neighbours, FDB entries and routes, plus every stale object (when deletions are allowed).
pub fn plan_objects(desired: &Desired, snapshot: &Snapshot) -> ObjectPlan {
    let mut plan = ObjectPlan::default();
    let device_exists = |name: &str| snapshot.link(name).is_some();

    for (key, mac) in &desired.neighbours {
        let current = snapshot
            .neighbours
            .iter()
            .find(|neighbour| neighbour.device == key.device && neighbour.address == key.address);
        if current.is_some_and(|neighbour| neighbour.permanent && neighbour.mac == Some(*mac)) {
            continue;
        }
        if !device_exists(&key.device) {
            plan.waiting_for_device += 1;
            continue;
        }
        plan.neighbours.push(Change::ReplaceNeighbour {
            device: key.device.clone(),
            address: key.address,
            mac: *mac,
        });
    }
    for (key, destination) in &desired.fdb {
        let current = snapshot
            .fdb
            .iter()
            .find(|entry| entry.device == key.device && entry.mac == key.mac);
        if current.is_some_and(|entry| entry.permanent && entry.destination == Some(*destination)) {
            continue;
        }
        if !device_exists(&key.device) {
            plan.waiting_for_device += 1;
            continue;
        }
        plan.neighbours.push(Change::ReplaceFdb {
            device: key.device.clone(),
            mac: key.mac,
            destination: *destination,
        });
    }

    let mut kernel_routes: BTreeMap<IpNet, Vec<&RouteSpec>> = BTreeMap::new();
    for route in &snapshot.routes {
        kernel_routes
            .entry(route.destination)
            .or_default()
            .push(route);
    }
    for (destination, wanted) in &desired.routes {
        let same_key: Vec<&&RouteSpec> = kernel_routes
            .get(destination)
            .map(|routes| {
                routes
                    .iter()
                    .filter(|route| route.metric == wanted.spec.metric)
                    .collect()
            })
            .unwrap_or_default();
        if same_key
            .iter()
            .any(|route| super::kernel::route_matches(route, &wanted.spec))
        {
            continue;
        }
        if same_key
            .iter()
            .any(|route| !classify_route(route, desired).is_managed())
        {
            tracing::warn!(%destination, "a foreign route holds this destination; leaving it alone");
            plan.conflicts.push(*destination);
            continue;
        }
        if wanted
            .spec
            .device
            .as_deref()
            .is_some_and(|name| !device_exists(name))
        {
            plan.waiting_for_device += 1;
            continue;
        }
        plan.routes.push(Change::ReplaceRoute(wanted.spec.clone()));
    }

    if !desired.allow_deletions {
        return plan;
    }
    for route in &snapshot.routes {
        let wanted = desired
            .routes
            .get(&route.destination)
            .is_some_and(|wanted| wanted.spec.metric == route.metric);
        if !wanted && classify_route(route, desired).is_managed() {
            plan.route_deletions
                .push(Change::DeleteRoute(route.clone()));
        }
    }
    for neighbour in &snapshot.neighbours {
        let key = NeighbourKey {
            device: neighbour.device.clone(),
            address: neighbour.address,
        };
        if !desired.neighbours.contains_key(&key)
            && ownership::neighbour_is_managed(neighbour, desired)
        {
            plan.neighbour_deletions.push(Change::DeleteNeighbour {
                device: key.device,
                address: key.address,
            });
        }
    }
    for entry in &snapshot.fdb {
        let wanted = desired
            .fdb
            .keys()
            .any(|key| key.device == entry.device && key.mac == entry.mac);
        if !wanted && ownership::fdb_is_managed(entry) {
            plan.neighbour_deletions.push(Change::DeleteFdb {
                device: entry.device.clone(),
                mac: entry.mac,
                destination: entry.destination,
            });
        }
    }
    for link in &snapshot.links {
        if is_vxlan_device(&link.name) && !desired.devices.contains_key(&link.name) {
            plan.device_deletions.push(Change::DeleteDevice {
                name: link.name.clone(),
            });
        }
    }
    plan
}
