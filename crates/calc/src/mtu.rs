//! MTU auto-detection (reference §5.6): the host MTU from the host's interfaces and the pod MTU
//! from the enabled encapsulations. The edge writes the result to the MTU file for the CNI
//! plugin.

use std::fmt;
use std::str::FromStr;

use regex::Regex;
use starling_model::felix::DEFAULT_MTU_IFACE_PATTERN;

/// Host MTU assumed when no matching interface is up.
pub const DEFAULT_HOST_MTU: u32 = 1460;
pub const IPIP_OVERHEAD: u32 = 20;
pub const VXLAN_OVERHEAD: u32 = 50;
pub const VXLAN_V6_OVERHEAD: u32 = 70;

/// The regular expression choosing interfaces whose MTU counts as the host MTU.
#[derive(Debug, Clone)]
pub struct MtuInterfacePattern(Regex);

#[derive(Debug, thiserror::Error)]
#[error("mtuIfacePattern {pattern:?} is not a valid regular expression: {reason}")]
pub struct MtuPatternError {
    pub pattern: String,
    pub reason: String,
}

impl FromStr for MtuInterfacePattern {
    type Err = MtuPatternError;
    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        Regex::new(pattern)
            .map(MtuInterfacePattern)
            .map_err(|error| MtuPatternError {
                pattern: pattern.to_string(),
                reason: error.to_string(),
            })
    }
}

impl Default for MtuInterfacePattern {
    fn default() -> Self {
        // A compile-time constant, not outside data: it is covered by the tests below.
        MtuInterfacePattern(
            Regex::new(DEFAULT_MTU_IFACE_PATTERN).expect("default mtuIfacePattern compiles"),
        )
    }
}

impl fmt::Display for MtuInterfacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl MtuInterfacePattern {
    pub fn matches(&self, name: &str) -> bool {
        self.0.is_match(name)
    }
}

/// A host interface as MTU detection sees it.
#[derive(Debug, Clone, Copy)]
pub struct InterfaceMtu<'a> {
    pub name: &'a str,
    pub mtu: u32,
    pub oper_up: bool,
}

/// Smallest MTU among oper-up interfaces matching the pattern, else [`DEFAULT_HOST_MTU`].
pub fn host_mtu<'a>(
    interfaces: impl IntoIterator<Item = InterfaceMtu<'a>>,
    pattern: &MtuInterfacePattern,
) -> u32 {
    interfaces
        .into_iter()
        .filter(|interface| {
            interface.oper_up && interface.mtu > 0 && pattern.matches(interface.name)
        })
        .map(|interface| interface.mtu)
        .min()
        .unwrap_or(DEFAULT_HOST_MTU)
}

/// Smallest MTU among the enabled encapsulations, else the host MTU.
pub fn pod_mtu(host_mtu: u32, encapsulations: impl IntoIterator<Item = (bool, u32)>) -> u32 {
    encapsulations
        .into_iter()
        .filter(|(enabled, _)| *enabled)
        .map(|(_, mtu)| mtu)
        .min()
        .unwrap_or(host_mtu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str, mtu: u32, oper_up: bool) -> InterfaceMtu<'_> {
        InterfaceMtu { name, mtu, oper_up }
    }

    #[test]
    fn host_mtu_uses_matching_up_interfaces_only() {
        let pattern = MtuInterfacePattern::default();
        let interfaces = vec![
            interface("eth0", 9000, true),
            interface("ens3", 1500, true),
            interface("eth1", 1400, false),
            interface("docker0", 1200, true),
            interface("cali0123456789a", 1000, true),
        ];
        assert_eq!(host_mtu(interfaces, &pattern), 1500);
        assert_eq!(host_mtu([], &pattern), DEFAULT_HOST_MTU);
        assert_eq!(host_mtu([interface("lo", 65536, true)], &pattern), 1460);
    }

    #[test]
    fn pod_mtu_is_smallest_enabled_encapsulation() {
        assert_eq!(
            pod_mtu(1500, [(true, 1480), (true, 1450), (false, 1430)]),
            1450
        );
        assert_eq!(pod_mtu(1500, [(false, 1480)]), 1500);
    }

    #[test]
    fn custom_pattern_and_bad_pattern() {
        let pattern: MtuInterfacePattern = "^veth".parse().unwrap();
        assert!(pattern.matches("veth0"));
        assert!(!pattern.matches("eth0"));
        let error = "(".parse::<MtuInterfacePattern>().unwrap_err();
        assert!(error.to_string().contains("mtuIfacePattern"));
    }
}
