//! Connections to the datastore and to the Kubernetes API that Services come from.

use anyhow::Context as _;

use crate::datastore::etcd_tls::EtcdTlsFiles;
use crate::datastore::{etcd::EtcdStore, kube::KubeStore, AnyDatastore};
use starling_model::config::{Config, Datastore as DatastoreSetting};

/// A Kubernetes client from a kubeconfig file.
async fn kube_client_from(path: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    let client_config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("using the kubeconfig {}", path.display()))?;
    kube::Client::try_from(client_config).context("building the Kubernetes client")
}

/// The Kubernetes API that Services and EndpointSlices come from: the datastore's client, or
/// with etcd `KUBECONFIG` / the in-cluster account. Without one no Service is advertised
/// (said once: the configured service ranges are still advertised).
pub async fn services_api(config: &Config, store: &AnyDatastore) -> Option<kube::Client> {
    let found = match (store, &config.datastore) {
        (AnyDatastore::Kube(kube), _) => Ok(kube.client()),
        (
            _,
            DatastoreSetting::Etcd {
                kubeconfig: Some(path),
                ..
            },
        ) => kube_client_from(path).await,
        _ => kube::Config::incluster()
            .context("no KUBECONFIG and no in-cluster service account")
            .and_then(|config| {
                kube::Client::try_from(config).context("building the Kubernetes client")
            }),
    };
    match found {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "no Kubernetes API for Services and EndpointSlices: only the configured service ranges are advertised"
            );
            None
        }
    }
}

/// Connects to the configured datastore.
pub async fn connect(config: &Config) -> anyhow::Result<AnyDatastore> {
    match &config.datastore {
        DatastoreSetting::Kubernetes {
            kubeconfig: Some(path),
        } => Ok(AnyDatastore::Kube(KubeStore::new(
            kube_client_from(path).await?,
        ))),
        DatastoreSetting::Kubernetes { kubeconfig: None } => {
            // No kubeconfig: the in-cluster service account (kube's default loader).
            let store = KubeStore::connect()
                .await
                .context("connecting to the Kubernetes API")?;
            Ok(AnyDatastore::Kube(store))
        }
        DatastoreSetting::Etcd {
            endpoints,
            ca_cert_file,
            cert_file,
            key_file,
            ..
        } => {
            let files = EtcdTlsFiles {
                ca_cert_file: ca_cert_file.clone(),
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            };
            let store = EtcdStore::connect_with_tls(endpoints, &files).await?;
            Ok(AnyDatastore::Etcd(store))
        }
    }
}
