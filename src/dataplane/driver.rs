//! The dataplane loop: reconcile when the desired state changes, when the monitor reports
//! drift, when a failed item's backoff expires, and on a periodic full resync.
//!
//! Contract: [`run`] owns the kernel connection and the reconciler; it reads the latest
//! [`Desired`] from a watch channel (intermediate versions may be skipped: only the newest
//! matters), publishes a [`DriverStatus`] after every pass, and returns when the desired-state
//! sender is dropped. natOutgoing is re-applied when its sets change or on resync; sysctls and
//! the MTU file are checked every pass and written only when different. All of it happens on
//! the calling task's thread, so run it on the thread that is in the target namespace.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::kernel::Kernel;
use super::reconcile::{BackoffPolicy, Reconciler};
use super::{mtu, nat, sysctl};
use starling_calc::spec::{Desired, NatSets};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverStatus {
    pub passes: u64,
    pub total_writes: u64,
    pub last_pass_writes: usize,
    pub converged: bool,
    pub last_error: Option<String>,
}

/// Runs until `desired` loses its sender.
pub async fn run<K: Kernel + Send>(
    mut kernel: K,
    mut desired: watch::Receiver<Arc<Desired>>,
    mut kicks: mpsc::Receiver<()>,
    options: DriverOptions,
    status: watch::Sender<DriverStatus>,
) {
    let mut reconciler = Reconciler::new(options.backoff.clone());
    let mut applied_nat: Option<NatSets> = None;
    let mut written_mtu: Option<u32> = None;
    let mut next_resync = Instant::now() + options.resync_interval;
    let mut current = DriverStatus::default();
    let mut monitor_alive = true;
    loop {
        let wanted = desired.borrow_and_update().clone();
        let now = Instant::now();
        let resync = now >= next_resync;
        if resync {
            next_resync = now + options.resync_interval;
            applied_nat = None;
        }
        let mut retry_at;
        current.passes += 1;
        current.last_error = None;
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

        let wake_at = retry_at.map_or(next_resync, |at| at.min(next_resync));
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            kick = kicks.recv(), if monitor_alive => {
                if kick.is_some() {
                    tokio::time::sleep(options.debounce).await;
                    while kicks.try_recv().is_ok() {}
                } else {
                    // Monitor gone: keep working on resync and desired changes only.
                    monitor_alive = false;
                }
            }
            () = tokio::time::sleep_until(wake_at) => {}
        }
    }
}
