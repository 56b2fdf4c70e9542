//! Calico node information in both datastores, converted to and from `model::CalicoNode`.
//!
//! * KDD (reference §2.1): the Kubernetes Node's `projectcalico.org/*` annotations, its labels
//!   merged with the JSON map in `projectcalico.org/labels` (Kubernetes labels win), and its
//!   `status.addresses` InternalIPs. Writing sets an annotation per non-empty field and deletes
//!   the annotation of every empty one.
//! * etcd (reference §1.9): the `projectcalico.org/v3` Node resource ([`CalicoNodeResource`]).
//!
//! A value that does not parse (a bad IPv4Address, say) is ignored with a warning, as Calico does:
//! one bad annotation must not hide the rest of the node.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};

use starling_model::wire::V3Object;
use starling_model::{AsNumber, CalicoNode};

/// Kubernetes Node annotation names (reference §2.1).
pub mod annotation {
    pub const IPV4_ADDRESS: &str = "projectcalico.org/IPv4Address";
    pub const IPV6_ADDRESS: &str = "projectcalico.org/IPv6Address";
    pub const IPV4_IPIP_TUNNEL_ADDR: &str = "projectcalico.org/IPv4IPIPTunnelAddr";
    pub const AS_NUMBER: &str = "projectcalico.org/ASNumber";
    pub const ROUTE_REFLECTOR_CLUSTER_ID: &str = "projectcalico.org/RouteReflectorClusterID";
    pub const IPV4_VXLAN_TUNNEL_ADDR: &str = "projectcalico.org/IPv4VXLANTunnelAddr";
    pub const VXLAN_TUNNEL_MAC_ADDR: &str = "projectcalico.org/VXLANTunnelMACAddr";
    pub const IPV6_VXLAN_TUNNEL_ADDR: &str = "projectcalico.org/IPv6VXLANTunnelAddr";
    pub const VXLAN_TUNNEL_MAC_ADDR_V6: &str = "projectcalico.org/VXLANTunnelMACAddrV6";
    pub const LABELS: &str = "projectcalico.org/labels";
}

/// Parses one optional field, logging and dropping a value that does not parse.
fn parse_or_warn<T>(node: &str, field: &str, value: Option<&str>) -> Option<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let text = value?.trim();
    if text.is_empty() {
        return None;
    }
    match text.parse::<T>() {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            tracing::warn!(node, field, value = text, %error, "ignoring invalid Calico node field");
            None
        }
    }
}

/// The node fields Calico keeps as strings, whichever datastore they came from.
#[derive(Default)]
struct RawNodeFields<'a> {
    ipv4_address: Option<&'a str>,
    ipv6_address: Option<&'a str>,
    ipv4_ipip_tunnel_addr: Option<&'a str>,
    as_number: Option<&'a str>,
    route_reflector_cluster_id: Option<&'a str>,
    ipv4_vxlan_tunnel_addr: Option<&'a str>,
    vxlan_tunnel_mac: Option<&'a str>,
    ipv6_vxlan_tunnel_addr: Option<&'a str>,
    vxlan_tunnel_mac_v6: Option<&'a str>,
}

fn parse_fields(name: &str, raw: &RawNodeFields<'_>, node: &mut CalicoNode) {
    node.ipv4_address = parse_or_warn(name, "ipv4Address", raw.ipv4_address);
    node.ipv6_address = parse_or_warn(name, "ipv6Address", raw.ipv6_address);
    node.ipv4_ipip_tunnel_addr =
        parse_or_warn(name, "ipv4IPIPTunnelAddr", raw.ipv4_ipip_tunnel_addr);
    node.as_number = parse_or_warn::<AsNumber>(name, "asNumber", raw.as_number);
    node.route_reflector_cluster_id = parse_or_warn(
        name,
        "routeReflectorClusterID",
        raw.route_reflector_cluster_id,
    );
    node.ipv4_vxlan_tunnel_addr =
        parse_or_warn(name, "ipv4VXLANTunnelAddr", raw.ipv4_vxlan_tunnel_addr);
    node.vxlan_tunnel_mac = parse_or_warn(name, "vxlanTunnelMACAddr", raw.vxlan_tunnel_mac);
    node.ipv6_vxlan_tunnel_addr =
        parse_or_warn(name, "ipv6VXLANTunnelAddr", raw.ipv6_vxlan_tunnel_addr);
    node.vxlan_tunnel_mac_v6 = parse_or_warn(name, "vxlanTunnelMACAddrV6", raw.vxlan_tunnel_mac_v6);
}

/// An address that may be written with or without a prefix length.
fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<IpNet>().ok().map(|net| net.addr()))
}

/// The Calico view of a Kubernetes Node (KDD mode).
pub fn calico_node_from_k8s(k8s_node: &Node) -> CalicoNode {
    let name = k8s_node.metadata.name.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let annotations = k8s_node.metadata.annotations.as_ref().unwrap_or(&empty);
    let get = |key: &str| annotations.get(key).map(String::as_str);

    let mut labels: BTreeMap<String, String> = match get(annotation::LABELS) {
        Some(raw) => serde_json::from_str(raw).unwrap_or_else(|error| {
            tracing::warn!(node = %name, %error, "ignoring unparsable {} annotation", annotation::LABELS);
            BTreeMap::new()
        }),
        None => BTreeMap::new(),
    };
    labels.extend(k8s_node.metadata.labels.clone().unwrap_or_default());

    let mut node = CalicoNode {
        name: name.clone(),
        labels,
        ..CalicoNode::default()
    };
    let raw = RawNodeFields {
        ipv4_address: get(annotation::IPV4_ADDRESS),
        ipv6_address: get(annotation::IPV6_ADDRESS),
        ipv4_ipip_tunnel_addr: get(annotation::IPV4_IPIP_TUNNEL_ADDR),
        as_number: get(annotation::AS_NUMBER),
        route_reflector_cluster_id: get(annotation::ROUTE_REFLECTOR_CLUSTER_ID),
        ipv4_vxlan_tunnel_addr: get(annotation::IPV4_VXLAN_TUNNEL_ADDR),
        vxlan_tunnel_mac: get(annotation::VXLAN_TUNNEL_MAC_ADDR),
        ipv6_vxlan_tunnel_addr: get(annotation::IPV6_VXLAN_TUNNEL_ADDR),
        vxlan_tunnel_mac_v6: get(annotation::VXLAN_TUNNEL_MAC_ADDR_V6),
    };
    parse_fields(&name, &raw, &mut node);

    node.internal_ips = k8s_node
        .status
        .as_ref()
        .and_then(|status| status.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|address| address.type_ == "InternalIP")
        .filter_map(|address| {
            let parsed = parse_address(&address.address);
            if parsed.is_none() {
                tracing::warn!(node = %name, address = %address.address, "ignoring invalid InternalIP");
            }
            parsed
        })
        .collect();
    node
}

/// The annotations a write of `node` sets (`Some`) or deletes (`None`) on its Kubernetes Node.
/// Labels are not written: Starling never changes a node's labels.
pub fn k8s_annotation_changes(node: &CalicoNode) -> BTreeMap<&'static str, Option<String>> {
    fn text<T: ToString>(value: &Option<T>) -> Option<String> {
        value.as_ref().map(ToString::to_string)
    }
    BTreeMap::from([
        (annotation::IPV4_ADDRESS, text(&node.ipv4_address)),
        (annotation::IPV6_ADDRESS, text(&node.ipv6_address)),
        (
            annotation::IPV4_IPIP_TUNNEL_ADDR,
            text(&node.ipv4_ipip_tunnel_addr),
        ),
        (annotation::AS_NUMBER, text(&node.as_number)),
        (
            annotation::ROUTE_REFLECTOR_CLUSTER_ID,
            text(&node.route_reflector_cluster_id),
        ),
        (
            annotation::IPV4_VXLAN_TUNNEL_ADDR,
            text(&node.ipv4_vxlan_tunnel_addr),
        ),
        (
            annotation::VXLAN_TUNNEL_MAC_ADDR,
            text(&node.vxlan_tunnel_mac),
        ),
        (
            annotation::IPV6_VXLAN_TUNNEL_ADDR,
            text(&node.ipv6_vxlan_tunnel_addr),
        ),
        (
            annotation::VXLAN_TUNNEL_MAC_ADDR_V6,
            text(&node.vxlan_tunnel_mac_v6),
        ),
    ])
}

/// Applies [`k8s_annotation_changes`] to an annotation map in place.
pub fn apply_annotation_changes(
    annotations: &mut BTreeMap<String, String>,
    changes: &BTreeMap<&'static str, Option<String>>,
) {
    for (key, value) in changes {
        match value {
            Some(value) => {
                annotations.insert((*key).to_string(), value.clone());
            }
            None => {
                annotations.remove(*key);
            }
        }
    }
}

/// A JSON merge patch (`{"metadata":{"annotations":{...}}}`, null deletes) writing `node`.
pub fn k8s_annotation_patch(node: &CalicoNode) -> serde_json::Value {
    let annotations: serde_json::Map<String, serde_json::Value> = k8s_annotation_changes(node)
        .into_iter()
        .map(|(key, value)| {
            (
                key.to_string(),
                value.map_or(serde_json::Value::Null, Into::into),
            )
        })
        .collect();
    serde_json::json!({ "metadata": { "annotations": annotations } })
}

/// `spec` of the etcd-mode Calico Node resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<String>,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr: Option<String>,
    #[serde(
        default,
        rename = "ipv6VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_vxlan_tunnel_addr: Option<String>,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddrV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orch_refs: Option<Vec<OrchRef>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<NodeAddress>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<NodeInterface>>,
    /// Fields Starling does not model, kept verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `spec.bgp` of a Calico Node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeBgpSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<String>,
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OrchRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    pub orchestrator: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeWireguardSpec {
    #[serde(
        default,
        rename = "interfaceIPv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv4_address: Option<String>,
    #[serde(
        default,
        rename = "interfaceIPv6Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv6_address: Option<String>,
}

/// `spec.addresses[]`: type `CalicoNodeIP`, `InternalIP` or `ExternalIP`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeAddress {
    pub address: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub address_type: Option<String>,
}

/// `spec.interfaces[]`: a host interface and its addresses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInterface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

/// `status` of the etcd-mode Calico Node resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_public_key: Option<String>,
    #[serde(
        default,
        rename = "wireguardPublicKeyV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub wireguard_public_key_v6: Option<String>,
    #[serde(default, rename = "podCIDRs", skip_serializing_if = "Option::is_none")]
    pub pod_cidrs: Option<Vec<String>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The etcd-mode Calico Node (`/calico/resources/v3/projectcalico.org/nodes/<name>`).
pub type CalicoNodeResource = V3Object<NodeSpec, NodeStatus>;

/// Kind name of the Calico Node resource.
pub const NODE_KIND: &str = "Node";

/// The Calico view of an etcd Node resource.
pub fn calico_node_from_v3(resource: &CalicoNodeResource) -> CalicoNode {
    let name = resource.metadata.name.clone();
    let spec = &resource.spec;
    let bgp = spec.bgp.clone().unwrap_or_default();
    let as_number_text = bgp.as_number.map(|asn| asn.to_string());
    let raw = RawNodeFields {
        ipv4_address: bgp.ipv4_address.as_deref(),
        ipv6_address: bgp.ipv6_address.as_deref(),
        ipv4_ipip_tunnel_addr: bgp.ipv4_ipip_tunnel_addr.as_deref(),
        as_number: as_number_text.as_deref(),
        route_reflector_cluster_id: bgp.route_reflector_cluster_id.as_deref(),
        ipv4_vxlan_tunnel_addr: spec.ipv4_vxlan_tunnel_addr.as_deref(),
        vxlan_tunnel_mac: spec.vxlan_tunnel_mac_addr.as_deref(),
        ipv6_vxlan_tunnel_addr: spec.ipv6_vxlan_tunnel_addr.as_deref(),
        vxlan_tunnel_mac_v6: spec.vxlan_tunnel_mac_addr_v6.as_deref(),
    };
    let mut node = CalicoNode {
        name: name.clone(),
        labels: resource.labels(),
        ..CalicoNode::default()
    };
    parse_fields(&name, &raw, &mut node);
    node.internal_ips = spec
        .addresses
        .iter()
        .flatten()
        .filter(|address| address.address_type.as_deref() == Some("InternalIP"))
        .filter_map(|address| parse_address(&address.address))
        .collect();
    node
}

/// Writes `node`'s fields into an etcd Node resource, keeping every field it does not model
/// (orchRefs, wireguard, interfaces, addresses, status). Labels are replaced by `node.labels`.
pub fn update_v3_node(resource: &mut CalicoNodeResource, node: &CalicoNode) {
    fn text<T: ToString>(value: &Option<T>) -> Option<String> {
        value.as_ref().map(ToString::to_string)
    }
    let bgp = NodeBgpSpec {
        as_number: node.as_number,
        ipv4_address: text(&node.ipv4_address),
        ipv6_address: text(&node.ipv6_address),
        ipv4_ipip_tunnel_addr: text(&node.ipv4_ipip_tunnel_addr),
        route_reflector_cluster_id: text(&node.route_reflector_cluster_id),
    };
    // Calico leaves spec.bgp nil when the node has no BGP settings at all.
    resource.spec.bgp = (bgp != NodeBgpSpec::default()).then_some(bgp);
    resource.spec.ipv4_vxlan_tunnel_addr = text(&node.ipv4_vxlan_tunnel_addr);
    resource.spec.vxlan_tunnel_mac_addr = text(&node.vxlan_tunnel_mac);
    resource.spec.ipv6_vxlan_tunnel_addr = text(&node.ipv6_vxlan_tunnel_addr);
    resource.spec.vxlan_tunnel_mac_addr_v6 = text(&node.vxlan_tunnel_mac_v6);
    resource.metadata.name = node.name.clone();
    resource.metadata.labels = (!node.labels.is_empty()).then(|| node.labels.clone());
}
