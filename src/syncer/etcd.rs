//! etcd watchers: list under the kind's prefix at a revision, then watch from revision + 1.

use std::collections::BTreeMap;

use futures::StreamExt;
use tokio::task::JoinHandle;

use super::convert::{self, Conversion, WatchedKind};
use super::{Backoff, SyncerContext};
use crate::datastore::etcd::{EtcdStore, RawEvent};
use crate::resources::{BGPConfiguration, BGPFilter, BGPPeer, FelixConfiguration, IPPool};
use starling_calc::state::{Kind, Update};
use starling_ipam::block::Block;
use starling_ipam::records::{Affinity, IpamConfig, Reservation};

type Decode = fn(&str, &[u8]) -> Option<Conversion>;

fn watched<K: WatchedKind>() -> (Kind, String, Decode) {
    (
        K::KIND,
        K::etcd_prefix().to_string(),
        convert::from_etcd::<K>,
    )
}

pub(super) fn spawn_all(store: &EtcdStore, context: &SyncerContext) -> Vec<JoinHandle<()>> {
    let kinds = [
        watched::<IPPool>(),
        watched::<Block>(),
        watched::<Affinity>(),
        (
            Kind::Node,
            convert::NODE_PREFIX.to_string(),
            convert::node_from_etcd as Decode,
        ),
        watched::<BGPConfiguration>(),
        watched::<BGPPeer>(),
        watched::<BGPFilter>(),
        watched::<Reservation>(),
        watched::<FelixConfiguration>(),
        watched::<IpamConfig>(),
    ];
    let mut tasks: Vec<JoinHandle<()>> = kinds
        .into_iter()
        .map(|(kind, prefix, decode)| {
            tokio::spawn(watch_kind(
                store.clone(),
                kind,
                prefix,
                decode,
                context.clone(),
            ))
        })
        .collect();
    tasks.push(tokio::spawn(watch_kind(
        store.clone(),
        Kind::WorkloadEndpoint,
        convert::WORKLOAD_ENDPOINT_PREFIX.to_string(),
        convert::workload_endpoint_from_etcd as Decode,
        context.clone(),
    )));
    // Kubernetes-only kinds: nothing to watch, nothing missing.
    tasks.push(super::report_empty(&[Kind::Pod, Kind::Secret], context));
    tasks
}

/// The state key of an etcd path: the part after the kind's prefix, which is the object name for
/// named kinds (so `state.node("n1")` finds the same object on either datastore).
fn state_key(prefix: &str, path: &str) -> String {
    path.strip_prefix(prefix).unwrap_or(path).to_string()
}

fn rekey(prefix: &str, conversion: Conversion) -> Conversion {
    match conversion {
        Conversion::Valid(key, resource) => Conversion::Valid(state_key(prefix, &key), resource),
        Conversion::Invalid(key, reason) => Conversion::Invalid(state_key(prefix, &key), reason),
        Conversion::InvalidKept(key, reason, stand_in) => {
            Conversion::InvalidKept(state_key(prefix, &key), reason, stand_in)
        }
        Conversion::Absent(key) => Conversion::Absent(state_key(prefix, &key)),
    }
}

async fn watch_kind(
    store: EtcdStore,
    kind: Kind,
    prefix: String,
    decode: Decode,
    context: SyncerContext,
) {
    let mut backoff = Backoff::new();
    let mut first = true;
    loop {
        if !first {
            context.count_reconnect(kind);
            tokio::time::sleep(backoff.next_delay()).await;
        }
        first = false;
        let (items, revision) = match store.list_raw_at(&prefix).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(kind = kind.name(), %error, "listing failed; retrying");
                context.set_in_sync(kind, false);
                if !context.send(Update::OutOfSync { kind }).await {
                    return;
                }
                continue;
            }
        };
        let mut objects = BTreeMap::new();
        for (path, bytes) in &items {
            match decode(path, bytes).map(|c| rekey(&prefix, c)) {
                Some(Conversion::Valid(key, resource)) => {
                    objects.insert(key, *resource);
                }
                Some(Conversion::Invalid(key, reason)) => context.reject(kind, &key, &reason),
                Some(Conversion::InvalidKept(key, reason, stand_in)) => {
                    context.reject(kind, &key, &reason);
                    objects.insert(key, *stand_in);
                }
                Some(Conversion::Absent(_)) | None => {}
            }
        }
        // Watch before announcing the list so nothing between the two is missed.
        let mut events = match store.watch_raw_from(&prefix, revision + 1).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(kind = kind.name(), %error, "watch failed; relisting");
                context.set_in_sync(kind, false);
                if !context.send(Update::OutOfSync { kind }).await {
                    return;
                }
                continue;
            }
        };
        if !context.send(Update::Replace { kind, objects }).await {
            return;
        }
        context.set_in_sync(kind, true);
        backoff.reset();
        while let Some(batch) = events.next().await {
            match batch {
                Ok(batch) => {
                    for event in batch {
                        let update = match event {
                            RawEvent::Put { key, value } => match decode(&key, &value) {
                                Some(conversion) => {
                                    context.to_update(kind, rekey(&prefix, conversion))
                                }
                                None => continue,
                            },
                            RawEvent::Delete { key } => Update::Delete {
                                kind,
                                key: state_key(&prefix, &key),
                            },
                        };
                        context.count_update(kind);
                        if !context.send(update).await {
                            return;
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(kind = kind.name(), %error, "watch lost; relisting");
                    break;
                }
            }
        }
        context.set_in_sync(kind, false);
        if !context.send(Update::OutOfSync { kind }).await {
            return;
        }
    }
}
