//! Kubernetes API backend: the crd.projectcalico.org/v1 objects through kube-rs (reference §3
//! "Concurrency").
//!
//! Revision = resourceVersion; an update carries it, so the API server answers 409 on a race.
//! Kubernetes deletes cannot be conditioned on resourceVersion reliably, so (as Calico does) a delete
//! first CAS-updates the object with `deleted: true` and then deletes with a UID precondition.
//! Readers that see `deleted: true` finish the delete and report "not found".
//! `watch` starts with the current objects (as `Put` events), then follows changes.

use futures::stream::{BoxStream, StreamExt};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use super::{keys, Datastore, Revision, StoreError, StoredKind, Versioned, WatchEvent};
use starling_ipam::records::Affinity;

/// A Kubernetes API client. Cheap to clone.
#[derive(Clone)]
pub struct KubeStore {
    client: Client,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeStore")
    }
}

fn describe<K: StoredKind>(key: &K::Key) -> String {
    format!("{}/{}", K::Crd::plural(&()), K::kube_name(key))
}

fn map_error(key: &str, error: kube::Error) -> StoreError {
    let key = key.to_string();
    match &error {
        kube::Error::Api(status) => match status.code {
            404 => StoreError::NotFound { key },
            409 => {
                if status.reason == "AlreadyExists" {
                    StoreError::AlreadyExists { key }
                } else {
                    StoreError::Conflict { key }
                }
            }
            400 | 422 => StoreError::Invalid {
                key,
                reason: status.message.clone(),
            },
            _ => StoreError::Unavailable {
                key,
                reason: error.to_string(),
            },
        },
        _ => StoreError::Unavailable {
            key,
            reason: error.to_string(),
        },
    }
}

fn revision_of<R: Resource>(object: &R, key: &str) -> Result<Revision, StoreError> {
    object
        .meta()
        .resource_version
        .clone()
        .map(Revision)
        .ok_or_else(|| StoreError::Invalid {
            key: key.to_string(),
            reason: "object has no resourceVersion".to_string(),
        })
}

impl KubeStore {
    pub fn new(client: Client) -> KubeStore {
        KubeStore { client }
    }

    /// Connects with the standard kube-rs configuration (KUBECONFIG, in-cluster, ...).
    pub async fn connect() -> Result<KubeStore, StoreError> {
        let client = Client::try_default()
            .await
            .map_err(|e| StoreError::Unavailable {
                key: "kubernetes".to_string(),
                reason: e.to_string(),
            })?;
        Ok(KubeStore { client })
    }

    /// The underlying client, for reads outside the IPAM kinds (pods, nodes).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn api<K: StoredKind>(&self) -> Api<K::Crd> {
        Api::all(self.client.clone())
    }

    /// Deletes an object already marked `deleted: true`, guarded by its UID.
    async fn finish_delete<K: StoredKind>(
        &self,
        object: &K::Crd,
        key: &str,
    ) -> Result<(), StoreError> {
        let parameters = DeleteParams {
            preconditions: Some(Preconditions {
                uid: object.meta().uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self
            .api::<K>()
            .delete(&object.name_any(), &parameters)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => match map_error(key, error) {
                // Somebody else finished it first: the outcome we wanted.
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }
}

impl Datastore for KubeStore {
    async fn get<K: StoredKind>(&self, key: &K::Key) -> Result<Versioned<K>, StoreError> {
        let description = describe::<K>(key);
        let object = self
            .api::<K>()
            .get_opt(&K::kube_name(key))
            .await
            .map_err(|e| map_error(&description, e))?
            .ok_or_else(|| StoreError::NotFound {
                key: description.clone(),
            })?;
        if K::crd_deleted(&object) {
            self.finish_delete::<K>(&object, &description).await?;
            return Err(StoreError::NotFound { key: description });
        }
        let value = K::from_crd(&object).map_err(|reason| StoreError::Invalid {
            key: description.clone(),
            reason,
        })?;
        Ok(Versioned {
            value,
            revision: revision_of(&object, &description)?,
        })
    }

    async fn list_reporting<K: StoredKind>(
        &self,
    ) -> Result<(Vec<Versioned<K>>, Vec<StoreError>), StoreError> {
        let plural = K::Crd::plural(&()).to_string();
        let objects = self
            .api::<K>()
            .list(&ListParams::default())
            .await
            .map_err(|e| map_error(&plural, e))?;
        let mut values = Vec::new();
        let mut invalid = Vec::new();
        for object in objects.items {
            let description = format!("{plural}/{}", object.name_any());
            if K::crd_deleted(&object) {
                if let Err(error) = self.finish_delete::<K>(&object, &description).await {
                    tracing::debug!(%error, "could not finish a pending delete");
                }
                continue;
            }
            match K::from_crd(&object) {
                Ok(value) => match revision_of(&object, &description) {
                    Ok(revision) => values.push(Versioned { value, revision }),
                    Err(error) => invalid.push(error),
                },
                Err(reason) => invalid.push(StoreError::Invalid {
                    key: description,
                    reason,
                }),
            }
        }
        Ok((values, invalid))
    }

    async fn list_host_affinities(
        &self,
        host: &str,
    ) -> Result<Vec<Versioned<Affinity>>, StoreError> {
        // Calico labels every BlockAffinity with the hash of its host (and UpgradeHost adds the
        // label to old objects), so the API server does the filtering.
        let selector = format!(
            "{}={}",
            keys::LABEL_HOSTNAME_HASH,
            keys::hostname_hash(host)
        );
        let objects = self
            .api::<Affinity>()
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| map_error("blockaffinities", e))?;
        let mut values = Vec::new();
        for object in objects.items {
            let description = format!("blockaffinities/{}", object.name_any());
            if Affinity::crd_deleted(&object) {
                continue;
            }
            match (
                Affinity::from_crd(&object),
                revision_of(&object, &description),
            ) {
                (Ok(value), Ok(revision)) if value.key.host == host => {
                    values.push(Versioned { value, revision })
                }
                (Ok(_), Ok(_)) => {}
                (Err(reason), _) => {
                    tracing::warn!(key = %description, %reason, "ignoring invalid stored object")
                }
                (_, Err(error)) => tracing::warn!(%error, "ignoring invalid stored object"),
            }
        }
        Ok(values)
    }

    async fn create<K: StoredKind>(&self, value: &K) -> Result<Revision, StoreError> {
        let description = describe::<K>(&value.key());
        let created = self
            .api::<K>()
            .create(&PostParams::default(), &value.to_crd())
            .await
            .map_err(|e| match map_error(&description, e) {
                StoreError::Conflict { key } => StoreError::AlreadyExists { key },
                other => other,
            })?;
        revision_of(&created, &description)
    }

    async fn update<K: StoredKind>(
        &self,
        value: &K,
        revision: &Revision,
    ) -> Result<Revision, StoreError> {
        let key = value.key();
        let description = describe::<K>(&key);
        let mut object = value.to_crd();
        object.meta_mut().resource_version = Some(revision.0.clone());
        let replaced = self
            .api::<K>()
            .replace(&K::kube_name(&key), &PostParams::default(), &object)
            .await
            .map_err(|e| map_error(&description, e))?;
        revision_of(&replaced, &description)
    }

    async fn delete<K: StoredKind>(
        &self,
        key: &K::Key,
        revision: &Revision,
    ) -> Result<(), StoreError> {
        let description = describe::<K>(key);
        let name = K::kube_name(key);
        let api = self.api::<K>();
        let mut object = api
            .get_opt(&name)
            .await
            .map_err(|e| map_error(&description, e))?
            .ok_or_else(|| StoreError::NotFound {
                key: description.clone(),
            })?;
        if object.meta().resource_version.as_deref() != Some(revision.0.as_str()) {
            return Err(StoreError::Conflict { key: description });
        }
        if K::crd_mark_deleted(&mut object) {
            object = api
                .replace(&name, &PostParams::default(), &object)
                .await
                .map_err(|e| map_error(&description, e))?;
        }
        let parameters = DeleteParams {
            preconditions: Some(Preconditions {
                uid: object.meta().uid.clone(),
                resource_version: object.meta().resource_version.clone(),
            }),
            ..DeleteParams::default()
        };
        api.delete(&name, &parameters)
            .await
            .map_err(|e| map_error(&description, e))?;
        Ok(())
    }

    async fn watch<K: StoredKind>(
        &self,
    ) -> Result<BoxStream<'static, Result<WatchEvent<K>, StoreError>>, StoreError> {
        let plural = K::Crd::plural(&()).to_string();
        let stream =
            watcher(self.api::<K>(), watcher::Config::default()).filter_map(move |event| {
                let plural = plural.clone();
                async move {
                    let to_put = |object: K::Crd| -> Result<WatchEvent<K>, StoreError> {
                        let description = format!("{plural}/{}", object.name_any());
                        if K::crd_deleted(&object) {
                            // A delete in progress: report it as gone now.
                            return K::from_crd(&object)
                                .map(|value| WatchEvent::Deleted(value.key()))
                                .map_err(|reason| StoreError::Invalid {
                                    key: description,
                                    reason,
                                });
                        }
                        let revision = revision_of(&object, &description)?;
                        K::from_crd(&object)
                            .map(|value| WatchEvent::Put(Versioned { value, revision }))
                            .map_err(|reason| StoreError::Invalid {
                                key: description,
                                reason,
                            })
                    };
                    match event {
                        Err(error) => Some(Err(StoreError::Unavailable {
                            key: plural.clone(),
                            reason: error.to_string(),
                        })),
                        Ok(watcher::Event::Apply(object))
                        | Ok(watcher::Event::InitApply(object)) => Some(to_put(object)),
                        Ok(watcher::Event::Delete(object)) => Some(
                            K::from_crd(&object)
                                .map(|value| WatchEvent::Deleted(value.key()))
                                .map_err(|reason| StoreError::Invalid {
                                    key: format!("{plural}/{}", object.name_any()),
                                    reason,
                                }),
                        ),
                        Ok(watcher::Event::Init) | Ok(watcher::Event::InitDone) => None,
                    }
                }
            });
        Ok(stream.boxed())
    }
}
