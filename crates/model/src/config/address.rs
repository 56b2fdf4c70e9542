//! `IP`/`IP6` settings and the autodetection method grammar (reference §8.2).

use std::net::IpAddr;

use ipnet::IpNet;

/// What `IP` or `IP6` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AddressSetting {
    /// Not set. For IPv4: autodetect when the node has no address yet; for IPv6: nothing.
    #[default]
    Unset,
    /// `autodetect`: run the autodetection method on every start.
    Autodetect,
    /// `none`: keep what the node has (validate only).
    None,
    /// An address; without a prefix the prefix is taken from the host interface holding it.
    Fixed { address: IpAddr, prefix: Option<u8> },
}

/// `IP_AUTODETECTION_METHOD` / `IP6_AUTODETECTION_METHOD`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AutodetectionMethod {
    /// `first-found` (also the empty value): first global unicast address on a non-excluded interface.
    #[default]
    FirstFound,
    /// `interface=<regex>,...`: interfaces matching any of the regular expressions.
    Interface(Vec<String>),
    /// `skip-interface=<regex>,...`: first-found, also skipping these interfaces.
    SkipInterface(Vec<String>),
    /// `cidr=<cidr>,...`: the first address inside any of the CIDRs.
    Cidr(Vec<IpNet>),
    /// `can-reach=<host or ip>`: the source address the kernel picks towards the destination.
    CanReach(String),
    /// `kubernetes-internal-ip`: the Kubernetes Node's InternalIP of the family.
    KubernetesInternalIp,
}

/// Parses an `IP`/`IP6` value; `want_ipv4` selects the family the address must have.
pub fn parse_address_setting(text: &str, want_ipv4: bool) -> Result<AddressSetting, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(AddressSetting::Unset);
    }
    if trimmed.eq_ignore_ascii_case("autodetect") {
        return Ok(AddressSetting::Autodetect);
    }
    if trimmed.eq_ignore_ascii_case("none") {
        return Ok(AddressSetting::None);
    }
    let (address, prefix) = match trimmed.parse::<IpAddr>() {
        Ok(address) => (address, None),
        Err(_) => {
            let net: IpNet = trimmed.parse().map_err(|_| {
                "expected autodetect, none, an IP address or an address/prefix".to_string()
            })?;
            (net.addr(), Some(net.prefix_len()))
        }
    };
    let family = if want_ipv4 { "IPv4" } else { "IPv6" };
    if address.is_ipv4() != want_ipv4 {
        return Err(format!("{address} is not an {family} address"));
    }
    Ok(AddressSetting::Fixed { address, prefix })
}

/// Splits a list of regular expressions on commas (with optional surrounding spaces).
fn split_patterns(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses an autodetection method.
pub fn parse_autodetection_method(text: &str) -> Result<AutodetectionMethod, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "first-found" {
        return Ok(AutodetectionMethod::FirstFound);
    }
    if trimmed == "kubernetes-internal-ip" {
        return Ok(AutodetectionMethod::KubernetesInternalIp);
    }
    let Some((method, argument)) = trimmed.split_once('=') else {
        return Err(unknown_method());
    };
    let argument = argument.trim();
    let needs = |what: &str| format!("{method}= needs {what}");
    match method {
        "interface" | "skip-interface" => {
            let patterns = split_patterns(argument);
            if patterns.is_empty() {
                return Err(needs("at least one interface regular expression"));
            }
            Ok(if method == "interface" {
                AutodetectionMethod::Interface(patterns)
            } else {
                AutodetectionMethod::SkipInterface(patterns)
            })
        }
        "cidr" => {
            let cidrs = split_patterns(argument)
                .iter()
                .map(|item| {
                    item.parse::<IpNet>()
                        .map(|net| net.trunc())
                        .map_err(|_| format!("{item:?} is not a CIDR"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if cidrs.is_empty() {
                return Err(needs("at least one CIDR"));
            }
            Ok(AutodetectionMethod::Cidr(cidrs))
        }
        "can-reach" => {
            if argument.is_empty() {
                return Err(needs("a destination host or IP"));
            }
            Ok(AutodetectionMethod::CanReach(argument.to_string()))
        }
        _ => Err(unknown_method()),
    }
}

fn unknown_method() -> String {
    "expected first-found, interface=<regex>,..., skip-interface=<regex>,..., cidr=<cidr>,..., \
     can-reach=<destination> or kubernetes-internal-ip"
        .to_string()
}
