//! `StoredKind` for each IPAM record: conversion between the domain records and Calico's two wire
//! shapes (`crate::resources::ipam`), with validation on the way in.
//!
//! Decoding accepts everything Calico writes (holes, legacy `hostAffinity`, dangling attribute indices
//! that `ipam check` must be able to report) but refuses what would make allocation unsafe: a wrong
//! number of allocations, out-of-range or duplicated free ordinals, an ordinal both free and allocated.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use ipnet::IpNet;
use kube::api::ObjectMeta;

use super::keys;
use super::StoredKind;
use crate::resources::ipam::{
    AllocationAttribute, BlockAffinity, BlockAffinitySpec, EtcdAffinity, EtcdBlock, EtcdHandle,
    IPAMBlock, IPAMBlockSpec, IPAMHandle, IPAMHandleSpec,
};
use starling_ipam::block::{Attribute, Block};
use starling_ipam::records::{Affinity, AffinityKey, AffinityState, AffinityType, Handle};

pub(super) fn named(name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        ..ObjectMeta::default()
    }
}

fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(text: &str, field: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{field} {text:?} is not an RFC 3339 time: {e}"))
}

fn parse_cidr(text: &str, field: &str) -> Result<IpNet, String> {
    let cidr: IpNet = text
        .parse()
        .map_err(|_| format!("{field} {text:?} is not a CIDR"))?;
    if cidr.trunc() != cidr {
        return Err(format!("{field} {text:?} has host bits set"));
    }
    Ok(cidr)
}

/// The fields both block shapes share, already parsed.
struct BlockFields<'a> {
    cidr: &'a str,
    affinity: Option<String>,
    claim_time: Option<&'a str>,
    allocations: &'a [Option<i64>],
    unallocated: &'a [i64],
    attributes: &'a [AllocationAttribute],
    sequence_number: u64,
    sequence_for_allocation: Option<&'a BTreeMap<String, u64>>,
    deleted: bool,
}

fn block_from_fields(fields: BlockFields<'_>) -> Result<Block, String> {
    let cidr = parse_cidr(fields.cidr, "cidr")?;
    let mut block = Block::new(cidr, fields.affinity, None, fields.sequence_number)
        .map_err(|e| e.to_string())?;
    if let Some(time) = fields.claim_time.filter(|t| !t.is_empty()) {
        block.affinity_claim_time = Some(parse_time(time, "affinityClaimTime")?);
    }
    let size = block.size();
    if fields.allocations.len() != size {
        return Err(format!(
            "allocations has {} entries but block {cidr} has {size} addresses",
            fields.allocations.len()
        ));
    }
    block.allocations = fields
        .allocations
        .iter()
        .enumerate()
        .map(|(ordinal, entry)| match entry {
            None => Ok(None),
            Some(index) => usize::try_from(*index)
                .map(Some)
                .map_err(|_| format!("allocations[{ordinal}] = {index} is negative")),
        })
        .collect::<Result<_, _>>()?;
    let mut seen = vec![false; size];
    block.unallocated = Vec::with_capacity(fields.unallocated.len());
    for ordinal in fields.unallocated {
        let index = usize::try_from(*ordinal)
            .ok()
            .filter(|o| *o < size)
            .ok_or_else(|| format!("unallocated ordinal {ordinal} is outside 0..{size}"))?;
        if seen[index] {
            return Err(format!("unallocated lists ordinal {ordinal} twice"));
        }
        if block.allocations[index].is_some() {
            return Err(format!(
                "ordinal {ordinal} is both allocated and in unallocated"
            ));
        }
        seen[index] = true;
        block.unallocated.push(index);
    }
    block.attributes = fields
        .attributes
        .iter()
        .map(|a| Attribute {
            handle_id: a.handle_id.clone(),
            secondary: a.secondary.clone().unwrap_or_default(),
            alternate_owner_attrs: a.alternate_owner_attrs.clone().unwrap_or_default(),
            released_at: a.released_at.clone(),
        })
        .collect();
    for (ordinal, sequence) in fields.sequence_for_allocation.into_iter().flatten() {
        let ordinal: usize = ordinal
            .parse()
            .map_err(|_| format!("sequenceNumberForAllocation key {ordinal:?} is not a number"))?;
        block
            .sequence_number_for_allocation
            .insert(ordinal, *sequence);
    }
    block.deleted = fields.deleted;
    Ok(block)
}

fn wire_attributes(block: &Block) -> Vec<AllocationAttribute> {
    block
        .attributes
        .iter()
        .map(|a| AllocationAttribute {
            handle_id: a.handle_id.clone(),
            secondary: (!a.secondary.is_empty()).then(|| a.secondary.clone()),
            alternate_owner_attrs: (!a.alternate_owner_attrs.is_empty())
                .then(|| a.alternate_owner_attrs.clone()),
            released_at: a.released_at.clone(),
        })
        .collect()
}

fn wire_sequences(block: &Block) -> BTreeMap<String, u64> {
    block
        .sequence_number_for_allocation
        .iter()
        .map(|(ordinal, sequence)| (ordinal.to_string(), *sequence))
        .collect()
}

impl StoredKind for Block {
    type Key = IpNet;
    type Crd = IPAMBlock;

    fn key(&self) -> IpNet {
        self.cidr
    }
    fn etcd_key(key: &IpNet) -> String {
        keys::block_key(key)
    }
    fn etcd_prefix() -> &'static str {
        keys::BLOCK_PREFIX
    }
    fn etcd_parse_key(path: &str) -> Option<IpNet> {
        keys::parse_block_key(path)
    }
    fn etcd_encode(&self) -> Result<Vec<u8>, String> {
        let value = EtcdBlock {
            cidr: self.cidr.to_string(),
            affinity: self.affinity.clone(),
            affinity_claim_time: self.affinity_claim_time.as_ref().map(format_time),
            allocations: self
                .allocations
                .iter()
                .map(|a| a.map(|i| i as i64))
                .collect(),
            unallocated: self.unallocated.iter().map(|o| *o as i64).collect(),
            attributes: Some(wire_attributes(self)),
            sequence_number: self.sequence_number,
            sequence_number_for_allocation: Some(wire_sequences(self)),
            deleted: self.deleted,
            host_affinity: None,
        };
        serde_json::to_vec(&value).map_err(|e| e.to_string())
    }
    fn etcd_decode(key: &IpNet, bytes: &[u8]) -> Result<Block, String> {
        let value: EtcdBlock = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let affinity = value
            .affinity
            .clone()
            .or_else(|| value.host_affinity.as_ref().map(|h| format!("host:{h}")));
        let block = block_from_fields(BlockFields {
            cidr: &value.cidr,
            affinity,
            claim_time: value.affinity_claim_time.as_deref(),
            allocations: &value.allocations,
            unallocated: &value.unallocated,
            attributes: value.attributes.as_deref().unwrap_or_default(),
            sequence_number: value.sequence_number,
            sequence_for_allocation: value.sequence_number_for_allocation.as_ref(),
            deleted: value.deleted,
        })?;
        if block.cidr != *key {
            return Err(format!(
                "cidr {} does not match the key's {key}",
                block.cidr
            ));
        }
        Ok(block)
    }
    fn kube_name(key: &IpNet) -> String {
        keys::block_object_name(key)
    }
    fn to_crd(&self) -> IPAMBlock {
        IPAMBlock {
            metadata: named(keys::block_object_name(&self.cidr)),
            spec: IPAMBlockSpec {
                cidr: self.cidr.to_string(),
                affinity: self.affinity.clone(),
                affinity_claim_time: self.affinity_claim_time.as_ref().map(format_time),
                allocations: self
                    .allocations
                    .iter()
                    .map(|a| a.map(|i| i as i64))
                    .collect(),
                unallocated: self.unallocated.iter().map(|o| *o as i64).collect(),
                attributes: wire_attributes(self),
                sequence_number: self.sequence_number,
                sequence_number_for_allocation: Some(wire_sequences(self)),
                deleted: self.deleted,
                strict_affinity: false,
            },
        }
    }
    fn from_crd(crd: &IPAMBlock) -> Result<Block, String> {
        let spec = &crd.spec;
        block_from_fields(BlockFields {
            cidr: &spec.cidr,
            affinity: spec.affinity.clone(),
            claim_time: spec.affinity_claim_time.as_deref(),
            allocations: &spec.allocations,
            unallocated: &spec.unallocated,
            attributes: &spec.attributes,
            sequence_number: spec.sequence_number,
            sequence_for_allocation: spec.sequence_number_for_allocation.as_ref(),
            deleted: spec.deleted,
        })
    }
    fn crd_deleted(crd: &IPAMBlock) -> bool {
        crd.spec.deleted
    }
    fn crd_mark_deleted(crd: &mut IPAMBlock) -> bool {
        crd.spec.deleted = true;
        true
    }
}

impl StoredKind for Affinity {
    type Key = AffinityKey;
    type Crd = BlockAffinity;

    fn key(&self) -> AffinityKey {
        self.key.clone()
    }
    fn etcd_key(key: &AffinityKey) -> String {
        keys::affinity_key(key)
    }
    fn etcd_prefix() -> &'static str {
        // Virtual (load-balancer) affinities are not listed in etcd mode; see keys.rs.
        keys::AFFINITY_HOST_PREFIX
    }
    fn etcd_parse_key(path: &str) -> Option<AffinityKey> {
        keys::parse_affinity_key(path)
    }
    fn etcd_encode(&self) -> Result<Vec<u8>, String> {
        let value = EtcdAffinity {
            state: self.state.as_str().to_string(),
            deleted: self.deleted,
        };
        serde_json::to_vec(&value).map_err(|e| e.to_string())
    }
    fn etcd_decode(key: &AffinityKey, bytes: &[u8]) -> Result<Affinity, String> {
        // Calico's oldest affinities have an empty value: treat as `{}` (confirmed).
        let value: EtcdAffinity = if bytes.iter().all(u8::is_ascii_whitespace) {
            EtcdAffinity::default()
        } else {
            serde_json::from_slice(bytes).map_err(|e| e.to_string())?
        };
        Ok(Affinity {
            key: key.clone(),
            state: AffinityState::parse(&value.state)?,
            deleted: value.deleted,
        })
    }
    fn kube_name(key: &AffinityKey) -> String {
        keys::affinity_object_name(&key.host, &key.cidr)
    }
    fn to_crd(&self) -> BlockAffinity {
        let mut metadata = named(Self::kube_name(&self.key));
        metadata.labels = Some(
            [
                (
                    keys::LABEL_HOSTNAME_HASH.to_string(),
                    keys::hostname_hash(&self.key.host),
                ),
                (
                    keys::LABEL_AFFINITY_TYPE.to_string(),
                    self.key.affinity_type.as_str().to_string(),
                ),
                (
                    keys::LABEL_IP_VERSION.to_string(),
                    keys::ip_version_label(&self.key.cidr),
                ),
            ]
            .into_iter()
            .collect(),
        );
        BlockAffinity {
            metadata,
            spec: BlockAffinitySpec {
                state: self.state.as_str().to_string(),
                node: self.key.host.clone(),
                affinity_type: Some(self.key.affinity_type.as_str().to_string()),
                cidr: self.key.cidr.to_string(),
                deleted: self.deleted.to_string(),
            },
        }
    }
    fn from_crd(crd: &BlockAffinity) -> Result<Affinity, String> {
        let spec = &crd.spec;
        let affinity_type = match spec.affinity_type.as_deref() {
            None | Some("") | Some("host") => AffinityType::Host,
            Some("virtual") => AffinityType::Virtual,
            Some(other) => return Err(format!("type {other:?} is not host or virtual")),
        };
        if spec.node.is_empty() {
            return Err("node is empty".to_string());
        }
        Ok(Affinity {
            key: AffinityKey {
                host: spec.node.clone(),
                affinity_type,
                cidr: parse_cidr(&spec.cidr, "cidr")?,
            },
            state: AffinityState::parse(&spec.state)?,
            deleted: spec.deleted.eq_ignore_ascii_case("true"),
        })
    }
    fn crd_deleted(crd: &BlockAffinity) -> bool {
        crd.spec.deleted.eq_ignore_ascii_case("true")
    }
    fn crd_mark_deleted(crd: &mut BlockAffinity) -> bool {
        crd.spec.deleted = "true".to_string();
        true
    }
}

fn handle_blocks(raw: &BTreeMap<String, i64>) -> Result<BTreeMap<String, u64>, String> {
    raw.iter()
        .map(|(cidr, count)| {
            let count = u64::try_from(*count)
                .map_err(|_| format!("block {cidr} has negative count {count}"))?;
            Ok((cidr.clone(), count))
        })
        .collect()
}

fn wire_handle_blocks(handle: &Handle) -> BTreeMap<String, i64> {
    handle
        .blocks
        .iter()
        .map(|(cidr, count)| (cidr.clone(), i64::try_from(*count).unwrap_or(i64::MAX)))
        .collect()
}

impl StoredKind for Handle {
    type Key = String;
    type Crd = IPAMHandle;

    fn key(&self) -> String {
        self.id.clone()
    }
    fn etcd_key(key: &String) -> String {
        keys::handle_key(key)
    }
    fn etcd_prefix() -> &'static str {
        keys::HANDLE_PREFIX
    }
    fn etcd_parse_key(path: &str) -> Option<String> {
        keys::parse_handle_key(path)
    }
    fn etcd_encode(&self) -> Result<Vec<u8>, String> {
        let value = EtcdHandle {
            block: wire_handle_blocks(self),
            deleted: self.deleted,
        };
        serde_json::to_vec(&value).map_err(|e| e.to_string())
    }
    fn etcd_decode(key: &String, bytes: &[u8]) -> Result<Handle, String> {
        let value: EtcdHandle = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(Handle {
            id: key.clone(),
            blocks: handle_blocks(&value.block)?,
            deleted: value.deleted,
        })
    }
    fn kube_name(key: &String) -> String {
        keys::handle_object_name(key)
    }
    fn to_crd(&self) -> IPAMHandle {
        IPAMHandle {
            metadata: named(keys::handle_object_name(&self.id)),
            spec: IPAMHandleSpec {
                handle_id: self.id.clone(),
                block: wire_handle_blocks(self),
                deleted: self.deleted,
            },
        }
    }
    fn from_crd(crd: &IPAMHandle) -> Result<Handle, String> {
        Ok(Handle {
            id: crd.spec.handle_id.clone(),
            blocks: handle_blocks(&crd.spec.block)?,
            deleted: crd.spec.deleted,
        })
    }
    fn crd_deleted(crd: &IPAMHandle) -> bool {
        crd.spec.deleted
    }
    fn crd_mark_deleted(crd: &mut IPAMHandle) -> bool {
        crd.spec.deleted = true;
        true
    }
}
