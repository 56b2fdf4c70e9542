//! Pure block math on an allocation block (reference §1.2, §4.3 step 4, §4.4).
//!
//! Contract: every operation keeps the §1.2 invariants (each non-null allocation points to an
//! existing attribute, every attribute is referenced, `unallocated` holds each free ordinal exactly
//! once). Allocation takes ordinals from the front of `unallocated`, skipping reserved addresses in
//! place; release appends to the back and compacts attributes. Nothing here does I/O or reads the
//! clock; the caller bumps `sequence_number` when it writes the block.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Utc};
use ipnet::IpNet;

/// Attribute keys Calico writes into `secondary` (§1.2).
pub const ATTRIBUTE_NODE: &str = "node";
pub const ATTRIBUTE_POD: &str = "pod";
pub const ATTRIBUTE_NAMESPACE: &str = "namespace";
pub const ATTRIBUTE_TIMESTAMP: &str = "timestamp";
pub const ATTRIBUTE_TYPE: &str = "type";

/// One shared attribute entry: the owner of one or more allocations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attribute {
    pub handle_id: Option<String>,
    pub secondary: BTreeMap<String, String>,
    pub alternate_owner_attrs: BTreeMap<String, String>,
    /// Calico master's IP cooldown marker, kept verbatim (RFC 3339).
    pub released_at: Option<String>,
}

/// An IPAM block in domain form (both wire shapes convert into this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub cidr: IpNet,
    /// `host:<node>`, `virtual:<name>` or none.
    pub affinity: Option<String>,
    pub affinity_claim_time: Option<DateTime<Utc>>,
    /// Index = ordinal, value = index into `attributes`.
    pub allocations: Vec<Option<usize>>,
    pub unallocated: Vec<usize>,
    pub attributes: Vec<Attribute>,
    pub sequence_number: u64,
    /// Ordinal → block sequence number when it was allocated.
    pub sequence_number_for_allocation: BTreeMap<usize, u64>,
    pub deleted: bool,
}

/// Why a block operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("{address} is not inside block {block}")]
    OutsideBlock { address: IpAddr, block: IpNet },
    #[error("{address} is already allocated in block {block} to handle {}", handle.as_deref().unwrap_or("<none>"))]
    AlreadyAllocated {
        address: IpAddr,
        block: IpNet,
        handle: Option<String>,
        attributes: BTreeMap<String, String>,
    },
    #[error("block {block} has prefix /{prefix}, too small to hold in memory")]
    TooLarge { block: IpNet, prefix: u8 },
}

/// Largest number of host bits a block may have (Calico's minimum block sizes: /20 v4, /116 v6).
const MAX_HOST_BITS: u8 = 12;

impl Block {
    /// A fresh block: every ordinal free in ascending order.
    pub fn new(
        cidr: IpNet,
        affinity: Option<String>,
        affinity_claim_time: Option<DateTime<Utc>>,
        sequence_number: u64,
    ) -> Result<Block, BlockError> {
        let cidr = cidr.trunc();
        let host_bits = cidr.max_prefix_len() - cidr.prefix_len();
        if host_bits > MAX_HOST_BITS {
            return Err(BlockError::TooLarge {
                block: cidr,
                prefix: cidr.prefix_len(),
            });
        }
        let size = 1usize << host_bits;
        Ok(Block {
            cidr,
            affinity,
            affinity_claim_time,
            allocations: vec![None; size],
            unallocated: (0..size).collect(),
            attributes: Vec::new(),
            sequence_number,
            sequence_number_for_allocation: BTreeMap::new(),
            deleted: false,
        })
    }

    /// Number of addresses the CIDR covers.
    pub fn size(&self) -> usize {
        let host_bits = self.cidr.max_prefix_len() - self.cidr.prefix_len();
        1usize << host_bits.min(MAX_HOST_BITS)
    }

    /// The node this block is affine to (`host:<node>`), if any.
    pub fn host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix("host:")
    }

    pub fn ordinal_of(&self, address: IpAddr) -> Option<usize> {
        if !self.cidr.contains(&address) {
            return None;
        }
        let offset = address_to_u128(address) - address_to_u128(self.cidr.network());
        usize::try_from(offset).ok().filter(|o| *o < self.size())
    }

    pub fn address_of(&self, ordinal: usize) -> IpAddr {
        u128_to_address(
            address_to_u128(self.cidr.network()) + ordinal as u128,
            self.cidr.network(),
        )
    }

    pub fn allocated_count(&self) -> usize {
        self.allocations.iter().filter(|a| a.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.allocations.iter().all(Option::is_none)
    }

    /// Free ordinals that are not reserved.
    pub fn free_unreserved(&self, reserved: &[IpNet]) -> usize {
        self.unallocated
            .iter()
            .filter(|o| !is_reserved(self.address_of(**o), reserved))
            .count()
    }

    /// Allocates up to `count` addresses from the front of `unallocated`, skipping reserved addresses
    /// (which keep their place). All of them share one attribute entry for `(handle, secondary)`.
    pub fn assign(
        &mut self,
        count: usize,
        handle_id: Option<&str>,
        secondary: &BTreeMap<String, String>,
        reserved: &[IpNet],
    ) -> Vec<IpAddr> {
        let mut chosen = Vec::new();
        let mut kept = Vec::with_capacity(self.unallocated.len());
        for ordinal in self.unallocated.drain(..) {
            if chosen.len() < count && !is_reserved(address_of(self.cidr, ordinal), reserved) {
                chosen.push(ordinal);
            } else {
                kept.push(ordinal);
            }
        }
        self.unallocated = kept;
        if chosen.is_empty() {
            return Vec::new();
        }
        let attribute_index = self.attribute_index_for(handle_id, secondary);
        for ordinal in &chosen {
            self.allocations[*ordinal] = Some(attribute_index);
            self.sequence_number_for_allocation
                .insert(*ordinal, self.sequence_number);
        }
        chosen.iter().map(|o| self.address_of(*o)).collect()
    }

    /// Allocates one specific address (reservations are not consulted, as in Calico's AssignIP).
    pub fn assign_address(
        &mut self,
        address: IpAddr,
        handle_id: Option<&str>,
        secondary: &BTreeMap<String, String>,
    ) -> Result<(), BlockError> {
        let ordinal = self.ordinal_of(address).ok_or(BlockError::OutsideBlock {
            address,
            block: self.cidr,
        })?;
        if let Some(index) = self.allocations[ordinal] {
            let attribute = self.attributes.get(index).cloned().unwrap_or_default();
            return Err(BlockError::AlreadyAllocated {
                address,
                block: self.cidr,
                handle: attribute.handle_id,
                attributes: attribute.secondary,
            });
        }
        self.unallocated.retain(|o| *o != ordinal);
        let attribute_index = self.attribute_index_for(handle_id, secondary);
        self.allocations[ordinal] = Some(attribute_index);
        self.sequence_number_for_allocation
            .insert(ordinal, self.sequence_number);
        Ok(())
    }

    /// The attribute of an allocated address.
    pub fn attribute_of(&self, address: IpAddr) -> Option<&Attribute> {
        let ordinal = self.ordinal_of(address)?;
        self.attributes.get(self.allocations[ordinal]?)
    }

    /// Releases addresses; returns the released ones with their handle. Addresses already free or
    /// outside the block are skipped (release is idempotent).
    pub fn release(&mut self, addresses: &[IpAddr]) -> Vec<(IpAddr, Option<String>)> {
        let mut released = Vec::new();
        for address in addresses {
            let Some(ordinal) = self.ordinal_of(*address) else {
                continue;
            };
            let Some(index) = self.allocations[ordinal] else {
                continue;
            };
            let handle = self.attributes.get(index).and_then(|a| a.handle_id.clone());
            self.allocations[ordinal] = None;
            self.unallocated.push(ordinal);
            self.sequence_number_for_allocation.remove(&ordinal);
            released.push((*address, handle));
        }
        self.compact_attributes();
        released
    }

    /// Addresses owned by `handle_id`, in ordinal order.
    pub fn addresses_of_handle(&self, handle_id: &str) -> Vec<IpAddr> {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(|(ordinal, index)| {
                let attribute = self.attributes.get((*index)?)?;
                (attribute.handle_id.as_deref() == Some(handle_id))
                    .then(|| self.address_of(ordinal))
            })
            .collect()
    }

    /// Every allocation: (address, attribute) in ordinal order; dangling indices are skipped.
    pub fn allocated(&self) -> Vec<(IpAddr, &Attribute)> {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(|(ordinal, index)| {
                Some((self.address_of(ordinal), self.attributes.get((*index)?)?))
            })
            .collect()
    }

    /// Violations of the §1.2 invariants, one sentence each (empty = healthy).
    pub fn invariant_problems(&self, now: DateTime<Utc>) -> Vec<String> {
        let mut problems = Vec::new();
        let cidr = self.cidr;
        if self.allocations.len() != self.size() {
            problems.push(format!(
                "block {cidr}: {} allocation entries for {} addresses",
                self.allocations.len(),
                self.size()
            ));
        }
        let mut referenced = BTreeSet::new();
        for (ordinal, index) in self.allocations.iter().enumerate() {
            if let Some(index) = index {
                referenced.insert(*index);
                if *index >= self.attributes.len() {
                    problems.push(format!(
                        "block {cidr}: ordinal {ordinal} points to missing attribute {index}"
                    ));
                }
            }
        }
        for index in 0..self.attributes.len() {
            if !referenced.contains(&index) {
                problems.push(format!(
                    "block {cidr}: attribute {index} is not referenced by any allocation"
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for ordinal in &self.unallocated {
            if !seen.insert(*ordinal) {
                problems.push(format!(
                    "block {cidr}: ordinal {ordinal} listed twice in unallocated"
                ));
            }
            if *ordinal >= self.allocations.len() {
                problems.push(format!(
                    "block {cidr}: unallocated ordinal {ordinal} out of range"
                ));
            } else if self.allocations[*ordinal].is_some() {
                problems.push(format!(
                    "block {cidr}: ordinal {ordinal} is both allocated and unallocated"
                ));
            }
        }
        if self.unallocated.len() + self.allocated_count() != self.size() {
            problems.push(format!(
                "block {cidr}: {} unallocated + {} allocated != {} addresses",
                self.unallocated.len(),
                self.allocated_count(),
                self.size()
            ));
        }
        for attribute in &self.attributes {
            if let Some(released) = &attribute.released_at {
                match DateTime::parse_from_rfc3339(released) {
                    Ok(time) if time.with_timezone(&Utc) > now => problems.push(format!(
                        "block {cidr}: releasedAt {released} is in the future"
                    )),
                    Ok(_) => {}
                    Err(_) => problems.push(format!(
                        "block {cidr}: releasedAt {released:?} is not a time"
                    )),
                }
            }
        }
        problems
    }

    fn attribute_index_for(
        &mut self,
        handle_id: Option<&str>,
        secondary: &BTreeMap<String, String>,
    ) -> usize {
        let wanted = Attribute {
            handle_id: handle_id.map(str::to_string),
            secondary: secondary.clone(),
            ..Attribute::default()
        };
        if let Some(index) = self.attributes.iter().position(|a| *a == wanted) {
            return index;
        }
        self.attributes.push(wanted);
        self.attributes.len() - 1
    }

    /// Drops unreferenced attributes and renumbers the allocations that point past them.
    fn compact_attributes(&mut self) {
        let referenced: BTreeSet<usize> = self.allocations.iter().flatten().copied().collect();
        let mut new_index = BTreeMap::new();
        let mut kept = Vec::new();
        for (index, attribute) in self.attributes.drain(..).enumerate() {
            if referenced.contains(&index) {
                new_index.insert(index, kept.len());
                kept.push(attribute);
            }
        }
        self.attributes = kept;
        for allocation in self.allocations.iter_mut().flatten() {
            if let Some(index) = new_index.get(allocation) {
                *allocation = *index;
            }
        }
    }
}

/// True when `address` lies in any reserved CIDR.
pub fn is_reserved(address: IpAddr, reserved: &[IpNet]) -> bool {
    reserved.iter().any(|net| net.contains(&address))
}

fn address_of(cidr: IpNet, ordinal: usize) -> IpAddr {
    u128_to_address(
        address_to_u128(cidr.network()) + ordinal as u128,
        cidr.network(),
    )
}

pub(crate) fn address_to_u128(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Builds an address of the same family as `family`.
pub(crate) fn u128_to_address(value: u128, family: IpAddr) -> IpAddr {
    match family {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(value as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// The block CIDR of `block_prefix` containing `address`.
pub fn block_containing(address: IpAddr, block_prefix: u8) -> Option<IpNet> {
    IpNet::new(address, block_prefix).ok().map(|n| n.trunc())
}
