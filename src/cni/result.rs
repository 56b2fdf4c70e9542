//! What the plugin prints: CNI results, error objects and the VERSION answer.
//!
//! Results are built in the CNI 1.0.0 shape and rendered for the version the runtime asked
//! for: before 1.0.0 every `ips` entry also carries `"version": "4"|"6"`. Errors are always
//! `{cniVersion, code, msg, details}` on stdout with a non-zero exit (the caller's job).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Versions this plugin speaks, oldest first; the last is the newest.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The version used when the runtime did not say which one it wants.
pub const LATEST_VERSION: &str = "1.1.0";

/// CNI error codes: 1–99 are defined by the specification, 100 and up are Starling's own.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const CONTAINER_UNKNOWN: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODING_FAILURE: u32 = 6;
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// Creating, configuring or removing interfaces, addresses, routes or sysctls failed.
    pub const WIRING_FAILED: u32 = 100;
    /// No free address in the pools the pod may use.
    pub const POOL_EXHAUSTED: u32 = 101;
    /// A requested address (annotation `ipAddrs`, `ips` capability) is taken or reserved.
    pub const ADDRESS_IN_USE: u32 = 102;
    /// The daemon refused the request (bad annotation, unknown pool, ...).
    pub const IPAM_REFUSED: u32 = 103;
    /// CHECK found the pod's wiring or allocation different from what ADD left.
    pub const CHECK_FAILED: u32 = 104;
    /// Anything else that went wrong inside the daemon.
    pub const IPAM_INTERNAL: u32 = 105;
}

/// A CNI error object. `details` may be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// The JSON object printed on stdout.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        })
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.details.is_empty() {
            write!(formatter, "{} (code {})", self.msg, self.code)
        } else {
            write!(
                formatter,
                "{}: {} (code {})",
                self.msg, self.details, self.code
            )
        }
    }
}

impl std::error::Error for CniError {}

/// Fails with code 1 unless `version` is one this plugin speaks.
pub fn check_supported(version: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("incompatible CNI version {version:?}"),
            format!("this plugin supports {}", SUPPORTED_VERSIONS.join(", ")),
        ))
    }
}

/// Compares dotted versions numerically; unparsable parts count as 0.
pub fn version_at_least(version: &str, minimum: &str) -> bool {
    let parts = |text: &str| -> Vec<u64> {
        text.split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    parts(version) >= parts(minimum)
}

/// The answer to `CNI_COMMAND=VERSION`; echoes the requested version when it is supported.
pub fn version_answer(requested: Option<&str>) -> serde_json::Value {
    let version = requested
        .filter(|version| SUPPORTED_VERSIONS.contains(version))
        .unwrap_or(LATEST_VERSION);
    serde_json::json!({
        "cniVersion": version,
        "supportedVersions": SUPPORTED_VERSIONS,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Set for interfaces inside the pod: the namespace path the runtime gave us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// A CNI result in the 1.0.0 shape (also what `prevResult` parses into).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: serde_json::Value,
}

impl CniResult {
    /// Renders for `cni_version`: before 1.0.0 each `ips` entry also names its IP version.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut ips = Vec::with_capacity(self.ips.len());
        for ip in &self.ips {
            let mut entry = serde_json::to_value(ip).unwrap_or(serde_json::Value::Null);
            if !version_at_least(cni_version, "1.0.0") {
                if let Some(object) = entry.as_object_mut() {
                    let family = if ip.address.addr().is_ipv4() {
                        "4"
                    } else {
                        "6"
                    };
                    object.insert("version".into(), family.into());
                }
            }
            ips.push(entry);
        }
        let dns = if self.dns.is_null() {
            serde_json::json!({})
        } else {
            self.dns.clone()
        };
        serde_json::json!({
            "cniVersion": cni_version,
            "interfaces": self.interfaces,
            "ips": ips,
            "routes": self.routes,
            "dns": dns,
        })
    }

    /// Reads a `prevResult` of any supported version (the `version` field is ignored).
    pub fn from_prev_result(value: &serde_json::Value) -> Result<CniResult, CniError> {
        serde_json::from_value(value.clone()).map_err(|err| {
            CniError::new(
                code::INVALID_NETWORK_CONFIG,
                "prevResult is not a CNI result",
                err.to_string(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "cali12345678901".into(),
                    mac: Some("ee:ee:ee:ee:ee:ee".into()),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    sandbox: Some("/var/run/netns/pod".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "10.0.0.5/32".parse().unwrap(),
                gateway: None,
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: None,
            }],
            dns: serde_json::Value::Null,
        }
    }

    #[test]
    fn result_shape_for_1_0_0() {
        let json = sample().to_json("1.0.0");
        assert_eq!(json["cniVersion"], "1.0.0");
        assert_eq!(json["interfaces"][1]["sandbox"], "/var/run/netns/pod");
        assert!(json["interfaces"][0].get("sandbox").is_none());
        assert_eq!(json["ips"][0]["address"], "10.0.0.5/32");
        assert_eq!(json["ips"][0]["interface"], 1);
        assert!(json["ips"][0].get("version").is_none());
        assert_eq!(json["routes"][0]["dst"], "0.0.0.0/0");
        assert!(json["dns"].is_object());
    }

    #[test]
    fn result_shape_for_old_versions_names_ip_version() {
        let json = sample().to_json("0.3.1");
        assert_eq!(json["ips"][0]["version"], "4");
        let parsed = CniResult::from_prev_result(&json).unwrap();
        assert_eq!(parsed.ips, sample().ips);
        assert_eq!(parsed.interfaces, sample().interfaces);
    }

    #[test]
    fn error_shape() {
        let error = CniError::new(code::TRY_AGAIN_LATER, "daemon down", "socket /x");
        let json = error.to_json("1.0.0");
        assert_eq!(json["code"], 11);
        assert_eq!(json["msg"], "daemon down");
        assert_eq!(json["details"], "socket /x");
        assert_eq!(json["cniVersion"], "1.0.0");
        assert_eq!(error.to_string(), "daemon down: socket /x (code 11)");
    }

    #[test]
    fn version_negotiation() {
        assert!(check_supported("0.4.0").is_ok());
        assert!(check_supported("1.1.0").is_ok());
        assert_eq!(
            check_supported("2.0.0").unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        assert!(check_supported("").is_err());
        assert!(version_at_least("1.0.0", "0.4.0"));
        assert!(version_at_least("0.4.0", "0.4.0"));
        assert!(!version_at_least("0.3.1", "0.4.0"));
        assert!(version_at_least("0.10.0", "0.4.0"));

        let answer = version_answer(Some("0.4.0"));
        assert_eq!(answer["cniVersion"], "0.4.0");
        let supported: Vec<&str> = answer["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(supported, ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
        assert_eq!(version_answer(Some("7.0.0"))["cniVersion"], LATEST_VERSION);
        assert_eq!(version_answer(None)["cniVersion"], LATEST_VERSION);
    }
}
