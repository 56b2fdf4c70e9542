//! The CRD schema of BGPFilter rule lists, per family, with the shape of Calico's CRD: every
//! rule field Calico declares is declared here too, including the match and operation fields
//! Starling does not implement (`peerType`, `communities`, `asPathPrefix`, `priority`,
//! `operations`). Declaring them keeps the API server from pruning them: a filter using them
//! reaches Starling, which refuses it (the peer then rejects every route and the error names
//! the field) instead of running a pruned filter that matches more than its author meant.
//! Fields Calico does not declare are pruned, as with Calico's own CRD (kubectl warns).

use schemars::{json_schema, Schema, SchemaGenerator};
use serde_json::json;

/// A BGP community as Calico writes it: `aa:nn` or `aa:nn:mm`.
fn community() -> serde_json::Value {
    json!({
        "type": "string",
        "maxLength": 32,
        "pattern": "^[0-9]+:[0-9]+(:[0-9]+)?$"
    })
}

fn supported(width: u8, cidr_max_length: u8, family: &str) -> serde_json::Value {
    let length = json!({ "type": "integer", "format": "int32", "minimum": 0, "maximum": width });
    json!({
        "action": { "type": "string", "enum": ["Accept", "Reject"] },
        "cidr": {
            "description": format!("{family} CIDR the route's prefix is compared with (set together with matchOperator)."),
            "type": "string",
            "maxLength": cidr_max_length
        },
        "matchOperator": {
            "description": "Equal or NotEqual: the prefix is (not) the CIDR; In or NotIn: it lies (not) inside the CIDR with a length in prefixLength.",
            "type": "string",
            "enum": ["Equal", "NotEqual", "In", "NotIn"]
        },
        "prefixLength": {
            "description": "Bounds on the prefix length for In and NotIn (default: the CIDR's length up to the family's width).",
            "type": "object",
            "x-kubernetes-map-type": "atomic",
            "properties": { "min": length, "max": length }
        },
        "source": {
            "description": "RemotePeers: only routes learned over BGP.",
            "type": "string",
            "enum": ["RemotePeers"]
        },
        "interface": {
            "description": "Pattern (`*` for any characters) the route's outgoing interface must match.",
            "type": "string",
            "maxLength": 15
        }
    })
}

const UNSUPPORTED: &str = "Calico field Starling does not implement: a filter using it is \
                           refused and its peers reject every route";

fn priority() -> serde_json::Value {
    json!({ "type": "integer", "minimum": 1, "maximum": 2_147_483_646i64 })
}

fn integers() -> serde_json::Value {
    json!({ "type": "array", "x-kubernetes-list-type": "atomic", "items": { "type": "integer", "format": "int32" } })
}

fn operation() -> serde_json::Value {
    let mut prefix = integers();
    prefix["minItems"] = json!(1);
    prefix["maxItems"] = json!(10);
    json!({
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "x-kubernetes-map-type": "atomic",
        "properties": {
            "addCommunity": { "type": "object", "required": ["value"], "properties": { "value": community() } },
            "prependASPath": { "type": "object", "required": ["prefix"], "properties": { "prefix": prefix } },
            "setPriority": { "type": "object", "required": ["value"], "properties": { "value": priority() } }
        }
    })
}

fn unsupported() -> serde_json::Value {
    let described = |mut schema: serde_json::Value| {
        schema["description"] = json!(UNSUPPORTED);
        schema
    };
    json!({
        "peerType": described(json!({ "type": "string", "enum": ["eBGP", "iBGP"] })),
        "communities": described(json!({
            "type": "object",
            "x-kubernetes-map-type": "atomic",
            "required": ["values"],
            "properties": { "values": {
                "type": "array", "minItems": 1, "maxItems": 1,
                "x-kubernetes-list-type": "atomic", "items": community()
            } }
        })),
        "asPathPrefix": described(integers()),
        "priority": described(priority()),
        "operations": described(json!({
            "type": "array", "minItems": 1, "maxItems": 10,
            "x-kubernetes-list-type": "atomic", "items": operation()
        }))
    })
}

fn rules(width: u8, cidr_max_length: u8, family: &str) -> Schema {
    let mut properties = supported(width, cidr_max_length, family);
    if let (Some(properties), serde_json::Value::Object(more)) =
        (properties.as_object_mut(), unsupported())
    {
        properties.extend(more);
    }
    let item = json!({
        "description": format!("One {family} rule: every condition it sets must hold for its action to apply; the first matching rule of the peer's filters decides."),
        "type": "object",
        "required": ["action"],
        "x-kubernetes-map-type": "atomic",
        "properties": properties,
        "x-kubernetes-validations": [
            {
                "rule": "(has(self.cidr) && size(self.cidr) > 0) == (has(self.matchOperator) && size(self.matchOperator) > 0)",
                "message": "cidr and matchOperator must be set together"
            },
            {
                "rule": "!has(self.prefixLength) || (has(self.cidr) && size(self.cidr) > 0)",
                "message": "prefixLength needs cidr"
            }
        ]
    });
    json_schema!({
        "type": "array",
        "nullable": true,
        "x-kubernetes-list-type": "atomic",
        "items": item
    })
}

pub(crate) fn rules_v4(_: &mut SchemaGenerator) -> Schema {
    rules(32, 18, "IPv4")
}

pub(crate) fn rules_v6(_: &mut SchemaGenerator) -> Schema {
    rules(128, 43, "IPv6")
}
