//! Shared pieces of the start-up tests: a fake host and configurations built from environments.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use starling::startup::{Host, HostInterface};
use starling_ipam::pools::IpFamily;
use starling_model::config::Config;

/// A host with fixed interfaces; `can-reach=` answers with `reach_source`.
pub struct FakeHost {
    pub interfaces: Vec<HostInterface>,
    pub reach_source: Option<IpAddr>,
}

impl FakeHost {
    /// `lo` plus `eth0` holding `address` (with prefix).
    pub fn with_eth0(address: &str) -> FakeHost {
        FakeHost {
            interfaces: vec![
                HostInterface {
                    name: "lo".into(),
                    index: 1,
                    up: true,
                    addresses: vec!["127.0.0.1/8".parse().unwrap()],
                },
                HostInterface {
                    name: "eth0".into(),
                    index: 2,
                    up: true,
                    addresses: vec![address.parse().unwrap()],
                },
            ],
            reach_source: None,
        }
    }
}

impl Host for FakeHost {
    fn interfaces(&self) -> Result<Vec<HostInterface>, String> {
        Ok(self.interfaces.clone())
    }
    fn source_address_towards(&self, destination: &str, _: IpFamily) -> Result<IpAddr, String> {
        self.reach_source
            .ok_or_else(|| format!("no route to {destination} in the fake host"))
    }
}

/// A configuration from `pairs`, with the nodename file inside `directory` and IPv6 support off (no IPv6 default pool).
pub fn config(directory: &std::path::Path, pairs: &[(&str, &str)]) -> Config {
    let mut environment: BTreeMap<String, String> = BTreeMap::from([
        (
            "CALICO_NODENAME_FILE".to_string(),
            directory.join("lib/calico/nodename").display().to_string(),
        ),
        ("FELIX_IPV6SUPPORT".to_string(), "false".to_string()),
    ]);
    for (key, value) in pairs {
        environment.insert(key.to_string(), value.to_string());
    }
    Config::from_env(&environment).unwrap()
}
