//! Datastore access with compare-and-swap (reference §3 "Concurrency").
//!
//! Contract: `Datastore` offers typed get/list/watch plus create-if-absent, update-if-revision and
//! delete-with-precondition over any `StoredKind`, in the vocabulary of `starling_model::store`
//! (opaque revisions, errors that carry the key). `crate::ipam::store` lets the pure IPAM
//! decisions run over any of them. In the Kubernetes backend objects whose `deleted` flag is set are reported as
//! not found (and their deletion is finished).
//!
//! Implementations: `memory` (unit tests, fault injection), `etcd` (Calico's etcdv3 layout) and
//! `kube` (crd.projectcalico.org/v1 objects). `AnyDatastore` picks one at run time.

pub mod endpoints;
pub mod etcd;
pub mod etcd_tls;
pub mod keys;
pub mod kinds;
pub mod kinds_config;
pub mod kube;
pub mod memory;
pub mod v3;

use std::fmt::Debug;
use std::future::Future;

use futures::stream::BoxStream;
use serde::de::DeserializeOwned;
use serde::Serialize;

use starling_ipam::records::Affinity;
use starling_model::store::{Revision, StoreError, Versioned};

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<K: StoredKind> {
    Put(Versioned<K>),
    Deleted(K::Key),
}

/// Something the datastore stores: its key and both wire encodings.
pub trait StoredKind: Clone + Debug + Send + Sync + 'static {
    type Key: Clone + Debug + PartialEq + Send + Sync + 'static;
    /// The crd.projectcalico.org/v1 object type.
    type Crd: ::kube::Resource<DynamicType = (), Scope = ::kube::core::ClusterResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;

    fn key(&self) -> Self::Key;

    /// Full etcd key of an object.
    fn etcd_key(key: &Self::Key) -> String;
    /// Prefix under which all objects of the kind live (for list/watch).
    fn etcd_prefix() -> &'static str;
    /// Inverse of `etcd_key`; `None` for keys of other shapes under the prefix.
    fn etcd_parse_key(path: &str) -> Option<Self::Key>;
    fn etcd_encode(&self) -> Result<Vec<u8>, String>;
    fn etcd_decode(key: &Self::Key, bytes: &[u8]) -> Result<Self, String>;

    /// Kubernetes object name.
    fn kube_name(key: &Self::Key) -> String;
    /// Builds the CRD object (name, labels, spec; no resourceVersion).
    fn to_crd(&self) -> Self::Crd;
    fn from_crd(crd: &Self::Crd) -> Result<Self, String>;
    /// Whether the CRD object carries `deleted: true`.
    fn crd_deleted(crd: &Self::Crd) -> bool;
    /// Sets `deleted: true`; returns false when the kind has no such flag.
    fn crd_mark_deleted(crd: &mut Self::Crd) -> bool;
}

/// Typed access with compare-and-swap. All methods are safe to call concurrently.
pub trait Datastore: Send + Sync + 'static {
    fn get<K: StoredKind>(
        &self,
        key: &K::Key,
    ) -> impl Future<Output = Result<Versioned<K>, StoreError>> + Send;

    /// Every object of the kind, plus one `Invalid` error per object that failed to decode.
    fn list_reporting<K: StoredKind>(
        &self,
    ) -> impl Future<Output = Result<(Vec<Versioned<K>>, Vec<StoreError>), StoreError>> + Send;

    /// Every valid object of the kind; invalid ones are skipped with one warning each.
    fn list<K: StoredKind>(
        &self,
    ) -> impl Future<Output = Result<Vec<Versioned<K>>, StoreError>> + Send {
        async move { Ok(warn_invalid(self.list_reporting::<K>().await?)) }
    }

    /// The block affinities of one host. The default lists every affinity and filters; backends
    /// override it with a key prefix (etcd) or a label selector (Kubernetes) so a pod's assignment
    /// does not read the whole cluster's affinities.
    fn list_host_affinities(
        &self,
        host: &str,
    ) -> impl Future<Output = Result<Vec<Versioned<Affinity>>, StoreError>> + Send {
        async move {
            Ok(self
                .list::<Affinity>()
                .await?
                .into_iter()
                .filter(|a| a.value.key.host == host)
                .collect())
        }
    }

    /// Create if absent, else `AlreadyExists`.
    fn create<K: StoredKind>(
        &self,
        value: &K,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send;

    /// Update if the stored revision is `revision`, else `Conflict` (or `NotFound`).
    fn update<K: StoredKind>(
        &self,
        value: &K,
        revision: &Revision,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send;

    /// Delete if the stored revision is `revision`, else `Conflict` (or `NotFound`).
    fn delete<K: StoredKind>(
        &self,
        key: &K::Key,
        revision: &Revision,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Changes to the kind from now on (no initial list; call `list` first).
    fn watch<K: StoredKind>(
        &self,
    ) -> impl Future<
        Output = Result<BoxStream<'static, Result<WatchEvent<K>, StoreError>>, StoreError>,
    > + Send;
}

/// Logs each object that failed to decode and returns the valid ones.
pub(crate) fn warn_invalid<T>((values, invalid): (Vec<T>, Vec<StoreError>)) -> Vec<T> {
    for error in invalid {
        tracing::warn!(%error, "ignoring invalid stored object");
    }
    values
}

/// Decodes with the kind's etcd decoder, turning failures into `Invalid` for `key`.
pub(crate) fn decode_etcd<K: StoredKind>(key: &K::Key, bytes: &[u8]) -> Result<K, StoreError> {
    K::etcd_decode(key, bytes).map_err(|reason| StoreError::Invalid {
        key: K::etcd_key(key),
        reason,
    })
}

/// One of the three implementations, chosen at run time (CLI, daemon).
#[derive(Clone)]
pub enum AnyDatastore {
    Memory(memory::MemoryStore),
    Etcd(etcd::EtcdStore),
    Kube(kube::KubeStore),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $body:expr) => {
        match $self {
            AnyDatastore::Memory($store) => $body,
            AnyDatastore::Etcd($store) => $body,
            AnyDatastore::Kube($store) => $body,
        }
    };
}

impl Datastore for AnyDatastore {
    async fn get<K: StoredKind>(&self, key: &K::Key) -> Result<Versioned<K>, StoreError> {
        dispatch!(self, store => store.get(key).await)
    }
    async fn list_reporting<K: StoredKind>(
        &self,
    ) -> Result<(Vec<Versioned<K>>, Vec<StoreError>), StoreError> {
        dispatch!(self, store => store.list_reporting().await)
    }
    async fn list_host_affinities(
        &self,
        host: &str,
    ) -> Result<Vec<Versioned<Affinity>>, StoreError> {
        dispatch!(self, store => store.list_host_affinities(host).await)
    }
    async fn create<K: StoredKind>(&self, value: &K) -> Result<Revision, StoreError> {
        dispatch!(self, store => store.create(value).await)
    }
    async fn update<K: StoredKind>(
        &self,
        value: &K,
        revision: &Revision,
    ) -> Result<Revision, StoreError> {
        dispatch!(self, store => store.update(value, revision).await)
    }
    async fn delete<K: StoredKind>(
        &self,
        key: &K::Key,
        revision: &Revision,
    ) -> Result<(), StoreError> {
        dispatch!(self, store => store.delete::<K>(key, revision).await)
    }
    async fn watch<K: StoredKind>(
        &self,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>, StoreError>>, StoreError> {
        dispatch!(self, store => store.watch().await)
    }
}
