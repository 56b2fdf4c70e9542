//! Default IP pools and the cluster-wide default configuration objects (reference §8.1 step 12,
//! §8.3).
//!
//! Contract: an automatic CIDR comes from kubeadm's podSubnet, else 192.168.0.0/16 (or the first
//! free 172.16-31.0.0/16) for IPv4 and a random ULA /48 for IPv6. A default pool is created only when no pool of its family exists, under the fixed
//! names `default-ipv4-ippool` / `default-ipv6-ippool` with create-if-absent, so two nodes
//! starting together end with one pool (the loser sees AlreadyExists and carries on).
//! BGPConfiguration `default` and FelixConfiguration `default` (and, on etcd, `node.<name>`) are
//! created when missing, with the fields calico-node gives them; existing ones are left alone.

use std::net::Ipv6Addr;

use ipnet::{IpNet, Ipv6Net};

use super::autodetect::default_ipv4_pool_cidr;
use super::interfaces::HostInterface;
use super::StartupError;
use crate::datastore::{AnyDatastore, Datastore, StoredKind};
use crate::resources::meta::new_uid;
use crate::resources::FromResource;
use crate::resources::{BGPConfiguration, FelixConfiguration, IPPool};
use starling_model::config::{Config, DefaultPoolConfig, PoolCidrSource};
use starling_model::pool::EncapMode;
use starling_model::store::StoreError;
use starling_model::wire::{BGPConfigurationSpec, FelixConfigurationSpec, IPPoolSpec};
use starling_model::IpPool;

fn encap_text(mode: EncapMode) -> &'static str {
    match mode {
        EncapMode::Never => "Never",
        EncapMode::Always => "Always",
        EncapMode::CrossSubnet => "CrossSubnet",
    }
}

/// A random RFC 4193 unique local /48 (`fdXX:XXXX:XXXX::/48`).
pub fn random_ula_prefix() -> Ipv6Net {
    let random: [u8; 5] = rand::random();
    let mut octets = [0u8; 16];
    octets[0] = 0xfd;
    octets[1..6].copy_from_slice(&random);
    // 48 is a valid IPv6 prefix length.
    Ipv6Net::new(Ipv6Addr::from(octets), 48).unwrap_or_default()
}

/// The spec calico-node gives a default pool.
pub fn default_pool_spec(pool: &DefaultPoolConfig, cidr: IpNet) -> IPPoolSpec {
    IPPoolSpec {
        cidr: cidr.trunc().to_string(),
        ipip_mode: Some(encap_text(pool.ipip_mode).to_string()),
        vxlan_mode: Some(encap_text(pool.vxlan_mode).to_string()),
        nat_outgoing: Some(pool.nat_outgoing),
        block_size: Some(i64::from(pool.block_size)),
        node_selector: Some(pool.node_selector.to_string()),
        disable_bgp_export: Some(pool.disable_bgp_export),
        ..IPPoolSpec::default()
    }
}

/// Gives an object the metadata a v3 client sets on create (etcd only: the API server sets its own).
fn stamp_created(store: &AnyDatastore, metadata: &mut kube::api::ObjectMeta) {
    if !matches!(store, AnyDatastore::Kube(_)) {
        metadata.uid = Some(new_uid());
        metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
    }
}

/// Creates `value` unless an object with its name exists; true when this call created it.
async fn create_if_absent<K: StoredKind>(
    store: &AnyDatastore,
    value: &K,
    what: &str,
) -> Result<bool, StartupError> {
    match store.create(value).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(source) => Err(StartupError::Store {
            action: format!("creating {what}"),
            source,
        }),
    }
}

/// Whether IPv6 default pools apply: `FELIX_IPV6SUPPORT` is not false and the kernel has IPv6.
fn ipv6_enabled(config: &Config) -> bool {
    config.felix.ipv6_support != Some(false) && std::path::Path::new("/proc/sys/net/ipv6").exists()
}

/// Ensures a pool of each configured family exists (reference §8.3); returns the names created.
pub async fn ensure_default_pools(
    config: &Config,
    store: &AnyDatastore,
    interfaces: &[HostInterface],
) -> Result<Vec<String>, StartupError> {
    let wanted = [
        (config.default_pools.ipv4.as_ref(), true),
        (
            config
                .default_pools
                .ipv6
                .as_ref()
                .filter(|_| ipv6_enabled(config)),
            false,
        ),
    ];
    if wanted.iter().all(|(pool, _)| pool.is_none()) {
        tracing::info!("no default IP pools configured");
        return Ok(Vec::new());
    }
    let existing = store
        .list::<IPPool>()
        .await
        .map_err(|source| StartupError::Store {
            action: "listing IP pools".to_string(),
            source,
        })?;
    let automatic = wanted
        .iter()
        .any(|(pool, _)| pool.is_some_and(|pool| pool.cidr == PoolCidrSource::Automatic));
    let (kubeadm_ipv4, kubeadm_ipv6) = match store {
        AnyDatastore::Kube(kube) if automatic => {
            super::kubeadm::read_pod_subnets(kube.client()).await?
        }
        _ => (None, None),
    };
    let mut created = Vec::new();
    for (pool, is_ipv4) in wanted {
        let Some(pool) = pool else { continue };
        let present = existing.iter().any(|stored| {
            stored
                .value
                .spec
                .cidr
                .parse::<IpNet>()
                .is_ok_and(|cidr| matches!(cidr, IpNet::V4(_)) == is_ipv4)
        });
        if present {
            continue;
        }
        let cidr = match (&pool.cidr, is_ipv4) {
            (PoolCidrSource::Explicit(cidr), _) => *cidr,
            (PoolCidrSource::Automatic, true) => kubeadm_ipv4.unwrap_or_else(|| {
                IpNet::V4(
                    default_ipv4_pool_cidr(interfaces)
                        .unwrap_or_else(|| "192.168.0.0/16".parse().unwrap_or_default()),
                )
            }),
            (PoolCidrSource::Automatic, false) => {
                kubeadm_ipv6.unwrap_or_else(|| IpNet::V6(random_ula_prefix()))
            }
        };
        let name = if is_ipv4 {
            DefaultPoolConfig::IPV4_NAME
        } else {
            DefaultPoolConfig::IPV6_NAME
        };
        let spec = default_pool_spec(pool, cidr);
        // Refuse to write a pool the daemon itself would reject.
        IpPool::from_resource(&IPPool::new(name, spec.clone())).map_err(|error| {
            StartupError::Invalid {
                reason: format!("default pool {name} ({cidr}) is invalid: {error}"),
            }
        })?;
        let mut object = IPPool::new(name, spec);
        stamp_created(store, &mut object.metadata);
        if create_if_absent(store, &object, &format!("IP pool {name}")).await? {
            tracing::info!(pool = name, %cidr, "created default IP pool");
            created.push(name.to_string());
        }
    }
    Ok(created)
}

/// BGPConfiguration `default` and FelixConfiguration `default` (plus `node.<name>` on etcd)
/// when missing.
pub async fn ensure_default_configuration(
    store: &AnyDatastore,
    node_name: &str,
) -> Result<(), StartupError> {
    let mut bgp = BGPConfiguration::new("default", BGPConfigurationSpec::default());
    stamp_created(store, &mut bgp.metadata);
    create_if_absent(store, &bgp, "BGPConfiguration default").await?;

    let mut felix = FelixConfiguration::new(
        "default",
        FelixConfigurationSpec {
            reporting_interval: Some("0s".to_string()),
            log_severity_screen: Some("Info".to_string()),
            ..FelixConfigurationSpec::default()
        },
    );
    stamp_created(store, &mut felix.metadata);
    create_if_absent(store, &felix, "FelixConfiguration default").await?;

    if !matches!(store, AnyDatastore::Kube(_)) {
        let name = format!("node.{node_name}");
        let mut per_node = FelixConfiguration::new(
            &name,
            FelixConfigurationSpec {
                default_endpoint_to_host_action: Some("Return".to_string()),
                ..FelixConfigurationSpec::default()
            },
        );
        stamp_created(store, &mut per_node.metadata);
        create_if_absent(store, &per_node, &format!("FelixConfiguration {name}")).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ula_prefix_is_fd_slash_48() {
        let prefix = random_ula_prefix();
        assert_eq!(prefix.prefix_len(), 48);
        assert_eq!(prefix.addr().octets()[0], 0xfd);
        assert_eq!(prefix, prefix.trunc());
    }
}
