//! The store IPAM decisions run over: typed compare-and-swap reads and writes of the IPAM
//! records (reference §3 "Concurrency"), defined here so the allocator needs no datastore
//! client. The edge crate implements [`IpamStore`] for etcd, the Kubernetes API and an
//! in-memory store; the decisions call the typed methods of [`IpamStoreExt`].
//!
//! [`IpamStore`] is untyped on purpose (one enum per record, key and kind): an implementation
//! writes one `match` per operation instead of needing its own trait bound on every generic
//! method, and the typed layer above it is written once.

use std::fmt::Debug;
use std::future::Future;

use ipnet::IpNet;
use starling_model::store::{Revision, StoreError, Versioned};

use crate::block::Block;
use crate::records::{Affinity, AffinityKey, Handle, IpamConfig, IpamConfigKey, Reservation};

/// Which kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    Block,
    Affinity,
    Handle,
    IpamConfig,
    Reservation,
}

/// One record, owned (what a read returns).
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Block(Block),
    Affinity(Affinity),
    Handle(Handle),
    IpamConfig(IpamConfig),
    Reservation(Reservation),
}

impl Record {
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Block(_) => RecordKind::Block,
            Record::Affinity(_) => RecordKind::Affinity,
            Record::Handle(_) => RecordKind::Handle,
            Record::IpamConfig(_) => RecordKind::IpamConfig,
            Record::Reservation(_) => RecordKind::Reservation,
        }
    }
}

/// One record, borrowed (what a write takes).
#[derive(Debug, Clone, Copy)]
pub enum RecordRef<'a> {
    Block(&'a Block),
    Affinity(&'a Affinity),
    Handle(&'a Handle),
    IpamConfig(&'a IpamConfig),
    Reservation(&'a Reservation),
}

/// The identity of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Block(IpNet),
    Affinity(AffinityKey),
    Handle(String),
    IpamConfig,
    Reservation(String),
}

/// A record type IPAM stores.
pub trait IpamRecord: Clone + Debug + Send + Sync + 'static {
    type Key: Clone + Debug + PartialEq + Send + Sync + 'static;
    const KIND: RecordKind;
    fn record_key(&self) -> Self::Key;
    fn as_record(&self) -> RecordRef<'_>;
    fn wrap_key(key: &Self::Key) -> RecordKey;
    /// `None` when the record is of another kind (a store that answered wrongly).
    fn from_record(record: Record) -> Option<Self>;
}

macro_rules! ipam_record {
    ($type:ty, $variant:ident, $key:ty, |$value:ident| $record_key:expr, |$key_name:ident| $wrap:expr) => {
        impl IpamRecord for $type {
            type Key = $key;
            const KIND: RecordKind = RecordKind::$variant;
            fn record_key(&self) -> $key {
                let $value = self;
                $record_key
            }
            fn as_record(&self) -> RecordRef<'_> {
                RecordRef::$variant(self)
            }
            fn wrap_key($key_name: &$key) -> RecordKey {
                $wrap
            }
            fn from_record(record: Record) -> Option<Self> {
                match record {
                    Record::$variant(value) => Some(value),
                    _ => None,
                }
            }
        }
    };
}

ipam_record!(Block, Block, IpNet, |block| block.cidr, |cidr| {
    RecordKey::Block(*cidr)
});
ipam_record!(
    Affinity,
    Affinity,
    AffinityKey,
    |affinity| affinity.key.clone(),
    |key| RecordKey::Affinity(key.clone())
);
ipam_record!(Handle, Handle, String, |handle| handle.id.clone(), |id| {
    RecordKey::Handle(id.clone())
});
ipam_record!(
    IpamConfig,
    IpamConfig,
    IpamConfigKey,
    |_config| IpamConfigKey,
    |_key| RecordKey::IpamConfig
);
ipam_record!(
    Reservation,
    Reservation,
    String,
    |reservation| reservation.name.clone(),
    |name| RecordKey::Reservation(name.clone())
);

/// Compare-and-swap access to the IPAM records. All methods are safe to call concurrently.
pub trait IpamStore: Send + Sync + 'static {
    fn get_record(
        &self,
        key: &RecordKey,
    ) -> impl Future<Output = Result<Versioned<Record>, StoreError>> + Send;

    /// Every record of the kind, plus one `Invalid` error per stored object that failed to decode.
    fn list_records(
        &self,
        kind: RecordKind,
    ) -> impl Future<Output = Result<(Vec<Versioned<Record>>, Vec<StoreError>), StoreError>> + Send;

    /// The block affinities of one host. Implementations use a key prefix (etcd) or a label
    /// selector (Kubernetes) so a pod's assignment does not read the whole cluster's affinities.
    fn list_host_affinities(
        &self,
        host: &str,
    ) -> impl Future<Output = Result<Vec<Versioned<Affinity>>, StoreError>> + Send;

    /// Create if absent, else `AlreadyExists`.
    fn create_record(
        &self,
        record: RecordRef<'_>,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send;

    /// Update if the stored revision is `revision`, else `Conflict` (or `NotFound`).
    fn update_record(
        &self,
        record: RecordRef<'_>,
        revision: &Revision,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send;

    /// Delete if the stored revision is `revision`, else `Conflict` (or `NotFound`).
    fn delete_record(
        &self,
        key: &RecordKey,
        revision: &Revision,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

fn typed<R: IpamRecord>(stored: Versioned<Record>) -> Result<Versioned<R>, StoreError> {
    let revision = stored.revision;
    let answered = stored.value.kind();
    R::from_record(stored.value)
        .map(|value| Versioned { value, revision })
        .ok_or_else(|| StoreError::Invalid {
            key: format!("{:?}", R::KIND),
            reason: format!("the store answered with a {answered:?} record"),
        })
}

/// Typed access over any [`IpamStore`].
pub trait IpamStoreExt: IpamStore {
    fn get<R: IpamRecord>(
        &self,
        key: &R::Key,
    ) -> impl Future<Output = Result<Versioned<R>, StoreError>> + Send {
        let key = R::wrap_key(key);
        async move { typed(self.get_record(&key).await?) }
    }

    /// Every valid record of the kind and the errors of those that failed to decode.
    fn list_reporting<R: IpamRecord>(
        &self,
    ) -> impl Future<Output = Result<(Vec<Versioned<R>>, Vec<StoreError>), StoreError>> + Send {
        async move {
            let (stored, mut invalid) = self.list_records(R::KIND).await?;
            let mut values = Vec::with_capacity(stored.len());
            for record in stored {
                match typed::<R>(record) {
                    Ok(value) => values.push(value),
                    Err(error) => invalid.push(error),
                }
            }
            Ok((values, invalid))
        }
    }

    /// Every valid record of the kind; invalid ones are skipped with one warning each.
    fn list<R: IpamRecord>(
        &self,
    ) -> impl Future<Output = Result<Vec<Versioned<R>>, StoreError>> + Send {
        async move {
            let (values, invalid) = self.list_reporting::<R>().await?;
            for error in invalid {
                tracing::warn!(%error, "ignoring invalid stored object");
            }
            Ok(values)
        }
    }

    fn create<R: IpamRecord>(
        &self,
        value: &R,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send {
        self.create_record(value.as_record())
    }

    fn update<R: IpamRecord>(
        &self,
        value: &R,
        revision: &Revision,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send {
        self.update_record(value.as_record(), revision)
    }

    fn delete<R: IpamRecord>(
        &self,
        key: &R::Key,
        revision: &Revision,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let key = R::wrap_key(key);
        async move { self.delete_record(&key, revision).await }
    }
}

impl<S: IpamStore + ?Sized> IpamStoreExt for S {}

/// Reads the IPAM configuration; a missing object means Calico's defaults (nothing is written).
pub async fn read_ipam_config<S: IpamStore>(store: &S) -> Result<IpamConfig, StoreError> {
    match store.get::<IpamConfig>(&IpamConfigKey).await {
        Ok(config) => Ok(config.value),
        Err(StoreError::NotFound { .. }) => Ok(IpamConfig::default()),
        Err(error) => Err(error),
    }
}

/// Every reserved CIDR of every IPReservation (invalid objects are skipped with a warning).
pub async fn read_reservations<S: IpamStore>(store: &S) -> Result<Vec<IpNet>, StoreError> {
    Ok(store
        .list::<Reservation>()
        .await?
        .into_iter()
        .flat_map(|r| r.value.reserved_cidrs)
        .collect())
}
