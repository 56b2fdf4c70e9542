//! Set elements: what a selector or named-port set holds in nft terms, and the coalescing that
//! keeps interval sets committable (nft rejects overlapping intervals; Felix v3.32.0 looped on
//! exactly that, calico#12851).

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::program::{Family, SetId, SetMembers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetKind {
    /// `ipv4_addr`/`ipv6_addr`, `flags interval`.
    Nets,
    /// `addr . inet_proto . inet_service`.
    AddressPorts,
    /// `ifname : verdict` map.
    Verdict,
}

impl SetKind {
    /// The nft keyword (`set`/`map`) and the declaration body.
    pub fn declaration(self, family: Family) -> (&'static str, String) {
        let address = match family {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        };
        match self {
            SetKind::Nets => ("set", format!("{{ type {address}; flags interval; }}")),
            SetKind::AddressPorts => (
                "set",
                format!("{{ type {address} . inet_proto . inet_service; }}"),
            ),
            SetKind::Verdict => ("map", "{ type ifname : verdict; }".to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetView {
    pub kind: SetKind,
    pub elements: BTreeSet<Element>,
    /// Holds elements that could not be parsed: refill it instead of diffing.
    pub opaque: bool,
}

/// One element of a set or verdict map as Starling writes it or reads it back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// A prefix; a full-length prefix prints as a bare address (as nft lists it).
    Net(IpNet),
    /// An address range (only read back, never written).
    Range(IpAddr, IpAddr),
    /// Address, IP protocol number and port of a named-port set.
    AddressPort(IpAddr, u8, u16),
    /// Interface name and verdict (`goto tw-cali…`) of a verdict map.
    Verdict(String, String),
    /// An element the parser could not name; its set is flushed and refilled.
    Opaque(String),
}

impl Element {
    /// The key part, as `delete element` wants it.
    pub fn key(&self) -> String {
        match self {
            Element::Verdict(interface, _) => format!("\"{interface}\""),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Net(net) if net.prefix_len() == net.max_prefix_len() => {
                write!(f, "{}", net.addr())
            }
            Element::Net(net) => write!(f, "{net}"),
            Element::Range(first, last) => write!(f, "{first}-{last}"),
            Element::AddressPort(address, protocol, port) => {
                write!(f, "{address} . {protocol} . {port}")
            }
            Element::Verdict(interface, verdict) => write!(f, "\"{interface}\" : {verdict}"),
            Element::Opaque(text) => write!(f, "{text}"),
        }
    }
}

/// The nets as an interval set can hold them: host bits cleared, duplicates and nets inside
/// another net dropped. Two CIDRs either nest or are disjoint, so after sorting by (start,
/// length) a net overlaps something kept only if the last kept net contains it. Adjacent nets
/// stay separate (nft accepts them and lists them back as written, so element diffs stay exact).
pub fn coalesce<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Vec<IpNet> {
    let mut sorted: Vec<IpNet> = nets.into_iter().map(IpNet::trunc).collect();
    sorted.sort_by_key(|net| (net.network(), net.prefix_len()));
    let mut kept: Vec<IpNet> = Vec::with_capacity(sorted.len());
    for net in sorted {
        match kept.last() {
            Some(last) if last.contains(&net) => {}
            _ => kept.push(net),
        }
    }
    kept
}

fn same_family(address: &IpAddr, family: Family) -> bool {
    Family::of(address) == family
}

/// The desired view of set `id` in `family` from the program's members (missing = empty).
/// Members of the wrong kind or family are left out and reported in `warnings`.
pub(crate) fn desired_set(
    id: &SetId,
    family: Family,
    members: Option<&SetMembers>,
    warnings: &mut Vec<String>,
) -> SetView {
    let kind = match id {
        SetId::Selector(_) => SetKind::Nets,
        SetId::NamedPort { .. } => SetKind::AddressPorts,
    };
    let mut elements = BTreeSet::new();
    match (kind, members) {
        (_, None | Some(SetMembers::Empty)) => {}
        (SetKind::Nets, Some(SetMembers::Nets(nets))) => {
            let own: Vec<&IpNet> = nets
                .iter()
                .filter(|net| Family::of_net(net) == family)
                .collect();
            if own.len() != nets.len() {
                warnings.push(format!(
                    "set {id:?} ({family:?}): {} members of the other family left out",
                    nets.len() - own.len()
                ));
            }
            elements.extend(coalesce(own).into_iter().map(Element::Net));
        }
        (SetKind::AddressPorts, Some(SetMembers::AddressPorts(members))) => {
            for (address, protocol, port) in members {
                if same_family(address, family) {
                    elements.insert(Element::AddressPort(*address, *protocol, *port));
                } else {
                    warnings.push(format!(
                        "set {id:?} ({family:?}): member {address} of the other family left out"
                    ));
                }
            }
        }
        (_, Some(_)) => warnings.push(format!(
            "set {id:?} ({family:?}): members of the wrong kind for this set, left empty"
        )),
    }
    SetView {
        kind,
        elements,
        opaque: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(text: &[&str]) -> Vec<IpNet> {
        text.iter().map(|t| t.parse().unwrap()).collect()
    }

    #[test]
    fn overlapping_and_subsumed_cidrs_coalesce() {
        let input = nets(&[
            "10.1.0.0/16",
            "10.0.0.0/8",
            "10.2.3.4/32",
            "192.168.1.7/24",
            "192.168.1.0/24",
            "192.168.2.0/24",
            "172.16.0.1/32",
            "172.16.0.1/32",
        ]);
        assert_eq!(
            coalesce(&input),
            nets(&[
                "10.0.0.0/8",
                "172.16.0.1/32",
                "192.168.1.0/24",
                "192.168.2.0/24"
            ])
        );
        let v6 = nets(&["fd00::/48", "fd00:0:0:1::/64", "fd01::1/128"]);
        assert_eq!(coalesce(&v6), nets(&["fd00::/48", "fd01::1/128"]));
    }

    #[test]
    fn desired_set_keeps_its_family_and_kind() {
        let mut warnings = vec![];
        let members = SetMembers::Nets(
            nets(&["10.0.0.1/32", "10.0.0.0/24", "fd00::1/128"])
                .into_iter()
                .collect(),
        );
        let id = SetId::Selector("all()".into());
        let view = desired_set(&id, Family::V4, Some(&members), &mut warnings);
        let listed: Vec<String> = view.elements.iter().map(ToString::to_string).collect();
        assert_eq!(listed, ["10.0.0.0/24"]);
        assert_eq!(warnings.len(), 1);
        let view = desired_set(&id, Family::V6, Some(&members), &mut warnings);
        let listed: Vec<String> = view.elements.iter().map(ToString::to_string).collect();
        assert_eq!(listed, ["fd00::1"]);
        let wrong = SetMembers::AddressPorts(BTreeSet::new());
        let view = desired_set(&id, Family::V4, Some(&wrong), &mut warnings);
        assert!(view.elements.is_empty());
        assert!(warnings.last().unwrap().contains("wrong kind"));
    }

    #[test]
    fn elements_print_as_nft_lists_them() {
        let host = Element::Net("10.0.0.1/32".parse().unwrap());
        assert_eq!(host.to_string(), "10.0.0.1");
        let port = Element::AddressPort("10.0.0.1".parse().unwrap(), 6, 80);
        assert_eq!(port.to_string(), "10.0.0.1 . 6 . 80");
        let verdict = Element::Verdict("cali1".into(), "goto tw-cali1".into());
        assert_eq!(verdict.to_string(), "\"cali1\" : goto tw-cali1");
        assert_eq!(verdict.key(), "\"cali1\"");
    }
}
