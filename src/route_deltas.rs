//! The channel that carries learned-route changes from the BGP speaker to the dataplane,
//! bypassing the cluster-state computation: the speaker records per-prefix changes, the
//! dataplane takes whatever accumulated since its last step. Memory is bounded by the number of
//! distinct prefixes pending, never by the number of UPDATEs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;
use tokio::sync::Notify;

use starling_bgp::kernel::{DeltaBatch, LearnedRoute, RouteDeltas};

#[derive(Default)]
struct Shared {
    deltas: Mutex<RouteDeltas>,
    ready: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, RouteDeltas> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.deltas
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The speaker's end.
#[derive(Clone)]
pub struct DeltaSender {
    shared: Arc<Shared>,
}

/// The dataplane's end.
pub struct DeltaReceiver {
    shared: Arc<Shared>,
}

pub fn channel() -> (DeltaSender, DeltaReceiver) {
    let shared = Arc::new(Shared::default());
    (
        DeltaSender {
            shared: shared.clone(),
        },
        DeltaReceiver { shared },
    )
}

impl DeltaSender {
    /// Records changes (one lock and one wake-up for the whole set).
    pub fn send(&self, changes: impl IntoIterator<Item = (IpNet, Option<LearnedRoute>)>) {
        let mut any = false;
        {
            let mut deltas = self.shared.lock();
            for (prefix, route) in changes {
                deltas.set(prefix, route);
                any = true;
            }
        }
        if any {
            self.shared.ready.notify_one();
        }
    }
}

impl DeltaReceiver {
    /// Waits until changes are pending (at once if some are).
    pub async fn wait(&self) {
        let notified = self.shared.ready.notified();
        if !self.shared.lock().is_empty() {
            return;
        }
        notified.await;
    }

    /// Nothing is pending.
    pub fn is_idle(&self) -> bool {
        self.shared.lock().is_empty()
    }

    /// Everything pending, in prefix order.
    pub fn take(&self) -> DeltaBatch {
        self.shared.lock().take()
    }

    /// Applies what is pending to a table of learned routes; returns how many prefixes changed.
    pub fn apply_to(&self, table: &mut BTreeMap<IpNet, LearnedRoute>) -> usize {
        let batch = self.take();
        let count = batch.changes.len();
        for (prefix, route) in batch.changes {
            match route {
                Some(route) => table.insert(prefix, route),
                None => table.remove(&prefix),
            };
        }
        count
    }
}
