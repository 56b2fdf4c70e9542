//! In-memory datastore for unit tests: an etcd-like key/value map with a global revision counter,
//! storing the same bytes the etcd backend would (so the etcd encoding is exercised too), plus fault
//! injection on chosen operations and key prefixes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream_shim::BroadcastStream;

use super::{
    decode_etcd, keys, warn_invalid, Datastore, Revision, StoreError, StoredKind, Versioned,
    WatchEvent,
};
use starling_ipam::records::Affinity;

/// The operations faults can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Get,
    List,
    Create,
    Update,
    Delete,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Another writer changes the object just before the operation (its revision moves on), so a
    /// compare-and-swap fails exactly as it would in a race.
    ConcurrentWrite,
    /// The operation fails with `Unavailable` and changes nothing.
    Unavailable,
}

#[derive(Debug, Clone)]
struct Fault {
    operation: Operation,
    key_prefix: String,
    kind: FaultKind,
    remaining: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    mod_revision: i64,
}

#[derive(Debug, Default)]
struct Inner {
    data: BTreeMap<String, Entry>,
    revision: i64,
    faults: Vec<Fault>,
    operations: BTreeMap<String, usize>,
}

#[derive(Debug, Clone)]
struct RawEvent {
    key: String,
    value: Option<Vec<u8>>,
    revision: i64,
}

/// Cheap to clone; clones share the data.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<RawEvent>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

/// A tiny adapter from a broadcast receiver to a stream (avoids a tokio-stream dependency).
mod tokio_stream_shim {
    use tokio::sync::broadcast;

    pub struct BroadcastStream<T>(pub broadcast::Receiver<T>);

    impl<T: Clone + Send + 'static> BroadcastStream<T> {
        pub fn into_stream(self) -> impl futures::Stream<Item = Option<T>> + Send {
            futures::stream::unfold(self.0, |mut receiver| async move {
                match receiver.recv().await {
                    Ok(item) => Some((Some(item), receiver)),
                    // A slow watcher lost events: report a gap as `None` rather than hiding it.
                    Err(broadcast::error::RecvError::Lagged(_)) => Some((None, receiver)),
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            })
        }
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        let (events, _) = broadcast::channel(4096);
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner::default())),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-written (every mutation is a
        // single insert/remove), so a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the next `times` matching operations on keys starting with `key_prefix` fail.
    pub fn inject(&self, operation: Operation, key_prefix: &str, kind: FaultKind, times: usize) {
        self.lock().faults.push(Fault {
            operation,
            key_prefix: key_prefix.to_string(),
            kind,
            remaining: times,
        });
    }

    /// How many times `operation` ran (including failed attempts), for assertions in tests.
    pub fn operation_count(&self, operation: Operation) -> usize {
        self.lock()
            .operations
            .get(&format!("{operation:?}"))
            .copied()
            .unwrap_or(0)
    }

    /// Writes raw bytes at a key (fixtures written "by Calico").
    pub fn put_raw(&self, key: &str, value: &[u8]) {
        let mut inner = self.lock();
        inner.revision += 1;
        let revision = inner.revision;
        inner.data.insert(
            key.to_string(),
            Entry {
                value: value.to_vec(),
                mod_revision: revision,
            },
        );
        let _ = self.events.send(RawEvent {
            key: key.to_string(),
            value: Some(value.to_vec()),
            revision,
        });
    }

    /// The raw bytes at a key.
    pub fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().data.get(key).map(|e| e.value.clone())
    }

    /// Every key currently stored.
    pub fn keys(&self) -> Vec<String> {
        self.lock().data.keys().cloned().collect()
    }

    /// Objects of kind `K` under `prefix` (a sub-prefix of the kind's).
    fn list_under<K: StoredKind>(
        &self,
        prefix: &str,
    ) -> Result<(Vec<Versioned<K>>, Vec<StoreError>), StoreError> {
        let entries: Vec<(String, Entry)> = {
            let mut inner = self.lock();
            Self::apply_fault(&mut inner, Operation::List, prefix)?;
            inner
                .data
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let mut values = Vec::new();
        let mut invalid = Vec::new();
        for (path, entry) in entries {
            let Some(key) = K::etcd_parse_key(&path) else {
                continue;
            };
            match decode_etcd::<K>(&key, &entry.value) {
                Ok(value) => values.push(Versioned {
                    value,
                    revision: Revision(entry.mod_revision.to_string()),
                }),
                Err(error) => invalid.push(error),
            }
        }
        Ok((values, invalid))
    }

    /// Applies a matching fault, if any: `Err` for Unavailable, a revision bump for ConcurrentWrite.
    fn apply_fault(inner: &mut Inner, operation: Operation, key: &str) -> Result<(), StoreError> {
        *inner
            .operations
            .entry(format!("{operation:?}"))
            .or_default() += 1;
        let Some(position) = inner.faults.iter().position(|f| {
            f.operation == operation && key.starts_with(&f.key_prefix) && f.remaining > 0
        }) else {
            return Ok(());
        };
        inner.faults[position].remaining -= 1;
        let kind = inner.faults[position].kind;
        inner.faults.retain(|f| f.remaining > 0);
        match kind {
            FaultKind::Unavailable => Err(StoreError::Unavailable {
                key: key.to_string(),
                reason: "injected failure".to_string(),
            }),
            FaultKind::ConcurrentWrite => {
                inner.revision += 1;
                let revision = inner.revision;
                if let Some(entry) = inner.data.get_mut(key) {
                    entry.mod_revision = revision;
                }
                Ok(())
            }
        }
    }

    fn write(&self, inner: &mut Inner, key: &str, value: Option<Vec<u8>>) -> i64 {
        inner.revision += 1;
        let revision = inner.revision;
        match &value {
            Some(bytes) => {
                inner.data.insert(
                    key.to_string(),
                    Entry {
                        value: bytes.clone(),
                        mod_revision: revision,
                    },
                );
            }
            None => {
                inner.data.remove(key);
            }
        }
        let _ = self.events.send(RawEvent {
            key: key.to_string(),
            value,
            revision,
        });
        revision
    }
}

fn parse_revision(key: &str, revision: &Revision) -> Result<i64, StoreError> {
    revision.0.parse().map_err(|_| StoreError::Invalid {
        key: key.to_string(),
        reason: format!("revision {revision} is not a number"),
    })
}

impl Datastore for MemoryStore {
    async fn get<K: StoredKind>(&self, key: &K::Key) -> Result<Versioned<K>, StoreError> {
        let path = K::etcd_key(key);
        let entry = {
            let mut inner = self.lock();
            Self::apply_fault(&mut inner, Operation::Get, &path)?;
            inner.data.get(&path).cloned()
        };
        let entry = entry.ok_or(StoreError::NotFound { key: path })?;
        Ok(Versioned {
            value: decode_etcd(key, &entry.value)?,
            revision: Revision(entry.mod_revision.to_string()),
        })
    }

    async fn list_reporting<K: StoredKind>(
        &self,
    ) -> Result<(Vec<Versioned<K>>, Vec<StoreError>), StoreError> {
        self.list_under::<K>(K::etcd_prefix())
    }

    async fn list_host_affinities(
        &self,
        host: &str,
    ) -> Result<Vec<Versioned<Affinity>>, StoreError> {
        let prefix = format!("{}{host}/", keys::AFFINITY_HOST_PREFIX);
        Ok(warn_invalid(self.list_under::<Affinity>(&prefix)?))
    }

    async fn create<K: StoredKind>(&self, value: &K) -> Result<Revision, StoreError> {
        let path = K::etcd_key(&value.key());
        let bytes = value.etcd_encode().map_err(|reason| StoreError::Invalid {
            key: path.clone(),
            reason,
        })?;
        let mut inner = self.lock();
        Self::apply_fault(&mut inner, Operation::Create, &path)?;
        if inner.data.contains_key(&path) {
            return Err(StoreError::AlreadyExists { key: path });
        }
        let revision = self.write(&mut inner, &path, Some(bytes));
        Ok(Revision(revision.to_string()))
    }

    async fn update<K: StoredKind>(
        &self,
        value: &K,
        revision: &Revision,
    ) -> Result<Revision, StoreError> {
        let path = K::etcd_key(&value.key());
        let expected = parse_revision(&path, revision)?;
        let bytes = value.etcd_encode().map_err(|reason| StoreError::Invalid {
            key: path.clone(),
            reason,
        })?;
        let mut inner = self.lock();
        Self::apply_fault(&mut inner, Operation::Update, &path)?;
        match inner.data.get(&path) {
            None => return Err(StoreError::NotFound { key: path }),
            Some(entry) if entry.mod_revision != expected => {
                return Err(StoreError::Conflict { key: path })
            }
            Some(_) => {}
        }
        let revision = self.write(&mut inner, &path, Some(bytes));
        Ok(Revision(revision.to_string()))
    }

    async fn delete<K: StoredKind>(
        &self,
        key: &K::Key,
        revision: &Revision,
    ) -> Result<(), StoreError> {
        let path = K::etcd_key(key);
        let expected = parse_revision(&path, revision)?;
        let mut inner = self.lock();
        Self::apply_fault(&mut inner, Operation::Delete, &path)?;
        match inner.data.get(&path) {
            None => return Err(StoreError::NotFound { key: path }),
            Some(entry) if entry.mod_revision != expected => {
                return Err(StoreError::Conflict { key: path })
            }
            Some(_) => {}
        }
        self.write(&mut inner, &path, None);
        Ok(())
    }

    async fn watch<K: StoredKind>(
        &self,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>, StoreError>>, StoreError> {
        let receiver = BroadcastStream(self.events.subscribe());
        let prefix = K::etcd_prefix();
        let stream = receiver.into_stream().filter_map(move |event| async move {
            let Some(event) = event else {
                return Some(Err(StoreError::Unavailable {
                    key: prefix.to_string(),
                    reason: "watcher fell behind and missed events".to_string(),
                }));
            };
            let key = K::etcd_parse_key(&event.key)?;
            Some(match event.value {
                None => Ok(WatchEvent::Deleted(key)),
                Some(bytes) => decode_etcd::<K>(&key, &bytes).map(|value| {
                    WatchEvent::Put(Versioned {
                        value,
                        revision: Revision(event.revision.to_string()),
                    })
                }),
            })
        });
        Ok(stream.boxed())
    }
}
