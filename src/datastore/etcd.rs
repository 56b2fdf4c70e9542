//! etcd v3 backend in Calico's key layout (reference §3).
//!
//! Revision = the key's ModRevision. Create is a transaction on `Version(key) == 0`, update and
//! delete on `ModRevision(key) == revision`; a failed compare reads the key back in the same
//! transaction to tell "not found" from "conflict" / "already exists".

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use futures::stream::{self, BoxStream, StreamExt};

use super::etcd_tls::{self, EtcdConnectError, EtcdTlsFiles};
use super::{
    decode_etcd, keys, warn_invalid, Datastore, Revision, StoreError, StoredKind, Versioned,
    WatchEvent,
};
use starling_ipam::records::Affinity;

/// One change seen by [`EtcdStore::watch_raw_from`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEvent {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// A connection to an etcd cluster. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    // Boxed: the client is several kilobytes and every operation clones it anyway.
    client: Box<Client>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EtcdStore")
    }
}

fn unavailable(key: &str, error: etcd_client::Error) -> StoreError {
    StoreError::Unavailable {
        key: key.to_string(),
        reason: error.to_string(),
    }
}

fn parse_revision(key: &str, revision: &Revision) -> Result<i64, StoreError> {
    revision.0.parse().map_err(|_| StoreError::Invalid {
        key: key.to_string(),
        reason: format!("revision {revision} is not an etcd ModRevision"),
    })
}

impl EtcdStore {
    fn options() -> ConnectOptions {
        ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10))
    }

    /// Connects to plain-http endpoints (e.g. `http://127.0.0.1:2379`) without any check.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore, StoreError> {
        let client = Client::connect(endpoints, Some(Self::options()))
            .await
            .map_err(|e| unavailable(&endpoints.join(","), e))?;
        Ok(EtcdStore {
            client: Box::new(client),
        })
    }

    /// Connects with calico-node's TLS files, which are checked first, and probes every https
    /// endpoint once so that a TLS misconfiguration is an error naming the endpoint and the
    /// file ([`etcd_tls`]); endpoints that do not answer yet are left to the caller's retries.
    pub async fn connect_with_tls(
        endpoints: &[String],
        files: &EtcdTlsFiles,
    ) -> Result<EtcdStore, EtcdConnectError> {
        let mut options = Self::options();
        if let Some(tls) = etcd_tls::tls_settings(endpoints, files)? {
            etcd_tls::probe(endpoints, &tls, files).await?;
            options = options.with_tls(tls.options);
        }
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|error| EtcdConnectError::Connect {
                endpoints: endpoints.join(","),
                reason: error.to_string(),
            })?;
        Ok(EtcdStore {
            client: Box::new(client),
        })
    }

    /// Writes raw bytes at a key (fixtures, and the `reserve` command's v3 object).
    pub async fn put_raw(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.client
            .clone()
            .put(key, value, None)
            .await
            .map_err(|e| unavailable(key, e))?;
        Ok(())
    }

    /// The raw bytes at a key.
    pub async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let response = self
            .client
            .clone()
            .get(key, None)
            .await
            .map_err(|e| unavailable(key, e))?;
        Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// The raw bytes at a key with their ModRevision, for [`EtcdStore::update_raw`] and
    /// [`EtcdStore::delete_raw`] (objects outside the typed kinds, e.g. workload endpoints).
    pub async fn get_raw_versioned(
        &self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, Revision)>, StoreError> {
        let response = self
            .client
            .clone()
            .get(key, None)
            .await
            .map_err(|e| unavailable(key, e))?;
        Ok(response
            .kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), Revision(kv.mod_revision().to_string()))))
    }

    /// Writes `key` if it does not exist, else `AlreadyExists`.
    pub async fn create_raw(&self, key: &str, value: Vec<u8>) -> Result<Revision, StoreError> {
        let compare = Compare::version(key, CompareOp::Equal, 0);
        match self
            .compare_and(key, compare, TxnOp::put(key, value, None))
            .await?
        {
            Ok(revision) => Ok(Revision(revision.to_string())),
            Err(_) => Err(StoreError::AlreadyExists {
                key: key.to_string(),
            }),
        }
    }

    /// Replaces `key` if its ModRevision is still `revision`, else `Conflict` (or `NotFound`).
    pub async fn update_raw(
        &self,
        key: &str,
        value: Vec<u8>,
        revision: &Revision,
    ) -> Result<Revision, StoreError> {
        let expected = parse_revision(key, revision)?;
        let compare = Compare::mod_revision(key, CompareOp::Equal, expected);
        match self
            .compare_and(key, compare, TxnOp::put(key, value, None))
            .await?
        {
            Ok(revision) => Ok(Revision(revision.to_string())),
            Err(None) => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
            Err(Some(_)) => Err(StoreError::Conflict {
                key: key.to_string(),
            }),
        }
    }

    /// Deletes `key` if its ModRevision is still `revision`, else `Conflict` (or `NotFound`).
    pub async fn delete_raw(&self, key: &str, revision: &Revision) -> Result<(), StoreError> {
        let expected = parse_revision(key, revision)?;
        let compare = Compare::mod_revision(key, CompareOp::Equal, expected);
        match self
            .compare_and(key, compare, TxnOp::delete(key, None))
            .await?
        {
            Ok(_) => Ok(()),
            Err(None) => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
            Err(Some(_)) => Err(StoreError::Conflict {
                key: key.to_string(),
            }),
        }
    }

    /// Every key and value under a prefix (objects outside the IPAM kinds, e.g. workload endpoints).
    pub async fn list_raw(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let response = self
            .client
            .clone()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| unavailable(prefix, e))?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect())
    }

    /// Every key and value under a prefix, with the store revision the read was made at, so a
    /// watcher can continue from `revision + 1` without a gap (the daemon's list-then-watch).
    pub async fn list_raw_at(
        &self,
        prefix: &str,
    ) -> Result<(Vec<(String, Vec<u8>)>, i64), StoreError> {
        let response = self
            .client
            .clone()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| unavailable(prefix, e))?;
        let revision = response.header().map(|h| h.revision()).unwrap_or(0);
        let items = response
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect();
        Ok((items, revision))
    }

    /// Changes under `prefix` from `start_revision` on, one batch per etcd response. The stream
    /// yields no empty batches, and an `Unavailable` error (and should then be dropped) when the watch is cancelled,
    /// e.g. because `start_revision` was compacted away: the caller must list again.
    pub async fn watch_raw_from(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<BoxStream<'static, Result<Vec<RawEvent>, StoreError>>, StoreError> {
        let owned_prefix = prefix.to_string();
        let watch_stream = self
            .client
            .clone()
            .watch(
                prefix,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(start_revision),
                ),
            )
            .await
            .map_err(|e| unavailable(prefix, e))?;
        let batches = watch_stream.map(move |response| {
            let response = response.map_err(|e| unavailable(&owned_prefix, e))?;
            if response.canceled() {
                return Err(StoreError::Unavailable {
                    key: owned_prefix.clone(),
                    reason: format!(
                        "watch cancelled (compacted through revision {}): {}",
                        response.compact_revision(),
                        response.cancel_reason()
                    ),
                });
            }
            Ok(response
                .events()
                .iter()
                .filter_map(|event| {
                    let kv = event.kv()?;
                    let key = String::from_utf8_lossy(kv.key()).into_owned();
                    Some(match event.event_type() {
                        EventType::Delete => RawEvent::Delete { key },
                        EventType::Put => RawEvent::Put {
                            key,
                            value: kv.value().to_vec(),
                        },
                    })
                })
                .collect::<Vec<RawEvent>>())
        });
        // The "watch created" and progress responses carry no events: not worth a batch.
        let batches = batches.filter(|batch| {
            futures::future::ready(!matches!(batch, Ok(events) if events.is_empty()))
        });
        Ok(batches.boxed())
    }

    /// Objects of kind `K` under `prefix` (a sub-prefix of the kind's).
    async fn list_under<K: StoredKind>(
        &self,
        prefix: &str,
    ) -> Result<(Vec<Versioned<K>>, Vec<StoreError>), StoreError> {
        let response = self
            .client
            .clone()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| unavailable(prefix, e))?;
        let mut values = Vec::new();
        let mut invalid = Vec::new();
        for kv in response.kvs() {
            let Some(key) = kv.key_str().ok().and_then(K::etcd_parse_key) else {
                continue;
            };
            match decode_etcd::<K>(&key, kv.value()) {
                Ok(value) => values.push(Versioned {
                    value,
                    revision: Revision(kv.mod_revision().to_string()),
                }),
                Err(error) => invalid.push(error),
            }
        }
        Ok((values, invalid))
    }

    /// Runs a compare-and-put/delete transaction; on a failed compare returns the current
    /// ModRevision of the key (None = absent).
    async fn compare_and(
        &self,
        path: &str,
        compare: Compare,
        operation: TxnOp,
    ) -> Result<Result<i64, Option<i64>>, StoreError> {
        let transaction = Txn::new()
            .when(vec![compare])
            .and_then(vec![operation])
            .or_else(vec![TxnOp::get(path, None)]);
        let response = self
            .client
            .clone()
            .txn(transaction)
            .await
            .map_err(|e| unavailable(path, e))?;
        if response.succeeded() {
            return Ok(Ok(response.header().map(|h| h.revision()).unwrap_or(0)));
        }
        let current = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => Some(get.kvs().first().map(|kv| kv.mod_revision())),
                _ => None,
            })
            .flatten();
        Ok(Err(current))
    }
}

impl Datastore for EtcdStore {
    async fn get<K: StoredKind>(&self, key: &K::Key) -> Result<Versioned<K>, StoreError> {
        let path = K::etcd_key(key);
        let response = self
            .client
            .clone()
            .get(path.as_str(), None)
            .await
            .map_err(|e| unavailable(&path, e))?;
        let kv = response
            .kvs()
            .first()
            .ok_or(StoreError::NotFound { key: path.clone() })?;
        Ok(Versioned {
            value: decode_etcd(key, kv.value())?,
            revision: Revision(kv.mod_revision().to_string()),
        })
    }

    async fn list_reporting<K: StoredKind>(
        &self,
    ) -> Result<(Vec<Versioned<K>>, Vec<StoreError>), StoreError> {
        self.list_under::<K>(K::etcd_prefix()).await
    }

    async fn list_host_affinities(
        &self,
        host: &str,
    ) -> Result<Vec<Versioned<Affinity>>, StoreError> {
        let prefix = format!("{}{host}/", keys::AFFINITY_HOST_PREFIX);
        Ok(warn_invalid(self.list_under::<Affinity>(&prefix).await?))
    }

    async fn create<K: StoredKind>(&self, value: &K) -> Result<Revision, StoreError> {
        let path = K::etcd_key(&value.key());
        let bytes = value.etcd_encode().map_err(|reason| StoreError::Invalid {
            key: path.clone(),
            reason,
        })?;
        self.create_raw(&path, bytes).await
    }

    async fn update<K: StoredKind>(
        &self,
        value: &K,
        revision: &Revision,
    ) -> Result<Revision, StoreError> {
        let path = K::etcd_key(&value.key());
        let bytes = value.etcd_encode().map_err(|reason| StoreError::Invalid {
            key: path.clone(),
            reason,
        })?;
        self.update_raw(&path, bytes, revision).await
    }

    async fn delete<K: StoredKind>(
        &self,
        key: &K::Key,
        revision: &Revision,
    ) -> Result<(), StoreError> {
        self.delete_raw(&K::etcd_key(key), revision).await
    }

    async fn watch<K: StoredKind>(
        &self,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>, StoreError>>, StoreError> {
        let prefix = K::etcd_prefix();
        let watch_stream = self
            .client
            .clone()
            .watch(prefix, Some(WatchOptions::new().with_prefix()))
            .await
            .map_err(|e| unavailable(prefix, e))?;
        let events = watch_stream.flat_map(move |response| {
            let items: Vec<Result<WatchEvent<K>, StoreError>> = match response {
                Err(error) => vec![Err(unavailable(prefix, error))],
                Ok(response) => response
                    .events()
                    .iter()
                    .filter_map(|event| {
                        let kv = event.kv()?;
                        let key = kv.key_str().ok().and_then(K::etcd_parse_key)?;
                        Some(match event.event_type() {
                            EventType::Delete => Ok(WatchEvent::Deleted(key)),
                            EventType::Put => decode_etcd::<K>(&key, kv.value()).map(|value| {
                                WatchEvent::Put(Versioned {
                                    value,
                                    revision: Revision(kv.mod_revision().to_string()),
                                })
                            }),
                        })
                    })
                    .collect(),
            };
            stream::iter(items)
        });
        Ok(events.boxed())
    }
}
