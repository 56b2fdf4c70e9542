//! `ipam reserve` items → the smallest exact CIDR cover (reference §1.6). Pure.
//!
//! An item is an address, a CIDR or a range `A-B` (inclusive, same family, A ≤ B). The items'
//! union is merged into disjoint intervals per family; each interval is cut into maximal aligned
//! CIDRs, which is the unique smallest set of CIDRs whose union is exactly the items' union.

use std::net::IpAddr;

use ipnet::IpNet;

use super::block::{address_to_u128, u128_to_address};

/// A refused item, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reservation item {item:?}: {problem}")]
pub struct ReserveError {
    pub item: String,
    pub problem: String,
}

/// An inclusive interval of one family (`family` is any address of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interval {
    start: u128,
    end: u128,
    v4: bool,
}

fn parse_address(item: &str, text: &str) -> Result<IpAddr, ReserveError> {
    text.trim().parse().map_err(|_| ReserveError {
        item: item.to_string(),
        problem: format!("{:?} is not an IP address", text.trim()),
    })
}

fn parse_item(item: &str) -> Result<Interval, ReserveError> {
    let fail = |problem: String| ReserveError {
        item: item.to_string(),
        problem,
    };
    let text = item.trim();
    if let Some((first, last)) = text.split_once('-') {
        let first = parse_address(item, first)?;
        let last = parse_address(item, last)?;
        if first.is_ipv4() != last.is_ipv4() {
            return Err(fail("the range mixes IPv4 and IPv6".to_string()));
        }
        let (start, end) = (address_to_u128(first), address_to_u128(last));
        if start > end {
            return Err(fail(format!("{first} is after {last}")));
        }
        return Ok(Interval {
            start,
            end,
            v4: first.is_ipv4(),
        });
    }
    if text.contains('/') {
        let net: IpNet = text
            .parse()
            .map_err(|_| fail(format!("{text:?} is not a CIDR")))?;
        let net = net.trunc();
        return Ok(Interval {
            start: address_to_u128(net.network()),
            end: address_to_u128(net.broadcast()),
            v4: matches!(net, IpNet::V4(_)),
        });
    }
    let address = parse_address(item, text)?;
    let value = address_to_u128(address);
    Ok(Interval {
        start: value,
        end: value,
        v4: address.is_ipv4(),
    })
}

/// Largest aligned CIDRs exactly covering `[start, end]`.
fn cover_interval(interval: Interval, out: &mut Vec<IpNet>) {
    let width: u32 = if interval.v4 { 32 } else { 128 };
    let family = if interval.v4 {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    };
    let mut start = interval.start;
    loop {
        // Largest block size allowed by the alignment of `start`...
        let mut host_bits = if start == 0 {
            width
        } else {
            start.trailing_zeros().min(width)
        };
        // ...and by the remaining length.
        while host_bits > 0 {
            let last = start.checked_add((1u128 << host_bits) - 1);
            match last {
                Some(last) if last <= interval.end => break,
                _ => host_bits -= 1,
            }
        }
        let prefix = (width - host_bits) as u8;
        if let Ok(net) = IpNet::new(u128_to_address(start, family), prefix) {
            out.push(net);
        }
        let size_minus_one = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        match start.checked_add(size_minus_one) {
            Some(last) if last < interval.end => start = last + 1,
            _ => break,
        }
    }
}

/// The smallest exact CIDR cover of the items (IPv4 first, each family in address order).
pub fn cidr_cover(items: &[String]) -> Result<Vec<IpNet>, ReserveError> {
    if items.is_empty() {
        return Err(ReserveError {
            item: String::new(),
            problem: "no items given".to_string(),
        });
    }
    let mut intervals = items
        .iter()
        .map(|item| parse_item(item))
        .collect::<Result<Vec<_>, _>>()?;
    // IPv4 first, then by start.
    intervals.sort_by_key(|i| (!i.v4, i.start, i.end));
    let mut merged: Vec<Interval> = Vec::new();
    for interval in intervals {
        match merged.last_mut() {
            Some(last)
                if last.v4 == interval.v4 && interval.start <= last.end.saturating_add(1) =>
            {
                last.end = last.end.max(interval.end);
            }
            _ => merged.push(interval),
        }
    }
    let mut cover = Vec::new();
    for interval in merged {
        cover_interval(interval, &mut cover);
    }
    Ok(cover)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cover(items: &[&str]) -> Vec<String> {
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        cidr_cover(&items)
            .unwrap()
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    #[test]
    fn ranges_addresses_and_cidrs() {
        assert_eq!(cover(&["10.0.0.1"]), ["10.0.0.1/32"]);
        assert_eq!(cover(&["10.0.0.0-10.0.0.255"]), ["10.0.0.0/24"]);
        assert_eq!(
            cover(&["10.0.0.1-10.0.0.6"]),
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        // Overlapping and adjacent items merge before covering.
        assert_eq!(
            cover(&["10.0.0.0/25", "10.0.0.128-10.0.0.255", "10.0.0.7"]),
            ["10.0.0.0/24"]
        );
        assert_eq!(
            cover(&["fd00::-fd00::3", "10.1.0.0/16"]),
            ["10.1.0.0/16", "fd00::/126"]
        );
        assert_eq!(cover(&["0.0.0.0-255.255.255.255"]), ["0.0.0.0/0"]);
        assert_eq!(cover(&["10.0.0.5/24"]), ["10.0.0.0/24"]);
    }

    #[test]
    fn bad_items_are_named() {
        let error = cidr_cover(&["10.0.0.9-10.0.0.1".to_string()]).unwrap_err();
        assert!(error.to_string().contains("is after"), "{error}");
        let error = cidr_cover(&["10.0.0.1-fd00::1".to_string()]).unwrap_err();
        assert!(error.to_string().contains("mixes"), "{error}");
        let error = cidr_cover(&["banana".to_string()]).unwrap_err();
        assert!(error.to_string().contains("banana"), "{error}");
        assert!(cidr_cover(&[]).is_err());
    }
}
