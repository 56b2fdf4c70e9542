//! The dataplane loop: reconcile when the desired state changes, when the monitor reports
//! drift, when a failed item's backoff expires, and on a periodic full resync.
//!
//! Contract: [`run`] owns the kernel connection and the reconciler; it reads the latest
//! [`Desired`] from a watch channel (intermediate versions may be skipped: only the newest
//! matters), publishes a [`DriverStatus`] after every pass, and returns when the desired-state
//! sender is dropped. Learned BGP routes arrive apart, as per-prefix deltas: the driver holds
//! the only learned table, writes each changed prefix's route at once (no recomputation, no
//! kernel dump), and merges the table into the desired routes for full passes. natOutgoing is re-applied when its sets change or on resync; floating IP NATs are diffed against
//! what is installed (read back on resync, so a correct ruleset costs no write); sysctls and
//! the MTU file are checked every pass and written only when different. All of it happens on
//! the calling task's thread, so run it on the thread that is in the target namespace.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::kernel::{Change, Kernel};
use super::reconcile::{BackoffPolicy, Reconciler};
use super::{floating, mtu, nat, sysctl};
use crate::route_deltas::DeltaReceiver;
use starling_bgp::kernel::{DeltaBatch, LearnedRoute};
use starling_calc::learned::learned_route_spec;
use starling_calc::spec::{Desired, NatSets, RouteSpec};

/// A burst of learned writes this large (a peer's full table arriving or leaving) leaves its
/// deltas, UPDATE buffers and netlink messages freed behind it; once the burst is drained the
/// heap is trimmed.
const TRIM_AFTER_WRITES: usize = 4096;

#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Full resync period (Felix `routeRefreshInterval`, 90 s).
    pub resync_interval: Duration,
    /// Wait after a drift kick so a burst of events makes one pass.
    pub debounce: Duration,
    pub backoff: BackoffPolicy,
    pub manage_nat: bool,
    /// Root of the sysctl tree (`/proc/sys`), or `None` to leave sysctls alone.
    pub sysctl_root: Option<PathBuf>,
    /// Where to write the pod MTU, or `None`.
    pub mtu_file: Option<PathBuf>,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            resync_interval: Duration::from_secs(90),
            debounce: Duration::from_millis(10),
            backoff: BackoffPolicy::default(),
            manage_nat: true,
            sysctl_root: Some(PathBuf::from(sysctl::PROC_SYS)),
            mtu_file: Some(PathBuf::from(mtu::MTU_FILE)),
        }
    }
}

/// Published after every pass.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DriverStatus {
    pub passes: u64,
    pub total_writes: u64,
    pub last_pass_writes: usize,
    pub converged: bool,
    pub last_error: Option<String>,
    /// Learned BGP routes held (and wanted in the kernel).
    pub learned_routes: usize,
    /// Delta batches applied, and the route writes they made.
    pub learned_batches: u64,
    pub learned_writes: u64,
    /// The desired state (as published, before learned routes are merged in) that the last
    /// full pass worked on, so a caller can tell that a state it published has been applied
    /// rather than wait for a pass that may never come.
    pub applied: Option<Arc<Desired>>,
}

impl std::fmt::Debug for DriverStatus {
    // The applied state is summarised: printed whole it buries the counters.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverStatus")
            .field("passes", &self.passes)
            .field("total_writes", &self.total_writes)
            .field("last_pass_writes", &self.last_pass_writes)
            .field("converged", &self.converged)
            .field("last_error", &self.last_error)
            .field("learned_routes", &self.learned_routes)
            .field("learned_batches", &self.learned_batches)
            .field("learned_writes", &self.learned_writes)
            .field(
                "applied_routes",
                &self.applied.as_ref().map(|desired| desired.routes.len()),
            )
            .finish()
    }
}

/// The desired state with the learned routes added where no cluster route holds the
/// destination (cluster routes always win, as in the computation).
fn with_learned(wanted: &Desired, learned: &BTreeMap<IpNet, LearnedRoute>) -> Desired {
    let mut merged = wanted.clone();
    for route in learned.values() {
        if let Some(route) = learned_route_spec(&wanted.learned_rules, route) {
            merged.routes.entry(route.spec.destination).or_insert(route);
        }
    }
    merged
}

/// The kernel route a learned route stands for, unless a cluster route holds its destination.
fn learned_spec(wanted: &Desired, route: Option<&LearnedRoute>) -> Option<RouteSpec> {
    let route = learned_route_spec(&wanted.learned_rules, route?)?;
    (!wanted.routes.contains_key(&route.spec.destination)).then_some(route.spec)
}

/// Updates the learned table and returns the writes the batch needs: one per prefix whose
/// kernel route changed, none for a change the kernel does not see.
pub fn learned_changes(
    wanted: &Desired,
    table: &mut BTreeMap<IpNet, LearnedRoute>,
    batch: DeltaBatch,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for (prefix, route) in batch.changes {
        let old = learned_spec(wanted, table.get(&prefix));
        let new = learned_spec(wanted, route.as_ref());
        match route {
            Some(route) => table.insert(prefix, route),
            None => table.remove(&prefix),
        };
        match (old, new) {
            (old, Some(new)) if old.as_ref() != Some(&new) => {
                changes.push(Change::ReplaceRoute(new))
            }
            (Some(old), None) => changes.push(Change::DeleteRoute(old)),
            _ => {}
        }
    }
    changes
}

async fn learned_ready(learned: Option<&DeltaReceiver>) {
    match learned {
        Some(receiver) => receiver.wait().await,
        None => std::future::pending().await,
    }
}

/// Runs until `desired` loses its sender.
pub async fn run<K: Kernel + Send>(
    mut kernel: K,
    mut desired: watch::Receiver<Arc<Desired>>,
    mut kicks: mpsc::Receiver<()>,
    learned: Option<DeltaReceiver>,
    options: DriverOptions,
    status: watch::Sender<DriverStatus>,
) {
    let mut writes_since_trim = 0usize;
    let mut learned_table: BTreeMap<IpNet, LearnedRoute> = BTreeMap::new();
    let mut full_pass = true;
    let mut retry_at: Option<Instant> = None;
    let mut reconciler = Reconciler::new(options.backoff.clone());
    let mut applied_nat: Option<NatSets> = None;
    // What the floating IP tables hold, as far as this loop knows; `None` means read them back.
    let mut floating_installed: Option<floating::Installed> = None;
    let mut written_mtu: Option<u32> = None;
    let mut next_resync = Instant::now() + options.resync_interval;
    let mut current = DriverStatus::default();
    let mut monitor_alive = true;
    loop {
        if !full_pass {
            let wake_at = retry_at.map_or(next_resync, |at| at.min(next_resync));
            tokio::select! {
                changed = desired.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    full_pass = true;
                }
                kick = kicks.recv(), if monitor_alive => {
                    if kick.is_some() {
                        tokio::time::sleep(options.debounce).await;
                        while kicks.try_recv().is_ok() {}
                        full_pass = true;
                    } else {
                        // Monitor gone: keep working on resync and desired changes only.
                        monitor_alive = false;
                    }
                }
                () = tokio::time::sleep_until(wake_at) => full_pass = true,
                () = learned_ready(learned.as_ref()) => {
                    let Some(receiver) = learned.as_ref() else { continue };
                    let wanted = desired.borrow().clone();
                    let changes = learned_changes(&wanted, &mut learned_table, receiver.take());
                    current.learned_batches += 1;
                    current.learned_routes = learned_table.len();
                    if !changes.is_empty() {
                        let results = kernel.apply(&changes).await;
                        let failed = results.iter().filter(|result| result.is_err()).count();
                        current.learned_writes += changes.len() as u64;
                        current.total_writes += changes.len() as u64;
                        writes_since_trim += changes.len();
                        if writes_since_trim >= TRIM_AFTER_WRITES && receiver.is_idle() {
                            super::release_freed_heap();
                            writes_since_trim = 0;
                        }
                        if failed > 0 {
                            // The next full pass compares the whole table and retries.
                            tracing::warn!(failed, "learned route writes failed; retrying in a full pass");
                            retry_at = Some(Instant::now() + options.backoff.initial);
                        }
                    }
                    status.send_replace(current.clone());
                }
            }
            continue;
        }
        full_pass = false;
        let published = desired.borrow_and_update().clone();
        let wanted = if learned_table.is_empty() {
            published.clone()
        } else {
            Arc::new(with_learned(&published, &learned_table))
        };
        let now = Instant::now();
        let resync = now >= next_resync;
        if resync {
            next_resync = now + options.resync_interval;
            applied_nat = None;
            floating_installed = None;
        }
        current.passes += 1;
        current.last_error = None;
        current.applied = Some(published);
        match reconciler
            .reconcile(&mut kernel, &wanted, now.into_std())
            .await
        {
            Ok(report) => {
                current.total_writes += report.writes as u64;
                current.last_pass_writes = report.writes;
                current.converged = report.converged();
                retry_at = report.next_retry.map(Instant::from_std);
            }
            Err(error) => {
                tracing::warn!(%error, "dataplane pass failed");
                current.converged = false;
                current.last_error = Some(error.to_string());
                retry_at = Some(now + options.backoff.initial);
            }
        }
        if options.manage_nat && applied_nat.as_ref() != Some(&wanted.nat) {
            match nat::apply(&wanted.nat) {
                Ok(()) => applied_nat = Some(wanted.nat.clone()),
                Err(error) => {
                    tracing::warn!(%error, "natOutgoing not applied");
                    current.converged = false;
                    current.last_error = Some(error.to_string());
                    retry_at = Some(retry_at.map_or(now + options.backoff.initial, |at| {
                        at.min(now + options.backoff.initial)
                    }));
                }
            }
        }
        if options.manage_nat {
            let installed = match floating_installed.take() {
                Some(installed) => Ok(installed),
                None => floating::read(),
            };
            match installed.and_then(|installed| floating::apply(&wanted.floating_ips, &installed))
            {
                Ok(writes) => {
                    current.total_writes += writes as u64;
                    floating_installed = Some(floating::Installed::after(&wanted.floating_ips));
                }
                Err(error) => {
                    tracing::warn!(%error, "floating IP NATs not applied");
                    current.converged = false;
                    current.last_error = Some(error.to_string());
                    retry_at = Some(retry_at.map_or(now + options.backoff.initial, |at| {
                        at.min(now + options.backoff.initial)
                    }));
                }
            }
        }
        if let Some(root) = &options.sysctl_root {
            let report = sysctl::apply(&wanted, root);
            current.total_writes += report.writes as u64;
        }
        if let Some(path) = &options.mtu_file {
            if written_mtu != Some(wanted.pod_mtu) {
                match mtu::write_mtu_file(path, wanted.pod_mtu) {
                    Ok(()) => written_mtu = Some(wanted.pod_mtu),
                    Err(error) => {
                        tracing::warn!(%error, path = %path.display(), "could not write the MTU file")
                    }
                }
            }
        }
        status.send_replace(current.clone());
    }
}
