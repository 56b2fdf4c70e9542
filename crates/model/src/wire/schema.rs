//! Schema fragments for fields whose wire type is looser than what the CRD declares.
//!
//! Enum-like fields are plain strings on the wire so that an unknown value (possible in etcd
//! mode, where no API server validates) reaches validation and gets a precise error instead of
//! failing the whole object's decoding. The CRD still declares the enum, as Calico's does.

use schemars::{json_schema, Schema, SchemaGenerator};

/// Declares `fn $name(&mut SchemaGenerator) -> Schema` for a string enum (nullable: optional field).
macro_rules! string_enum_schema {
    ($name:ident, [$($value:literal),+ $(,)?]) => {
        pub(crate) fn $name(_: &mut SchemaGenerator) -> Schema {
            json_schema!({ "type": "string", "nullable": true, "enum": [$($value),+] })
        }
    };
}

string_enum_schema!(encap_mode, ["Never", "Always", "CrossSubnet"]);
string_enum_schema!(assignment_mode, ["Automatic", "Manual"]);
string_enum_schema!(enabled_disabled, ["Enabled", "Disabled"]);
string_enum_schema!(bind_mode, ["None", "NodeIP"]);
string_enum_schema!(next_hop_mode, ["Auto", "Self", "Keep"]);
string_enum_schema!(reverse_peering, ["Auto", "Manual"]);
string_enum_schema!(source_address, ["UseNodeIP", "None"]);
string_enum_schema!(
    program_cluster_routes,
    [
        "Enabled",
        "Disabled",
        "EnabledIPIPOnly",
        "EnabledNoEncapOnly"
    ]
);
string_enum_schema!(filter_action, ["Accept", "Reject"]);
string_enum_schema!(filter_match_operator, ["Equal", "NotEqual", "In", "NotIn"]);
string_enum_schema!(filter_source, ["RemotePeers"]);
string_enum_schema!(route_source, ["WorkloadIPs", "CalicoIPAM"]);
string_enum_schema!(
    nat_outgoing_exclusions,
    ["IPPoolsOnly", "IPPoolsAndHostIPs"]
);

/// `allowedUses`: a set of `Workload`, `Tunnel`, `LoadBalancer`.
pub(crate) fn allowed_uses(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "nullable": true,
        "maxItems": 10,
        "items": { "type": "string", "enum": ["Workload", "Tunnel", "LoadBalancer"] },
        "x-kubernetes-list-type": "set"
    })
}

/// A Go duration string such as `90s` or `1m30s` (metav1.Duration).
pub(crate) fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "nullable": true })
}

/// Calico's `numorstring.Port` ranges (`natPortRange`): an integer or a `lo:hi` string.
pub(crate) fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "nullable": true,
        "x-kubernetes-int-or-string": true
    })
}
