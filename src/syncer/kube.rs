//! Kubernetes watchers over `kube::runtime::watcher` (list, then watch; relist on 410 Gone).
//!
//! The watcher's `Init` / `InitApply` / `InitDone` sequence is gathered into one
//! [`Update::Replace`]; errors (API unreachable, watch expired) mark the kind out of sync and
//! the watcher's own exponential backoff paces the retries.

use std::collections::BTreeMap;
use std::fmt::Debug;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::convert::{self, Conversion, WatchedKind};
use super::SyncerContext;
use crate::ipam::block::Block;
use crate::ipam::records::{Affinity, IpamConfig, Reservation};
use crate::resources::{BGPConfiguration, BGPPeer, FelixConfiguration, IPPool};
use crate::state::{Kind, Resource as StateResource, Update};

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
                    StateResource::Node(crate::resources::node::calico_node_from_k8s(node)),
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
    ]
}

async fn watch_kind<O, F>(
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
    let mut stream = Box::pin(watcher::watcher(api, config).default_backoff());
    let mut listing: Option<BTreeMap<String, StateResource>> = None;
    let mut lists = 0u64;
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
                            listing.insert(key, resource);
                        }
                        Conversion::Invalid(key, reason) => context.reject(kind, &key, &reason),
                        Conversion::Absent(_) => {}
                    }
                }
                continue;
            }
            Ok(Event::InitDone) => {
                lists += 1;
                if lists > 1 {
                    context.count_reconnect(kind);
                }
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
                tracing::warn!(kind = kind.name(), %error, "watch failed; retrying with backoff");
                listing = None;
                context.set_in_sync(kind, false);
                Update::OutOfSync { kind }
            }
        };
        if !context.send(update).await {
            return;
        }
    }
}
