//! What the kernel holds, read from `nft -j list table <family> starling`: chains with their
//! signature (the last rule's comment, valid only when its rule count matches), sets and maps
//! with their elements, named counters by name. Rules themselves are not parsed: the signature
//! stands for them. [`parse_counters`] reads the values of `nft -j list counters`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use crate::program::Family;

use super::names::{SIGNATURE_PREFIX, TABLE};
use super::nft_family;
use super::sets::{Element, SetKind, SetView};
use super::view::{BaseSpec, ChainState, TableView};

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("nft JSON listing: {0}")]
    Json(#[from] serde_json::Error),
    #[error("nft JSON listing: {what}: expected {expected}")]
    Shape {
        what: String,
        expected: &'static str,
    },
}

fn shape(what: impl Into<String>, expected: &'static str) -> ParseError {
    ParseError::Shape {
        what: what.into(),
        expected,
    }
}

/// The `family` part of Starling's table in `json`; an absent table gives `present: false`.
pub fn parse_table(json: &str, family: Family) -> Result<TableView, ParseError> {
    let root: Value = serde_json::from_str(json)?;
    let objects = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("top level", "an object with an \"nftables\" array"))?;
    let fam = nft_family(family);
    let ours = |object: &Value| {
        object.get("family").and_then(Value::as_str) == Some(fam)
            && object
                .get("table")
                .or_else(|| object.get("name"))
                .and_then(Value::as_str)
                == Some(TABLE)
    };
    let mut view = TableView::default();
    let mut rules: BTreeMap<String, (usize, Option<String>)> = BTreeMap::new();
    for object in objects {
        if let Some(table) = object.get("table") {
            if ours(table) {
                view.present = true;
            }
        } else if let Some(chain) = object.get("chain") {
            if !ours(chain) {
                continue;
            }
            let name = string_field(chain, "name", "chain")?;
            let base = match chain.get("hook").and_then(Value::as_str) {
                Some(hook) => Some(BaseSpec {
                    hook: hook.to_string(),
                    priority: chain
                        .get("prio")
                        .and_then(Value::as_i64)
                        .and_then(|p| i32::try_from(p).ok())
                        .ok_or_else(|| shape(format!("chain {name}: prio"), "an integer"))?,
                }),
                None => None,
            };
            view.chains.insert(
                name,
                ChainState {
                    signature: None,
                    base,
                },
            );
        } else if let Some(set) = object.get("set").or_else(|| object.get("map")) {
            if !ours(set) {
                continue;
            }
            let (name, parsed) = parse_set(set)?;
            view.sets.insert(name, parsed);
        } else if let Some(counter) = object.get("counter") {
            // Only the name: a resync never compares values.
            if ours(counter) {
                view.counters
                    .insert(string_field(counter, "name", "counter")?);
            }
        } else if let Some(rule) = object.get("rule") {
            if !ours(rule) {
                continue;
            }
            let chain = string_field(rule, "chain", "rule")?;
            let entry = rules.entry(chain).or_default();
            entry.0 += 1;
            entry.1 = rule
                .get("comment")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
    }
    for (chain, (count, comment)) in rules {
        if let Some(state) = view.chains.get_mut(&chain) {
            state.signature = comment.filter(|text| signature_counts(text) == Some(count));
        }
    }
    Ok(view)
}

/// The rule count a signature claims (`starling h=… n=<count>`).
fn signature_counts(comment: &str) -> Option<usize> {
    let rest = comment.strip_prefix(SIGNATURE_PREFIX)?;
    let (_, count) = rest.split_once(" n=")?;
    count.parse().ok()
}

fn string_field(object: &Value, field: &str, what: &str) -> Result<String, ParseError> {
    object
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| shape(format!("{what}: {field}"), "a string"))
}

fn parse_set(set: &Value) -> Result<(String, SetView), ParseError> {
    let name = string_field(set, "name", "set")?;
    let kind = if set.get("map").and_then(Value::as_str) == Some("verdict") {
        Some(SetKind::Verdict)
    } else {
        match set.get("type") {
            Some(Value::String(t)) if t == "ipv4_addr" || t == "ipv6_addr" => Some(SetKind::Nets),
            Some(Value::Array(types)) if types.len() == 3 => Some(SetKind::AddressPorts),
            _ => None,
        }
    };
    let mut view = SetView {
        kind: kind.unwrap_or(SetKind::Nets),
        elements: Default::default(),
        opaque: kind.is_none(),
    };
    let elements = match set.get("elem") {
        None => vec![],
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
    };
    for item in elements {
        let element = match view.kind {
            SetKind::Nets => net_element(item),
            SetKind::AddressPorts => address_port_element(item),
            SetKind::Verdict => verdict_element(item),
        };
        let element = element.unwrap_or_else(|| Element::Opaque(item.to_string()));
        if matches!(element, Element::Opaque(_)) {
            view.opaque = true;
        }
        view.elements.insert(element);
    }
    Ok((name, view))
}

/// `{"elem": {"val": X, ...}}` (an element with flags or a comment) or X itself.
fn unwrap_elem(item: &Value) -> &Value {
    item.get("elem")
        .and_then(|elem| elem.get("val"))
        .unwrap_or(item)
}

fn net_element(item: &Value) -> Option<Element> {
    let item = unwrap_elem(item);
    if let Some(text) = item.as_str() {
        let address: IpAddr = text.parse().ok()?;
        return Some(Element::Net(IpNet::from(address)));
    }
    if let Some(prefix) = item.get("prefix") {
        let address: IpAddr = prefix.get("addr")?.as_str()?.parse().ok()?;
        let length = u8::try_from(prefix.get("len")?.as_u64()?).ok()?;
        return IpNet::new(address, length).ok().map(Element::Net);
    }
    let range = item.get("range")?.as_array()?;
    match range.as_slice() {
        [first, last] => Some(Element::Range(
            first.as_str()?.parse().ok()?,
            last.as_str()?.parse().ok()?,
        )),
        _ => None,
    }
}

fn protocol_number(value: &Value) -> Option<u8> {
    if let Some(number) = value.as_u64() {
        return u8::try_from(number).ok();
    }
    Some(match value.as_str()? {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "dccp" => 33,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ipv6-icmp" | "icmpv6" => 58,
        "sctp" => 132,
        "udplite" => 136,
        other => other.parse().ok()?,
    })
}

fn address_port_element(item: &Value) -> Option<Element> {
    let parts = unwrap_elem(item).get("concat")?.as_array()?;
    match parts.as_slice() {
        [address, protocol, port] => {
            let port = match port {
                Value::Number(number) => u16::try_from(number.as_u64()?).ok()?,
                Value::String(text) => text.parse().ok()?,
                _ => return None,
            };
            Some(Element::AddressPort(
                address.as_str()?.parse().ok()?,
                protocol_number(protocol)?,
                port,
            ))
        }
        _ => None,
    }
}

fn verdict_element(item: &Value) -> Option<Element> {
    let pair = item.as_array()?;
    let [key, verdict] = pair.as_slice() else {
        return None;
    };
    let interface = unwrap_elem(key).as_str()?.to_string();
    let verdict = verdict.as_object()?;
    let (kind, argument) = verdict.iter().next()?;
    let text = match argument.get("target").and_then(Value::as_str) {
        Some(target) => format!("{kind} {target}"),
        None => kind.clone(),
    };
    Some(Element::Verdict(interface, text))
}

/// One counter as the kernel holds it. `handle` changes when the counter is recreated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterValue {
    pub name: String,
    pub handle: u64,
    pub packets: u64,
    pub bytes: u64,
}

fn number(object: &Value, field: &str, name: &str) -> Result<u64, ParseError> {
    object
        .get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| shape(format!("counter {name}: {field}"), "an unsigned integer"))
}

/// The counters of Starling's `family` table in a `nft -j list counters` (or `list table`)
/// listing; anything else in it is ignored.
pub fn parse_counters(json: &str, family: Family) -> Result<Vec<CounterValue>, ParseError> {
    let root: Value = serde_json::from_str(json)?;
    let objects = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| shape("top level", "an object with an \"nftables\" array"))?;
    let fam = nft_family(family);
    let mut values = vec![];
    for counter in objects.iter().filter_map(|object| object.get("counter")) {
        let ours = counter.get("family").and_then(Value::as_str) == Some(fam)
            && counter.get("table").and_then(Value::as_str) == Some(TABLE);
        if !ours {
            continue;
        }
        let name = counter
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| shape("counter: name", "a string"))?;
        values.push(CounterValue {
            name: name.to_string(),
            handle: number(counter, "handle", name)?,
            packets: number(counter, "packets", name)?,
            bytes: number(counter, "bytes", name)?,
        });
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_listings_parse_and_name_what_is_wrong() {
        let listing = r#"{"nftables": [
          {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
          {"counter": {"family": "ip", "name": "pi-knp/ns/a.r0.allow", "table": "starling",
                       "handle": 1, "packets": 7, "bytes": 420}},
          {"counter": {"family": "ip", "name": "alien", "table": "other",
                       "handle": 2, "packets": 1, "bytes": 1}},
          {"counter": {"family": "ip6", "name": "tw-cali1.drop", "table": "starling",
                       "handle": 3, "packets": 1, "bytes": 80}}
        ]}"#;
        let values = parse_counters(listing, Family::V4).unwrap();
        assert_eq!(
            values,
            [CounterValue {
                name: "pi-knp/ns/a.r0.allow".into(),
                handle: 1,
                packets: 7,
                bytes: 420
            }]
        );
        let v6 = parse_counters(listing, Family::V6).unwrap();
        assert_eq!((v6.len(), v6[0].packets), (1, 1));
        let broken = r#"{"nftables": [{"counter": {"family": "ip", "table": "starling",
            "name": "x", "handle": 1, "packets": "many", "bytes": 0}}]}"#;
        let error = parse_counters(broken, Family::V4).unwrap_err().to_string();
        assert!(error.contains("counter x: packets"), "{error}");
        assert!(parse_counters("[]", Family::V4).is_err());
    }

    const LISTING: &str = r#"{"nftables": [
      {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
      {"table": {"family": "ip", "name": "starling", "handle": 1}},
      {"map": {"family": "ip", "name": "from-wl", "table": "starling", "type": "ifname",
               "handle": 4, "map": "verdict",
               "elem": [["cali1", {"goto": {"target": "fw-cali1"}}],
                        [{"elem": {"val": "cali2", "comment": "x"}}, {"jump": {"target": "fw-cali2"}}]]}},
      {"set": {"family": "ip", "name": "s-1", "table": "starling", "type": "ipv4_addr",
               "flags": ["interval"],
               "elem": [{"prefix": {"addr": "10.0.0.0", "len": 25}}, "10.0.2.1",
                        {"range": ["10.0.3.0", "10.0.3.5"]}]}},
      {"set": {"family": "ip", "name": "n-1", "table": "starling",
               "type": ["ipv4_addr", "inet_proto", "inet_service"],
               "elem": [{"concat": ["10.0.0.2", "udp", 53]}, {"concat": ["10.0.0.1", 6, 80]}]}},
      {"set": {"family": "ip", "name": "odd", "table": "starling", "type": "ipv4_addr",
               "elem": [{"weird": 1}]}},
      {"chain": {"family": "ip", "table": "starling", "name": "forward-egress", "handle": 3,
                 "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
      {"chain": {"family": "ip", "table": "starling", "name": "fw-cali1", "handle": 2}},
      {"counter": {"family": "ip", "name": "fw-cali1.drop", "table": "starling", "handle": 11,
                   "packets": 3, "bytes": 180}},
      {"counter": {"family": "ip", "name": "alien", "table": "other", "handle": 12,
                   "packets": 0, "bytes": 0}},
      {"chain": {"family": "ip", "table": "starling", "name": "pi-x", "handle": 5}},
      {"chain": {"family": "ip", "table": "other", "name": "alien", "handle": 9}},
      {"rule": {"family": "ip", "table": "starling", "chain": "fw-cali1", "handle": 7,
                "expr": [{"jump": {"target": "pi-x"}}]}},
      {"rule": {"family": "ip", "table": "starling", "chain": "fw-cali1", "handle": 8,
                "comment": "starling h=00aa n=2", "expr": [{"drop": null}]}},
      {"rule": {"family": "ip", "table": "starling", "chain": "pi-x", "handle": 10,
                "comment": "starling h=00bb n=3", "expr": [{"return": null}]}}
    ]}"#;

    #[test]
    fn listing_parses_into_signatures_and_elements() {
        let view = parse_table(LISTING, Family::V4).unwrap();
        assert!(view.present);
        assert_eq!(
            view.chains["fw-cali1"].signature.as_deref(),
            Some("starling h=00aa n=2")
        );
        // Claims three rules but has one: not trusted.
        assert_eq!(view.chains["pi-x"].signature, None);
        assert_eq!(
            view.chains["forward-egress"].base,
            Some(BaseSpec {
                hook: "forward".into(),
                priority: 0
            })
        );
        assert!(!view.chains.contains_key("alien"));
        assert_eq!(view.counters.iter().collect::<Vec<_>>(), ["fw-cali1.drop"]);
        let map: Vec<String> = view.sets["from-wl"]
            .elements
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            map,
            ["\"cali1\" : goto fw-cali1", "\"cali2\" : jump fw-cali2"]
        );
        let nets: Vec<String> = view.sets["s-1"]
            .elements
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/25", "10.0.2.1", "10.0.3.0-10.0.3.5"]);
        assert!(!view.sets["s-1"].opaque);
        let ports: Vec<String> = view.sets["n-1"]
            .elements
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ports, ["10.0.0.1 . 6 . 80", "10.0.0.2 . 17 . 53"]);
        assert!(view.sets["odd"].opaque);
        // The other family sees nothing of this table.
        let v6 = parse_table(LISTING, Family::V6).unwrap();
        assert!(!v6.present && v6.chains.is_empty() && v6.sets.is_empty());
    }

    #[test]
    fn malformed_listings_name_what_is_wrong() {
        let error = parse_table("[]", Family::V4).unwrap_err();
        assert!(error.to_string().contains("nftables"), "{error}");
        let no_name = r#"{"nftables": [{"chain": {"family": "ip", "table": "starling"}}]}"#;
        let error = parse_table(no_name, Family::V4).unwrap_err();
        assert!(error.to_string().contains("chain: name"), "{error}");
        assert!(parse_table("{", Family::V4).is_err());
    }
}
