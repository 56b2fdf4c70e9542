//! Calico's names for IPAM objects: etcdv3 keys (reference §3) and Kubernetes object names and
//! labels (§1.2–1.4, §11). Pure string functions.

use ipnet::IpNet;
use sha2::{Digest, Sha256};
use sha3::Sha3_256;

use starling_ipam::records::{AffinityKey, AffinityType};

pub const BLOCK_PREFIX: &str = "/calico/ipam/v2/assignment/";
pub const AFFINITY_HOST_PREFIX: &str = "/calico/ipam/v2/host/";
pub const AFFINITY_VIRTUAL_PREFIX: &str = "/calico/ipam/v2/virtual/";
pub const HANDLE_PREFIX: &str = "/calico/ipam/v2/handle/";
pub const IPAM_CONFIG_KEY: &str = "/calico/ipam/v2/config";
pub const RESERVATION_PREFIX: &str = "/calico/resources/v3/projectcalico.org/ipreservations/";

/// Label keys on BlockAffinity objects (§1.3).
pub const LABEL_HOSTNAME_HASH: &str = "projectcalico.org/hostname-hash";
pub const LABEL_AFFINITY_TYPE: &str = "projectcalico.org/affinity-type";
pub const LABEL_IP_VERSION: &str = "projectcalico.org/ip-version";

fn version(cidr: &IpNet) -> u8 {
    match cidr {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

/// `10.0.0.0/26` → `10.0.0.0-26` (etcd keys replace only the slash).
fn etcd_cidr(cidr: &IpNet) -> String {
    cidr.to_string().replacen('/', "-", 1)
}

fn parse_etcd_cidr(text: &str) -> Option<IpNet> {
    let (address, prefix) = text.rsplit_once('-')?;
    let cidr: IpNet = format!("{address}/{prefix}").parse().ok()?;
    (cidr.trunc() == cidr).then_some(cidr)
}

pub fn block_key(cidr: &IpNet) -> String {
    format!(
        "{BLOCK_PREFIX}ipv{}/block/{}",
        version(cidr),
        etcd_cidr(cidr)
    )
}

pub fn parse_block_key(path: &str) -> Option<IpNet> {
    let rest = path.strip_prefix(BLOCK_PREFIX)?;
    let (family, rest) = rest.split_once('/')?;
    let cidr = parse_etcd_cidr(rest.strip_prefix("block/")?)?;
    (family == format!("ipv{}", version(&cidr))).then_some(cidr)
}

pub fn affinity_key(key: &AffinityKey) -> String {
    let prefix = match key.affinity_type {
        AffinityType::Host => AFFINITY_HOST_PREFIX,
        AffinityType::Virtual => AFFINITY_VIRTUAL_PREFIX,
    };
    format!(
        "{prefix}{}/ipv{}/block/{}",
        key.host,
        version(&key.cidr),
        etcd_cidr(&key.cidr)
    )
}

pub fn parse_affinity_key(path: &str) -> Option<AffinityKey> {
    let (affinity_type, rest) = if let Some(rest) = path.strip_prefix(AFFINITY_HOST_PREFIX) {
        (AffinityType::Host, rest)
    } else {
        (
            AffinityType::Virtual,
            path.strip_prefix(AFFINITY_VIRTUAL_PREFIX)?,
        )
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let [host, family, "block", cidr] = parts.as_slice() else {
        return None;
    };
    let cidr = parse_etcd_cidr(cidr)?;
    if host.is_empty() || *family != format!("ipv{}", version(&cidr)) {
        return None;
    }
    Some(AffinityKey {
        host: host.to_string(),
        affinity_type,
        cidr,
    })
}

pub fn handle_key(handle_id: &str) -> String {
    format!("{HANDLE_PREFIX}{handle_id}")
}

pub fn parse_handle_key(path: &str) -> Option<String> {
    let id = path.strip_prefix(HANDLE_PREFIX)?;
    (!id.is_empty() && !id.contains('/')).then(|| id.to_string())
}

pub fn reservation_key(name: &str) -> String {
    format!("{RESERVATION_PREFIX}{name}")
}

pub fn parse_reservation_key(path: &str) -> Option<String> {
    let name = path.strip_prefix(RESERVATION_PREFIX)?;
    (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
}

/// Kubernetes name of an IPAMBlock: `.`, `:` and `/` become `-`.
pub fn block_object_name(cidr: &IpNet) -> String {
    cidr.to_string().replace(['.', ':', '/'], "-")
}

/// Kubernetes name of a BlockAffinity: `<node>-<blockname>`, shortened with a hash at 253+ chars.
pub fn affinity_object_name(host: &str, cidr: &IpNet) -> String {
    let cidr_name = block_object_name(cidr);
    let name = format!("{host}-{cidr_name}");
    if name.len() < 253 {
        return name;
    }
    let digest = Sha256::digest(format!("{host}+{cidr_name}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let keep = 252usize.saturating_sub(cidr_name.len() + 13);
    let truncated: String = host.chars().take(keep).collect();
    format!("{truncated}-{cidr_name}-{}", &hex[..11])
}

/// Kubernetes name of an IPAMHandle: the id in lower case.
pub fn handle_object_name(handle_id: &str) -> String {
    handle_id.to_lowercase()
}

/// `projectcalico.org/hostname-hash`: base32 (standard alphabet, no padding) of SHA3-256(node).
pub fn hostname_hash(host: &str) -> String {
    base32_no_padding(&Sha3_256::digest(host.as_bytes()))
}

fn base32_no_padding(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn ip_version_label(cidr: &IpNet) -> String {
    version(cidr).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_keys_round_trip() {
        let v4: IpNet = "10.244.1.0/26".parse().unwrap();
        let v6: IpNet = "fd00:1::/122".parse().unwrap();
        assert_eq!(
            block_key(&v4),
            "/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26"
        );
        assert_eq!(
            block_key(&v6),
            "/calico/ipam/v2/assignment/ipv6/block/fd00:1::-122"
        );
        assert_eq!(parse_block_key(&block_key(&v4)), Some(v4));
        assert_eq!(parse_block_key(&block_key(&v6)), Some(v6));
        assert_eq!(
            parse_block_key("/calico/ipam/v2/assignment/ipv6/block/10.0.0.0-26"),
            None
        );
        let key = AffinityKey {
            host: "node-1".into(),
            affinity_type: AffinityType::Host,
            cidr: v4,
        };
        assert_eq!(
            affinity_key(&key),
            "/calico/ipam/v2/host/node-1/ipv4/block/10.244.1.0-26"
        );
        assert_eq!(parse_affinity_key(&affinity_key(&key)), Some(key));
        assert_eq!(parse_affinity_key("/calico/ipam/v2/host/node-1"), None);
        assert_eq!(
            parse_handle_key(&handle_key("k8s-pod-network.abc")).as_deref(),
            Some("k8s-pod-network.abc")
        );
    }

    #[test]
    fn kubernetes_names() {
        let v4: IpNet = "10.244.1.0/26".parse().unwrap();
        let v6: IpNet = "fd00:1::/122".parse().unwrap();
        assert_eq!(block_object_name(&v4), "10-244-1-0-26");
        assert_eq!(block_object_name(&v6), "fd00-1---122");
        assert_eq!(affinity_object_name("node-1", &v4), "node-1-10-244-1-0-26");
        let long_host = "h".repeat(260);
        let name = affinity_object_name(&long_host, &v4);
        assert!(name.len() <= 253, "{} chars", name.len());
        assert!(name.contains("-10-244-1-0-26-"));
        assert_eq!(handle_object_name("K8s-Pod.ABC"), "k8s-pod.abc");
    }

    #[test]
    fn hostname_hash_is_52_base32_chars() {
        let hash = hostname_hash("node-1");
        assert_eq!(hash.len(), 52);
        assert!(hash
            .chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
        assert_eq!(base32_no_padding(b"foobar"), "MZXW6YTBOI");
    }
}
