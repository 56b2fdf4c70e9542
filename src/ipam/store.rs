//! The IPAM records over a real datastore: [`IpamStore`] (defined by the pure IPAM crate) for
//! every [`Datastore`] implementation, by dispatching each record to the typed datastore call
//! for its kind.

use starling_ipam::block::Block;
use starling_ipam::records::{Affinity, Handle, IpamConfig, IpamConfigKey, Reservation};
use starling_ipam::store::{IpamStore, Record, RecordKey, RecordKind, RecordRef};
use starling_model::store::{Revision, StoreError, Versioned};

use crate::datastore::etcd::EtcdStore;
use crate::datastore::kube::KubeStore;
use crate::datastore::memory::MemoryStore;
use crate::datastore::{AnyDatastore, Datastore, StoredKind};

async fn list_as<D: Datastore, K: StoredKind>(
    store: &D,
    wrap: fn(K) -> Record,
) -> Result<(Vec<Versioned<Record>>, Vec<StoreError>), StoreError> {
    let (values, invalid) = store.list_reporting::<K>().await?;
    Ok((values.into_iter().map(|v| v.map(wrap)).collect(), invalid))
}

macro_rules! ipam_store_over_datastore {
    ($($store:ty),*) => {$(
        impl IpamStore for $store {
            async fn get_record(&self, key: &RecordKey) -> Result<Versioned<Record>, StoreError> {
                Ok(match key {
                    RecordKey::Block(cidr) => Datastore::get::<Block>(self, cidr).await?.map(Record::Block),
                    RecordKey::Affinity(key) => {
                        Datastore::get::<Affinity>(self, key).await?.map(Record::Affinity)
                    }
                    RecordKey::Handle(id) => Datastore::get::<Handle>(self, id).await?.map(Record::Handle),
                    RecordKey::IpamConfig => Datastore::get::<IpamConfig>(self, &IpamConfigKey)
                        .await?
                        .map(Record::IpamConfig),
                    RecordKey::Reservation(name) => Datastore::get::<Reservation>(self, name)
                        .await?
                        .map(Record::Reservation),
                })
            }

            async fn list_records(
                &self,
                kind: RecordKind,
            ) -> Result<(Vec<Versioned<Record>>, Vec<StoreError>), StoreError> {
                match kind {
                    RecordKind::Block => list_as::<_, Block>(self, Record::Block).await,
                    RecordKind::Affinity => list_as::<_, Affinity>(self, Record::Affinity).await,
                    RecordKind::Handle => list_as::<_, Handle>(self, Record::Handle).await,
                    RecordKind::IpamConfig => {
                        list_as::<_, IpamConfig>(self, Record::IpamConfig).await
                    }
                    RecordKind::Reservation => {
                        list_as::<_, Reservation>(self, Record::Reservation).await
                    }
                }
            }

            async fn list_host_affinities(
                &self,
                host: &str,
            ) -> Result<Vec<Versioned<Affinity>>, StoreError> {
                Datastore::list_host_affinities(self, host).await
            }

            async fn create_record(&self, record: RecordRef<'_>) -> Result<Revision, StoreError> {
                match record {
                    RecordRef::Block(value) => Datastore::create(self, value).await,
                    RecordRef::Affinity(value) => Datastore::create(self, value).await,
                    RecordRef::Handle(value) => Datastore::create(self, value).await,
                    RecordRef::IpamConfig(value) => Datastore::create(self, value).await,
                    RecordRef::Reservation(value) => Datastore::create(self, value).await,
                }
            }

            async fn update_record(
                &self,
                record: RecordRef<'_>,
                revision: &Revision,
            ) -> Result<Revision, StoreError> {
                match record {
                    RecordRef::Block(value) => Datastore::update(self, value, revision).await,
                    RecordRef::Affinity(value) => Datastore::update(self, value, revision).await,
                    RecordRef::Handle(value) => Datastore::update(self, value, revision).await,
                    RecordRef::IpamConfig(value) => Datastore::update(self, value, revision).await,
                    RecordRef::Reservation(value) => {
                        Datastore::update(self, value, revision).await
                    }
                }
            }

            async fn delete_record(
                &self,
                key: &RecordKey,
                revision: &Revision,
            ) -> Result<(), StoreError> {
                match key {
                    RecordKey::Block(cidr) => Datastore::delete::<Block>(self, cidr, revision).await,
                    RecordKey::Affinity(key) => {
                        Datastore::delete::<Affinity>(self, key, revision).await
                    }
                    RecordKey::Handle(id) => Datastore::delete::<Handle>(self, id, revision).await,
                    RecordKey::IpamConfig => {
                        Datastore::delete::<IpamConfig>(self, &IpamConfigKey, revision).await
                    }
                    RecordKey::Reservation(name) => {
                        Datastore::delete::<Reservation>(self, name, revision).await
                    }
                }
            }
        }
    )*};
}

ipam_store_over_datastore!(AnyDatastore, MemoryStore, EtcdStore, KubeStore);
