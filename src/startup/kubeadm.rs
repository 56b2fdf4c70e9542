//! The pod CIDRs of a kubeadm cluster (reference §8.3): `networking.podSubnet` of the
//! `ClusterConfiguration` document in ConfigMap `kube-system/kubeadm-config`, used for default
//! pools whose `…_CIDR` variable is unset.
//!
//! Contract: [`pod_subnets`] is pure; [`read_pod_subnets`] reads the ConfigMap and treats "not
//! found" and "forbidden" as "not a kubeadm cluster", like calico-node.

use ipnet::IpNet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::StartupError;

/// The IPv4 and IPv6 pod subnets named by a kubeadm `ClusterConfiguration` (comma-separated in
/// `networking.podSubnet`); unparsable text yields none.
pub fn pod_subnets(cluster_configuration: &str) -> (Option<IpNet>, Option<IpNet>) {
    let Ok(document) = serde_saphyr::from_str::<serde_json::Value>(cluster_configuration) else {
        tracing::warn!("ignoring an unparsable kubeadm ClusterConfiguration");
        return (None, None);
    };
    let subnets = document["networking"]["podSubnet"].as_str().unwrap_or("");
    let parsed: Vec<IpNet> = subnets
        .split(',')
        .filter_map(|item| item.trim().parse::<IpNet>().ok())
        .map(|net| net.trunc())
        .collect();
    (
        parsed
            .iter()
            .copied()
            .find(|net| matches!(net, IpNet::V4(_))),
        parsed
            .iter()
            .copied()
            .find(|net| matches!(net, IpNet::V6(_))),
    )
}

/// Reads the kubeadm pod subnets, if this is a kubeadm cluster.
pub async fn read_pod_subnets(
    client: kube::Client,
) -> Result<(Option<IpNet>, Option<IpNet>), StartupError> {
    let api: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    match api.get("kubeadm-config").await {
        Ok(config_map) => Ok(config_map
            .data
            .as_ref()
            .and_then(|data| data.get("ClusterConfiguration"))
            .map(|text| pod_subnets(text))
            .unwrap_or((None, None))),
        Err(kube::Error::Api(status)) if matches!(status.code, 401 | 403 | 404) => Ok((None, None)),
        Err(error) => Err(StartupError::Kubernetes {
            action: "reading ConfigMap kube-system/kubeadm-config".to_string(),
            reason: error.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_stack_pod_subnet() {
        let text = "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n\
                    networking:\n  podSubnet: 10.85.0.0/16, fd00:85::/56\n  serviceSubnet: 10.96.0.0/12\n";
        let (v4, v6) = pod_subnets(text);
        assert_eq!(v4.unwrap().to_string(), "10.85.0.0/16");
        assert_eq!(v6.unwrap().to_string(), "fd00:85::/56");
    }

    #[test]
    fn missing_or_broken_configuration_gives_nothing() {
        assert_eq!(pod_subnets("networking: {}\n"), (None, None));
        assert_eq!(pod_subnets(": : :\n\t- ["), (None, None));
    }
}
