//! BGPFilter (`crd.projectcalico.org/v1`, referenced by `BGPPeer.spec.filters`): rules that
//! accept or reject routes imported from or exported to a peer. Wire shape only; the rules
//! (family of each CIDR, operator with CIDR, prefix length ranges) live in `crate::validate`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Specification of a BGPFilter: four ordered rule lists, one per direction and family.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPFilterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::bgpfilter_schema::rules_v4")]
    pub export_v4: Option<Vec<BGPFilterRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::bgpfilter_schema::rules_v4")]
    pub import_v4: Option<Vec<BGPFilterRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::bgpfilter_schema::rules_v6")]
    pub export_v6: Option<Vec<BGPFilterRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::bgpfilter_schema::rules_v6")]
    pub import_v6: Option<Vec<BGPFilterRule>>,
}

/// One rule; every match field it sets must hold for its action to apply. The same shape
/// serves both families (Calico's V4 and V6 rule types differ only in their CIDR checks).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPFilterRule {
    /// `Accept` or `Reject` (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::filter_action")]
    pub action: Option<String>,
    /// `Equal`, `NotEqual`, `In` or `NotIn`; set together with `cidr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::filter_match_operator")]
    pub match_operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// Restricts `In`/`NotIn` to prefixes of these lengths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<BGPFilterPrefixLength>,
    /// `RemotePeers`: only routes learned over BGP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::filter_source")]
    pub source: Option<String>,
    /// Interface name pattern (`*` wildcards) of the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Newer Calico match and operation fields Starling does not implement. They are read so
    /// that a filter using them is refused instead of silently matching more than meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub peer_type: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub communities: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub as_path_prefix: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub priority: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(skip)]
    pub operations: Option<serde_json::Value>,
}

/// `prefixLength`: bounds on the matched prefix's length (each optional).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct BGPFilterPrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}
