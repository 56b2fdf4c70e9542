//! Kubernetes watchers over `kube::runtime::watcher` (list, then watch; relist on 410 Gone).
//!
//! The watcher's `Init` / `InitApply` / `InitDone` sequence is gathered into one
//! [`Update::Replace`]; an error (API unreachable, watch expired) marks the kind out of sync
//! and, after an exponential backoff, a new watcher relists. A connection that merely ends is
//! resumed by the watcher itself from the last resourceVersion (no gap, no relist).

use std::collections::BTreeMap;
use std::fmt::Debug;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::convert::{self, Conversion, WatchedKind};
use super::{Backoff, SyncerContext};
use crate::resources::{BGPConfiguration, BGPFilter, BGPPeer, FelixConfiguration, IPPool};
use starling_calc::state::{Kind, Resource as StateResource, Update};
use starling_ipam::block::Block;
use starling_ipam::records::{Affinity, IpamConfig, Reservation};

fn crd_task<K: WatchedKind>(client: &Client, context: &SyncerContext) -> JoinHandle<()> {
    let api: Api<K::Crd> = Api::all(client.clone());
    tokio::spawn(watch_kind(
        api,
        watcher::Config::default(),
        K::KIND,
        |object: &K::Crd| convert::from_crd::<K>(object.name_any(), object),
        context.clone(),
    ))
}

pub(super) fn spawn_all(
    client: Client,
    node_name: &str,
    namespace: &str,
    context: &SyncerContext,
) -> Vec<JoinHandle<()>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    vec![
        crd_task::<IPPool>(&client, context),
        crd_task::<Block>(&client, context),
        crd_task::<Affinity>(&client, context),
        crd_task::<BGPConfiguration>(&client, context),
        crd_task::<BGPPeer>(&client, context),
        crd_task::<BGPFilter>(&client, context),
        crd_task::<Reservation>(&client, context),
        crd_task::<FelixConfiguration>(&client, context),
        crd_task::<IpamConfig>(&client, context),
        tokio::spawn(watch_kind(
            nodes,
            watcher::Config::default(),
            Kind::Node,
            |node: &Node| {
                Conversion::Valid(
                    node.name_any(),
                    Box::new(StateResource::Node(
                        crate::resources::node::calico_node_from_k8s(node),
                    )),
                )
            },
            context.clone(),
        )),
        tokio::spawn(watch_kind(
            pods,
            watcher::Config::default().fields(&format!("spec.nodeName={node_name}")),
            Kind::Pod,
            convert::pod,
            context.clone(),
        )),
        tokio::spawn(watch_kind(
            secrets,
            watcher::Config::default(),
            Kind::Secret,
            convert::secret,
            context.clone(),
        )),
        // The pods are the endpoints here; none is stored.
        super::report_empty(&[Kind::WorkloadEndpoint], context),
    ]
}

pub(super) async fn watch_kind<O, F>(
    api: Api<O>,
    config: watcher::Config,
    kind: Kind,
    convert: F,
    context: SyncerContext,
) where
    O: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
    O::DynamicType: Default + Clone + Eq + std::hash::Hash,
    F: Fn(&O) -> Conversion + Send + 'static,
{
    let mut backoff = Backoff::new();
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(backoff.next_delay()).await;
            context.count_reconnect(kind);
        }
        first = false;
        // A fresh watcher lists first: after any error the kind is relisted, so the state
        // is known to be complete again when the list is done (a watcher resuming silently
        // from its last resourceVersion would never say so).
        let mut stream = Box::pin(watcher::watcher(api.clone(), config.clone()));
        let mut listing: Option<BTreeMap<String, StateResource>> = None;
        while let Some(event) = stream.next().await {
            let update = match event {
                Ok(Event::Init) => {
                    listing = Some(BTreeMap::new());
                    continue;
                }
                Ok(Event::InitApply(object)) => {
                    let conversion = convert(&object);
                    if let Some(listing) = listing.as_mut() {
                        match conversion {
                            Conversion::Valid(key, resource) => {
                                listing.insert(key, *resource);
                            }
                            Conversion::Invalid(key, reason) => context.reject(kind, &key, &reason),
                            Conversion::InvalidKept(key, reason, stand_in) => {
                                context.reject(kind, &key, &reason);
                                listing.insert(key, *stand_in);
                            }
                            Conversion::Absent(_) => {}
                        }
                    }
                    continue;
                }
                Ok(Event::InitDone) => {
                    backoff.reset();
                    context.set_in_sync(kind, true);
                    Update::Replace {
                        kind,
                        objects: listing.take().unwrap_or_default(),
                    }
                }
                Ok(Event::Apply(object)) => {
                    context.count_update(kind);
                    context.to_update(kind, convert(&object))
                }
                Ok(Event::Delete(object)) => {
                    context.count_update(kind);
                    Update::Delete {
                        kind,
                        key: convert(&object).key().to_string(),
                    }
                }
                Err(error) => {
                    tracing::warn!(kind = kind.name(), %error, "watch failed; relisting after a backoff");
                    context.set_in_sync(kind, false);
                    if !context.send(Update::OutOfSync { kind }).await {
                        return;
                    }
                    break;
                }
            };
            if !context.send(update).await {
                return;
            }
        }
    }
}
