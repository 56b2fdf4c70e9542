//! Watchers: one task per watched kind, each listing then watching its kind with no gap and
//! sending [`Update`]s into the state loop over one channel.
//!
//! Contract:
//! - The first message of a kind is a [`Update::Replace`] with its full content (in sync).
//! - A lost watch sends [`Update::OutOfSync`], reconnects with exponential backoff (100 ms
//!   doubling to 30 s) and relists; the relist is again one `Replace`, so deletions that happened
//!   while disconnected are applied and unchanged objects change nothing downstream.
//! - etcd: list at a revision, watch from revision + 1 (a compacted revision cancels the watch
//!   and forces a relist). Kubernetes: `kube::runtime::watcher`, which relists on 410 Gone.
//! - Invalid objects become absent, with one warning and `starling_resources_rejected_total`.
//! - Metrics: `starling_datastore_in_sync{kind}`, `_updates_total{kind}`, `_reconnects_total{kind}`.
//!
//! Pods (this node's, by `spec.nodeName`) and Secrets (the daemon's namespace) exist only in
//! the Kubernetes datastore; with etcd they are reported in sync and empty. WorkloadEndpoints
//! (all of the cluster's, keyed `namespace/name`) exist only in etcd; the Kubernetes datastore
//! reports them in sync and empty (its pods are the endpoints). Services and EndpointSlices
//! come from the Kubernetes API in both modes (see [`services`]), when there is one.

pub mod convert;
mod etcd;
mod kube;
pub mod services;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::datastore::AnyDatastore;
use crate::metrics::Metrics;
use convert::Conversion;
use starling_calc::state::{Kind, Update};

/// What every watcher task shares.
#[derive(Clone)]
pub struct SyncerContext {
    pub updates: mpsc::Sender<Update>,
    pub metrics: Metrics,
}

impl SyncerContext {
    async fn send(&self, update: Update) -> bool {
        self.updates.send(update).await.is_ok()
    }

    fn set_in_sync(&self, kind: Kind, in_sync: bool) {
        self.metrics
            .datastore_in_sync
            .with_label_values(&[kind.name()])
            .set(i64::from(in_sync));
    }

    fn count_update(&self, kind: Kind) {
        self.metrics
            .datastore_updates_total
            .with_label_values(&[kind.name()])
            .inc();
    }

    fn count_reconnect(&self, kind: Kind) {
        self.metrics
            .datastore_reconnects_total
            .with_label_values(&[kind.name()])
            .inc();
    }

    /// The update one conversion stands for (an invalid object is logged, counted, absent).
    fn to_update(&self, kind: Kind, conversion: Conversion) -> Update {
        match conversion {
            Conversion::Valid(key, resource) => Update::Put { key, resource },
            Conversion::Absent(key) => Update::Delete { kind, key },
            Conversion::Invalid(key, reason) => {
                self.reject(kind, &key, &reason);
                Update::Delete { kind, key }
            }
            Conversion::InvalidKept(key, reason, stand_in) => {
                self.reject(kind, &key, &reason);
                Update::Put {
                    key,
                    resource: stand_in,
                }
            }
        }
    }

    fn reject(&self, kind: Kind, key: &str, reason: &str) {
        tracing::warn!(kind = kind.name(), key, reason, "ignoring invalid resource");
        self.metrics
            .resources_rejected_total
            .with_label_values(&[kind.name()])
            .inc();
    }
}

/// Reports kinds the datastore does not have as in sync and empty (nothing to watch, nothing
/// missing).
fn report_empty(kinds: &[Kind], context: &SyncerContext) -> JoinHandle<()> {
    let kinds = kinds.to_vec();
    let context = context.clone();
    tokio::spawn(async move {
        for kind in kinds {
            context.set_in_sync(kind, true);
            let objects = std::collections::BTreeMap::new();
            if !context.send(Update::Replace { kind, objects }).await {
                return;
            }
        }
    })
}

/// Exponential reconnect delay.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    const INITIAL: Duration = Duration::from_millis(100);
    const MAXIMUM: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Backoff {
            next: Self::INITIAL,
        }
    }

    pub fn reset(&mut self) {
        self.next = Self::INITIAL;
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAXIMUM);
        delay
    }
}

/// The running watcher tasks; dropping or [`Syncer::stop`] ends them.
pub struct Syncer {
    tasks: Vec<JoinHandle<()>>,
}

impl Syncer {
    /// Starts one watcher per kind of [`Kind::ALL`] and of [`Kind::SERVICES`] (from
    /// `services_api`; in sync and empty without one).
    pub fn spawn(
        store: &AnyDatastore,
        services_api: Option<::kube::Client>,
        node_name: &str,
        namespace: &str,
        context: SyncerContext,
    ) -> Syncer {
        let mut tasks = services::spawn(services_api, node_name, &context);
        tasks.extend(match store {
            AnyDatastore::Kube(kube) => {
                kube::spawn_all(kube.client(), node_name, namespace, &context)
            }
            AnyDatastore::Etcd(etcd) => etcd::spawn_all(etcd, &context),
            AnyDatastore::Memory(_) => {
                // The in-memory store exists for unit tests of the allocator; it has no
                // gap-free watch, so the daemon cannot follow it.
                tracing::error!("the in-memory datastore cannot be watched by the daemon");
                Vec::new()
            }
        });
        Syncer { tasks }
    }

    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
        assert_eq!(backoff.next_delay(), Duration::from_millis(200));
        for _ in 0..20 {
            backoff.next_delay();
        }
        assert_eq!(backoff.next_delay(), Duration::from_secs(30));
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }
}
