//! `StoredKind` for the configuration-like IPAM records: the IPAM configuration singleton and
//! IP reservations (reference §1.5, §1.6, §3).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::keys;
use super::kinds::named;
use super::StoredKind;
use crate::resources::ipam::{EtcdIpamConfig, IPAMConfig, IPAMConfigSpec};
use crate::resources::IPReservation;
use starling_ipam::records::{IpamConfig, IpamConfigKey, Reservation};
use starling_model::wire::IPReservationSpec;

fn max_blocks(raw: Option<i64>) -> Result<u32, String> {
    let raw = raw.unwrap_or(0);
    u32::try_from(raw).map_err(|_| format!("maxBlocksPerHost {raw} is outside 0..4294967295"))
}

impl StoredKind for IpamConfig {
    type Key = IpamConfigKey;
    type Crd = IPAMConfig;

    fn key(&self) -> IpamConfigKey {
        IpamConfigKey
    }
    fn etcd_key(_: &IpamConfigKey) -> String {
        keys::IPAM_CONFIG_KEY.to_string()
    }
    fn etcd_prefix() -> &'static str {
        keys::IPAM_CONFIG_KEY
    }
    fn etcd_parse_key(path: &str) -> Option<IpamConfigKey> {
        (path == keys::IPAM_CONFIG_KEY).then_some(IpamConfigKey)
    }
    fn etcd_encode(&self) -> Result<Vec<u8>, String> {
        let value = EtcdIpamConfig {
            strict_affinity: self.strict_affinity,
            auto_allocate_blocks: self.auto_allocate_blocks,
            max_blocks_per_host: (self.max_blocks_per_host > 0)
                .then_some(i64::from(self.max_blocks_per_host)),
        };
        serde_json::to_vec(&value).map_err(|e| e.to_string())
    }
    fn etcd_decode(_: &IpamConfigKey, bytes: &[u8]) -> Result<IpamConfig, String> {
        let value: EtcdIpamConfig = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(IpamConfig {
            strict_affinity: value.strict_affinity,
            auto_allocate_blocks: value.auto_allocate_blocks,
            max_blocks_per_host: max_blocks(value.max_blocks_per_host)?,
        })
    }
    fn kube_name(_: &IpamConfigKey) -> String {
        "default".to_string()
    }
    fn to_crd(&self) -> IPAMConfig {
        IPAMConfig {
            metadata: named("default".to_string()),
            spec: IPAMConfigSpec {
                strict_affinity: self.strict_affinity,
                auto_allocate_blocks: self.auto_allocate_blocks,
                max_blocks_per_host: (self.max_blocks_per_host > 0)
                    .then_some(i64::from(self.max_blocks_per_host)),
            },
        }
    }
    fn from_crd(crd: &IPAMConfig) -> Result<IpamConfig, String> {
        Ok(IpamConfig {
            strict_affinity: crd.spec.strict_affinity,
            auto_allocate_blocks: crd.spec.auto_allocate_blocks,
            max_blocks_per_host: max_blocks(crd.spec.max_blocks_per_host)?,
        })
    }
    fn crd_deleted(_: &IPAMConfig) -> bool {
        false
    }
    fn crd_mark_deleted(_: &mut IPAMConfig) -> bool {
        false
    }
}

/// The etcd-mode v3 object.
#[derive(Serialize, Deserialize)]
struct EtcdReservation {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: serde_json::Value,
    spec: IPReservationSpec,
}

fn parse_reserved(cidrs: &[String]) -> Result<Vec<IpNet>, String> {
    cidrs
        .iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("reservedCIDRs entry {text:?} is not a CIDR"))
        })
        .collect()
}

impl StoredKind for Reservation {
    type Key = String;
    type Crd = IPReservation;

    fn key(&self) -> String {
        self.name.clone()
    }
    fn etcd_key(key: &String) -> String {
        keys::reservation_key(key)
    }
    fn etcd_prefix() -> &'static str {
        keys::RESERVATION_PREFIX
    }
    fn etcd_parse_key(path: &str) -> Option<String> {
        keys::parse_reservation_key(path)
    }
    fn etcd_encode(&self) -> Result<Vec<u8>, String> {
        let mut metadata = self
            .metadata
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        if let Some(map) = metadata.as_object_mut() {
            map.insert("name".into(), self.name.clone().into());
            map.remove("resourceVersion");
        }
        let value = EtcdReservation {
            api_version: "projectcalico.org/v3".to_string(),
            kind: "IPReservation".to_string(),
            metadata,
            spec: IPReservationSpec {
                reserved_cidrs: Some(self.reserved_cidrs.iter().map(|c| c.to_string()).collect()),
            },
        };
        serde_json::to_vec(&value).map_err(|e| e.to_string())
    }
    fn etcd_decode(key: &String, bytes: &[u8]) -> Result<Reservation, String> {
        let value: EtcdReservation = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(Reservation {
            name: key.clone(),
            reserved_cidrs: parse_reserved(
                value.spec.reserved_cidrs.as_deref().unwrap_or_default(),
            )?,
            metadata: Some(value.metadata),
        })
    }
    fn kube_name(key: &String) -> String {
        key.clone()
    }
    fn to_crd(&self) -> IPReservation {
        IPReservation {
            metadata: named(self.name.clone()),
            spec: IPReservationSpec {
                reserved_cidrs: Some(self.reserved_cidrs.iter().map(|c| c.to_string()).collect()),
            },
        }
    }
    fn from_crd(crd: &IPReservation) -> Result<Reservation, String> {
        Ok(Reservation {
            name: crd.metadata.name.clone().unwrap_or_default(),
            reserved_cidrs: parse_reserved(crd.spec.reserved_cidrs.as_deref().unwrap_or_default())?,
            metadata: None,
        })
    }
    fn crd_deleted(_: &IPReservation) -> bool {
        false
    }
    fn crd_mark_deleted(_: &mut IPReservation) -> bool {
        false
    }
}
