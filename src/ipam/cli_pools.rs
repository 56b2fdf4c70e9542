//! A minimal IPPool reader for the `starling ipam` commands, so they work before the shared
//! resource layer lands: the v3 object in etcd (`/calico/resources/v3/projectcalico.org/ippools/`)
//! or the v1 CRD, converted into `model::IpPool` with Calico's defaults (§1.1).
//! The integrator may replace this with the shared `crate::resources` IPPool conversion.

use std::collections::BTreeSet;

use ipnet::IpNet;
use kube::api::ObjectMeta;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::datastore::StoredKind;
use crate::model::{AllowedUse, AssignmentMode, EncapMode, IpPool};
use crate::selector::Selector;

const POOL_PREFIX: &str = "/calico/resources/v3/projectcalico.org/ippools/";

/// The subset of the IPPool spec IPAM needs.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "crd.projectcalico.org",
    version = "v1",
    kind = "IPPoolObject",
    plural = "ippools"
)]
pub struct IPPoolObjectSpec {
    pub cidr: String,
    #[serde(rename = "blockSize", default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(rename = "ipipMode", default, skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<String>,
    #[serde(rename = "vxlanMode", default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<String>,
    #[serde(rename = "natOutgoing", default)]
    pub nat_outgoing: bool,
    #[serde(
        rename = "nodeSelector",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub node_selector: Option<String>,
    #[serde(
        rename = "namespaceSelector",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub namespace_selector: Option<String>,
    #[serde(rename = "allowedUses", default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<String>,
    #[serde(
        rename = "assignmentMode",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub assignment_mode: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct EtcdPool {
    #[serde(default)]
    metadata: serde_json::Value,
    spec: IPPoolObjectSpec,
}

fn encap(text: Option<&str>, field: &str) -> Result<EncapMode, String> {
    match text.unwrap_or("") {
        "" | "Never" => Ok(EncapMode::Never),
        "Always" => Ok(EncapMode::Always),
        "CrossSubnet" => Ok(EncapMode::CrossSubnet),
        other => Err(format!(
            "{field} {other:?} is not Never, Always or CrossSubnet"
        )),
    }
}

fn to_pool(name: &str, spec: &IPPoolObjectSpec, deleting: bool) -> Result<IpPool, String> {
    let cidr: IpNet = spec
        .cidr
        .parse()
        .map_err(|_| format!("cidr {:?} is not a CIDR", spec.cidr))?;
    let cidr = cidr.trunc();
    let block_size = spec.block_size.filter(|b| *b > 0).unwrap_or(match cidr {
        IpNet::V4(_) => 26,
        IpNet::V6(_) => 122,
    });
    let parse_selector = |text: Option<&String>, field: &str| {
        Selector::parse(text.map(String::as_str).unwrap_or("")).map_err(|e| format!("{field}: {e}"))
    };
    let mut allowed_uses = BTreeSet::new();
    for usage in &spec.allowed_uses {
        allowed_uses.insert(match usage.as_str() {
            "Workload" => AllowedUse::Workload,
            "Tunnel" => AllowedUse::Tunnel,
            "LoadBalancer" => AllowedUse::LoadBalancer,
            other => return Err(format!("allowedUses entry {other:?} is unknown")),
        });
    }
    if allowed_uses.is_empty() {
        allowed_uses = IpPool::default_allowed_uses();
    }
    Ok(IpPool {
        name: name.to_string(),
        cidr,
        block_size,
        ipip_mode: encap(spec.ipip_mode.as_deref(), "ipipMode")?,
        vxlan_mode: encap(spec.vxlan_mode.as_deref(), "vxlanMode")?,
        nat_outgoing: spec.nat_outgoing,
        disabled: spec.disabled,
        disable_bgp_export: false,
        node_selector: parse_selector(spec.node_selector.as_ref(), "nodeSelector")?,
        namespace_selector: parse_selector(spec.namespace_selector.as_ref(), "namespaceSelector")?,
        allowed_uses,
        assignment_mode: match spec.assignment_mode.as_deref() {
            Some("Manual") => AssignmentMode::Manual,
            _ => AssignmentMode::Automatic,
        },
        deleting,
    })
}

/// A pool as the IPAM commands read it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPool(pub IpPool);

impl StoredKind for StoredPool {
    type Key = String;
    type Crd = IPPoolObject;

    fn key(&self) -> String {
        self.0.name.clone()
    }
    fn etcd_key(key: &String) -> String {
        format!("{POOL_PREFIX}{key}")
    }
    fn etcd_prefix() -> &'static str {
        POOL_PREFIX
    }
    fn etcd_parse_key(path: &str) -> Option<String> {
        let name = path.strip_prefix(POOL_PREFIX)?;
        (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
    }
    fn etcd_encode(&self) -> Result<Vec<u8>, String> {
        let pool = &self.0;
        let value = serde_json::json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "IPPool",
            "metadata": {"name": pool.name},
            "spec": crd_spec(pool),
        });
        serde_json::to_vec(&value).map_err(|e| e.to_string())
    }
    fn etcd_decode(key: &String, bytes: &[u8]) -> Result<StoredPool, String> {
        let value: EtcdPool = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let deleting = value.metadata.get("deletionTimestamp").is_some();
        to_pool(key, &value.spec, deleting).map(StoredPool)
    }
    fn kube_name(key: &String) -> String {
        key.clone()
    }
    fn to_crd(&self) -> IPPoolObject {
        IPPoolObject {
            metadata: ObjectMeta {
                name: Some(self.0.name.clone()),
                ..ObjectMeta::default()
            },
            spec: crd_spec(&self.0),
        }
    }
    fn from_crd(crd: &IPPoolObject) -> Result<StoredPool, String> {
        let name = crd.metadata.name.clone().unwrap_or_default();
        to_pool(&name, &crd.spec, crd.metadata.deletion_timestamp.is_some()).map(StoredPool)
    }
    fn crd_deleted(_: &IPPoolObject) -> bool {
        false
    }
    fn crd_mark_deleted(_: &mut IPPoolObject) -> bool {
        false
    }
}

fn encap_text(mode: EncapMode) -> Option<String> {
    match mode {
        EncapMode::Never => Some("Never".into()),
        EncapMode::Always => Some("Always".into()),
        EncapMode::CrossSubnet => Some("CrossSubnet".into()),
    }
}

fn crd_spec(pool: &IpPool) -> IPPoolObjectSpec {
    IPPoolObjectSpec {
        cidr: pool.cidr.to_string(),
        block_size: Some(pool.block_size),
        disabled: pool.disabled,
        ipip_mode: encap_text(pool.ipip_mode),
        vxlan_mode: encap_text(pool.vxlan_mode),
        nat_outgoing: pool.nat_outgoing,
        node_selector: Some(pool.node_selector.to_string()),
        namespace_selector: None,
        allowed_uses: pool.allowed_uses.iter().map(|u| format!("{u:?}")).collect(),
        assignment_mode: Some(format!("{:?}", pool.assignment_mode)),
    }
}
