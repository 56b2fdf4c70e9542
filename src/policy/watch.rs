//! Watchers for the policy inputs: list then watch each kind with no gap, as raw JSON, into one
//! channel. Same contract as `crate::syncer` (first a `Replace`, a lost watch reports
//! `OutOfSync`, backs off and relists) but for objects the policy task decodes itself.
//! Undecodable JSON is counted and logged by the policy task like any invalid object, so here
//! it becomes `Value::Null` under its key.

use std::collections::BTreeMap;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use kube::Client;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::inputs::{kube_key, InputKind, InputUpdate};
use crate::datastore::etcd::{EtcdStore, RawEvent};
use crate::syncer::Backoff;

/// Starts one etcd watcher per etcd kind.
pub fn spawn_etcd(store: &EtcdStore, sink: mpsc::Sender<InputUpdate>) -> Vec<JoinHandle<()>> {
    InputKind::ETCD
        .into_iter()
        .filter_map(|kind| Some((kind, kind.etcd_prefix()?)))
        .map(|(kind, prefix)| tokio::spawn(watch_etcd(store.clone(), kind, prefix, sink.clone())))
        .collect()
}

/// Starts one Kubernetes watcher per Kubernetes kind.
pub fn spawn_kube(client: &Client, sink: mpsc::Sender<InputUpdate>) -> Vec<JoinHandle<()>> {
    InputKind::KUBE
        .into_iter()
        .filter_map(|kind| Some((kind, kind.kube_resource()?)))
        .map(|(kind, resource)| {
            let gvk = GroupVersionKind::gvk(resource.group, resource.version, resource.kind);
            let api_resource = ApiResource::from_gvk_with_plural(&gvk, resource.plural);
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &api_resource);
            tokio::spawn(watch_kube(api, kind, sink.clone()))
        })
        .collect()
}

fn decode(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

async fn watch_etcd(
    store: EtcdStore,
    kind: InputKind,
    prefix: &'static str,
    sink: mpsc::Sender<InputUpdate>,
) {
    let key_of = |path: &str| path.strip_prefix(prefix).unwrap_or(path).to_string();
    let mut backoff = Backoff::new();
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(backoff.next_delay()).await;
        }
        first = false;
        let listed = match store.list_raw_at(prefix).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(kind = kind.name(), %error, "listing policy input failed; retrying");
                if sink.send(InputUpdate::OutOfSync { kind }).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let (items, revision) = listed;
        // Watch before announcing the list so nothing between the two is missed.
        let mut events = match store.watch_raw_from(prefix, revision + 1).await {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(kind = kind.name(), %error, "watching policy input failed; relisting");
                if sink.send(InputUpdate::OutOfSync { kind }).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let objects: BTreeMap<String, Value> = items
            .iter()
            .map(|(path, bytes)| (key_of(path), decode(bytes)))
            .collect();
        if sink
            .send(InputUpdate::Replace { kind, objects })
            .await
            .is_err()
        {
            return;
        }
        backoff.reset();
        while let Some(batch) = events.next().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(kind = kind.name(), %error, "policy input watch lost; relisting");
                    break;
                }
            };
            for event in batch {
                let update = match event {
                    RawEvent::Put { key, value } => InputUpdate::Put {
                        kind,
                        key: key_of(&key),
                        object: decode(&value),
                    },
                    RawEvent::Delete { key } => InputUpdate::Delete {
                        kind,
                        key: key_of(&key),
                    },
                };
                if sink.send(update).await.is_err() {
                    return;
                }
            }
        }
        if sink.send(InputUpdate::OutOfSync { kind }).await.is_err() {
            return;
        }
    }
}

fn object_value(object: &DynamicObject) -> (Option<String>, Value) {
    let value = serde_json::to_value(object).unwrap_or(Value::Null);
    (kube_key(&value), value)
}

async fn watch_kube(api: Api<DynamicObject>, kind: InputKind, sink: mpsc::Sender<InputUpdate>) {
    let mut backoff = Backoff::new();
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(backoff.next_delay()).await;
        }
        first = false;
        // A fresh watcher lists first, so after any error the kind is complete again once its
        // list is done.
        let mut stream = Box::pin(watcher::watcher(api.clone(), watcher::Config::default()));
        let mut listing: Option<BTreeMap<String, Value>> = None;
        while let Some(event) = stream.next().await {
            let update = match event {
                Ok(Event::Init) => {
                    listing = Some(BTreeMap::new());
                    continue;
                }
                Ok(Event::InitApply(object)) => {
                    if let (Some(listing), (Some(key), value)) =
                        (listing.as_mut(), object_value(&object))
                    {
                        listing.insert(key, value);
                    }
                    continue;
                }
                Ok(Event::InitDone) => {
                    backoff.reset();
                    InputUpdate::Replace {
                        kind,
                        objects: listing.take().unwrap_or_default(),
                    }
                }
                Ok(Event::Apply(object)) => match object_value(&object) {
                    (Some(key), object) => InputUpdate::Put { kind, key, object },
                    (None, _) => continue,
                },
                Ok(Event::Delete(object)) => match object_value(&object) {
                    (Some(key), _) => InputUpdate::Delete { kind, key },
                    (None, _) => continue,
                },
                Err(error) => {
                    tracing::warn!(kind = kind.name(), %error, "policy input watch failed; relisting after a backoff");
                    if sink.send(InputUpdate::OutOfSync { kind }).await.is_err() {
                        return;
                    }
                    break;
                }
            };
            if sink.send(update).await.is_err() {
                return;
            }
        }
    }
}
