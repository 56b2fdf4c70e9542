//! IPReservation (`crd.projectcalico.org/v1`, reference §1.6): addresses IPAM must not hand out.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Specification of an IPReservation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct IPReservationSpec {
    /// CIDRs (or single addresses, meaning /32 or /128) that automatic assignment skips.
    #[serde(
        default,
        rename = "reservedCIDRs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub reserved_cidrs: Option<Vec<String>>,
}
