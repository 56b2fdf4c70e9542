//! Address assignment over a datastore (reference §4.3): the host's affine blocks first, then new
//! or reclaimed blocks up to the per-host cap, then (without strict affinity) borrowing from any
//! block. Also specific-address assignment (`ipAddrs`, tunnel repair).
//!
//! Contract: every block write is compare-and-swap with a bounded retry; the handle is incremented
//! before the block write and decremented when the write loses. A request gets all its addresses or
//! none (partial results are released). Assignments through one `Allocator` are serialised, like
//! Calico's host-wide IPAM lock; different hosts contend only through the datastore. Time comes in
//! with each request, never from the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use super::block::{address_to_u128, block_containing, u128_to_address, Block, BlockError};
use super::claim::{self, Claim};
use super::handles::{self, DATASTORE_RETRIES};
use super::pools::{fnv1_32, pool_containing, IpFamily};
use super::records::{Affinity, AffinityState, AffinityType, IpamConfig};
use super::{release, IpamError};
use crate::store::{IpamStore, IpamStoreExt};
use starling_model::store::{StoreError, Versioned};
use starling_model::IpPool;

/// Calico's safeguard when neither the request nor IPAMConfig limits blocks per host.
pub const DEFAULT_MAX_BLOCKS_PER_HOST: u32 = 20;

/// One automatic assignment of `count` addresses of one family.
#[derive(Debug, Clone)]
pub struct AssignRequest {
    pub handle_id: String,
    /// `secondary` attributes (`node`, `pod`, `namespace`, `timestamp`, `type`, ...).
    pub attributes: BTreeMap<String, String>,
    pub family: IpFamily,
    pub count: usize,
    /// Pools already chosen by `pools::select_pools`.
    pub pools: Vec<IpPool>,
    /// IPReservation CIDRs: never handed out automatically.
    pub reserved: Vec<IpNet>,
    pub config: IpamConfig,
    /// Per-request cap on affine blocks (0 = none).
    pub max_blocks_per_host: u32,
    pub now: DateTime<Utc>,
}

/// One specific-address assignment.
#[derive(Debug, Clone)]
pub struct AddressRequest {
    pub address: IpAddr,
    pub handle_id: String,
    pub attributes: BTreeMap<String, String>,
    /// All pools; the address must be in an active one.
    pub pools: Vec<IpPool>,
    pub config: IpamConfig,
    pub now: DateTime<Utc>,
}

/// The allocator of one host.
#[derive(Clone)]
pub struct Allocator<S> {
    store: S,
    host: String,
    host_lock: Arc<futures::lock::Mutex<()>>,
    /// The block each family last assigned from: tried first next time. Only an ordering hint;
    /// a wrong hint costs one extra read.
    last_block: Arc<std::sync::Mutex<BTreeMap<IpFamily, IpNet>>>,
}

/// Effective cap: the smaller of the non-zero limits, else the safeguard.
pub fn block_limit(per_request: u32, configured: u32) -> u32 {
    match (per_request, configured) {
        (0, 0) => DEFAULT_MAX_BLOCKS_PER_HOST,
        (0, limit) | (limit, 0) => limit,
        (a, b) => a.min(b),
    }
}

fn pool_holds_block(pools: &[IpPool], cidr: &IpNet) -> bool {
    pools.iter().any(|p| p.cidr.contains(cidr))
}

fn owner_of(block: &Block, address: IpAddr) -> (String, String) {
    let attribute = block.attribute_of(address).cloned().unwrap_or_default();
    let pod = match (
        attribute.secondary.get("namespace"),
        attribute.secondary.get("pod"),
    ) {
        (Some(namespace), Some(pod)) => format!(" (pod {namespace}/{pod})"),
        (None, Some(pod)) => format!(" (pod {pod})"),
        _ => String::new(),
    };
    (attribute.handle_id.unwrap_or_else(|| "<none>".into()), pod)
}

/// The `index`-th block CIDR of size `prefix` inside `pool`.
fn nth_block(pool: &IpNet, prefix: u8, index: u128) -> Option<IpNet> {
    let host_bits = u32::from(pool.max_prefix_len() - prefix);
    let base = address_to_u128(pool.network());
    let offset = index.checked_shl(host_bits)?;
    IpNet::new(u128_to_address(base + offset, pool.network()), prefix).ok()
}

impl<S: IpamStore> Allocator<S> {
    pub fn new(store: S, host: &str) -> Allocator<S> {
        Allocator {
            store,
            host: host.to_string(),
            host_lock: Arc::new(futures::lock::Mutex::new(())),
            last_block: Arc::new(std::sync::Mutex::new(BTreeMap::new())),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn hinted_block(&self, family: IpFamily) -> Option<IpNet> {
        self.last_block
            .lock()
            .map(|hints| hints.get(&family).copied())
            .unwrap_or(None)
    }

    fn remember_block(&self, family: IpFamily, cidr: IpNet) {
        if let Ok(mut hints) = self.last_block.lock() {
            hints.insert(family, cidr);
        }
    }

    /// Assigns `request.count` addresses or none.
    pub async fn auto_assign(&self, request: &AssignRequest) -> Result<Vec<IpAddr>, IpamError> {
        let _host_lock = self.host_lock.lock().await;
        let mut assigned = Vec::new();
        let outcome = self.assign_all(request, &mut assigned).await;
        let error = match outcome {
            Ok(()) if assigned.len() >= request.count => return Ok(assigned),
            Ok(()) => IpamError::Exhausted {
                version: request.family.version(),
                wanted: request.count,
                found: assigned.len(),
                reason: if request.config.strict_affinity {
                    "no more free affine blocks and strict affinity enabled".to_string()
                } else {
                    "every usable block is full".to_string()
                },
            },
            Err(error) => error,
        };
        if !assigned.is_empty() {
            if let Err(release_error) = release::release_addresses(&self.store, &assigned).await {
                tracing::warn!(%release_error, "could not roll back a partial assignment");
            }
        }
        Err(error)
    }

    async fn assign_all(
        &self,
        request: &AssignRequest,
        assigned: &mut Vec<IpAddr>,
    ) -> Result<(), IpamError> {
        let version = request.family.version();
        let mut affinities: Vec<Versioned<Affinity>> = self
            .store
            .list_host_affinities(&self.host)
            .await?
            .into_iter()
            .filter(|a| {
                let key = &a.value.key;
                key.affinity_type == AffinityType::Host
                    && IpFamily::of_net(&key.cidr) == request.family
            })
            .collect();
        let hint = self.hinted_block(request.family);
        affinities.sort_by_key(|a| (Some(a.value.key.cidr) != hint, a.value.key.cidr));
        let affine_count = affinities.len();
        // One read per affine block until the request is satisfied: the block used last first,
        // then CIDR order (Calico's order). The common case reads one block, never the cluster's.
        for affinity in affinities
            .iter()
            .filter(|a| pool_holds_block(&request.pools, &a.value.key.cidr))
        {
            if assigned.len() >= request.count {
                return Ok(());
            }
            let Some(block) = claim::block_for_affinity(&self.store, affinity, request.now).await?
            else {
                continue;
            };
            if block.value.free_unreserved(&request.reserved) > 0 {
                self.assign_from_block(block, request, assigned).await?;
            }
        }
        let limit = block_limit(
            request.max_blocks_per_host,
            request.config.max_blocks_per_host,
        );
        let mut affine_count = affine_count as u32;
        while assigned.len() < request.count
            && request.config.auto_allocate_blocks
            && affine_count < limit
        {
            let Some(block) = self.find_and_claim_block(request).await? else {
                break;
            };
            affine_count += 1;
            self.assign_from_block(block, request, assigned).await?;
        }
        if assigned.len() < request.count && !request.config.strict_affinity {
            tracing::debug!(host = %self.host, version, "no affine space; borrowing");
            self.borrow(request, assigned).await?;
        }
        Ok(())
    }

    /// Assigns as many as still needed from one block, CAS with retry.
    async fn assign_from_block(
        &self,
        mut block: Versioned<Block>,
        request: &AssignRequest,
        assigned: &mut Vec<IpAddr>,
    ) -> Result<(), IpamError> {
        let cidr = block.value.cidr;
        for _ in 0..DATASTORE_RETRIES {
            let wanted = request.count.saturating_sub(assigned.len());
            if wanted == 0 {
                return Ok(());
            }
            if request.config.strict_affinity && block.value.host() != Some(self.host.as_str()) {
                return Ok(());
            }
            let mut updated = block.value.clone();
            let addresses = updated.assign(
                wanted,
                Some(&request.handle_id),
                &request.attributes,
                &request.reserved,
            );
            if addresses.is_empty() {
                return Ok(());
            }
            let count = addresses.len() as u64;
            handles::increment(&self.store, &request.handle_id, cidr, count).await?;
            updated.sequence_number += 1;
            match self.store.update(&updated, &block.revision).await {
                Ok(_) => {
                    assigned.extend(addresses);
                    self.remember_block(request.family, cidr);
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {
                    handles::decrement(&self.store, &request.handle_id, cidr, Some(count)).await?;
                    block = match self.store.get::<Block>(&cidr).await {
                        Ok(block) => block,
                        Err(StoreError::NotFound { .. }) => return Ok(()),
                        Err(error) => return Err(error.into()),
                    };
                }
                Err(error) => {
                    handles::decrement(&self.store, &request.handle_id, cidr, Some(count)).await?;
                    return Err(error.into());
                }
            }
        }
        Err(IpamError::RetriesExhausted {
            what: format!("block {cidr}"),
        })
    }

    /// A free block CIDR claimed for this host, or a reclaimed empty one, or None.
    async fn find_and_claim_block(
        &self,
        request: &AssignRequest,
    ) -> Result<Option<Versioned<Block>>, IpamError> {
        let blocks = self.store.list::<Block>().await?;
        let existing: BTreeSet<IpNet> = blocks.iter().map(|b| b.value.cidr).collect();
        for pool in &request.pools {
            let prefix = pool.block_size;
            if prefix < pool.cidr.prefix_len() || prefix > pool.cidr.max_prefix_len() {
                continue;
            }
            let total: u128 = 1u128
                .checked_shl(u32::from(prefix - pool.cidr.prefix_len()))
                .unwrap_or(u128::MAX);
            let in_pool = existing.iter().filter(|c| pool.cidr.contains(*c)).count() as u128;
            // Past this many candidates at least one must be free (plus slack for fully reserved).
            let attempts = total.min(in_pool + 1 + 1024);
            let start = u128::from(fnv1_32(&self.host)) % total;
            for step in 0..attempts {
                let Some(candidate) = nth_block(&pool.cidr, prefix, (start + step) % total) else {
                    continue;
                };
                if existing.contains(&candidate)
                    || request.reserved.iter().any(|r| r.contains(&candidate))
                {
                    continue;
                }
                match claim::claim_block(&self.store, &self.host, candidate, request.now).await? {
                    Claim::Claimed(block) => return Ok(Some(block)),
                    Claim::Taken => continue,
                }
            }
        }
        let mut reclaimable: Vec<&Versioned<Block>> = blocks
            .iter()
            .filter(|b| pool_holds_block(&request.pools, &b.value.cidr))
            .filter(|b| claim::is_reclaimable(&b.value, &self.host, request.now))
            .collect();
        reclaimable.sort_by_key(|b| b.value.cidr);
        for block in reclaimable {
            if claim::reclaim_block(&self.store, block).await? {
                if let Claim::Claimed(block) =
                    claim::claim_block(&self.store, &self.host, block.value.cidr, request.now)
                        .await?
                {
                    return Ok(Some(block));
                }
            }
        }
        Ok(None)
    }

    /// Assigns from any block with space in the request's pools, whoever owns it.
    async fn borrow(
        &self,
        request: &AssignRequest,
        assigned: &mut Vec<IpAddr>,
    ) -> Result<(), IpamError> {
        let mut blocks: Vec<Versioned<Block>> = self
            .store
            .list::<Block>()
            .await?
            .into_iter()
            .filter(|b| pool_holds_block(&request.pools, &b.value.cidr))
            .filter(|b| b.value.free_unreserved(&request.reserved) > 0)
            .collect();
        blocks.sort_by_key(|b| b.value.cidr);
        if !blocks.is_empty() {
            let start = fnv1_32(&self.host) as usize % blocks.len();
            blocks.rotate_left(start);
        }
        for block in blocks {
            if assigned.len() >= request.count {
                break;
            }
            self.assign_from_block(block, request, assigned).await?;
        }
        Ok(())
    }

    /// Assigns one specific address: it must be inside an active pool and free. A missing block
    /// is claimed for this host; reservations are not consulted (as in Calico's AssignIP).
    pub async fn assign_address(&self, request: &AddressRequest) -> Result<(), IpamError> {
        let _host_lock = self.host_lock.lock().await;
        let address = request.address;
        let pool = pool_containing(&request.pools, address)
            .ok_or(IpamError::AddressNotInPool { address })?;
        let cidr = block_containing(address, pool.block_size)
            .ok_or(IpamError::AddressNotInPool { address })?;
        for _ in 0..DATASTORE_RETRIES {
            let block = match self.store.get::<Block>(&cidr).await {
                Ok(block) => block,
                Err(StoreError::NotFound { .. }) => {
                    match claim::claim_block(&self.store, &self.host, cidr, request.now).await? {
                        Claim::Claimed(block) => block,
                        Claim::Taken => continue,
                    }
                }
                Err(error) => return Err(error.into()),
            };
            if request.config.strict_affinity && block.value.host() != Some(self.host.as_str()) {
                return Err(IpamError::NotAffine {
                    address,
                    block: cidr,
                    owner: block.value.affinity.clone().unwrap_or_default(),
                });
            }
            let mut updated = block.value.clone();
            match updated.assign_address(address, Some(&request.handle_id), &request.attributes) {
                Ok(()) => {}
                Err(BlockError::AlreadyAllocated { .. }) => {
                    let (handle, pod) = owner_of(&block.value, address);
                    return Err(IpamError::AddressInUse {
                        address,
                        handle,
                        pod,
                    });
                }
                Err(error) => return Err(error.into()),
            }
            handles::increment(&self.store, &request.handle_id, cidr, 1).await?;
            updated.sequence_number += 1;
            match self.store.update(&updated, &block.revision).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {
                    handles::decrement(&self.store, &request.handle_id, cidr, Some(1)).await?;
                }
                Err(error) => {
                    handles::decrement(&self.store, &request.handle_id, cidr, Some(1)).await?;
                    return Err(error.into());
                }
            }
        }
        Err(IpamError::RetriesExhausted {
            what: format!("block {cidr}"),
        })
    }

    /// The host's confirmed affinities of one family (for callers that report or clean up).
    pub async fn affine_blocks(&self, family: IpFamily) -> Result<Vec<IpNet>, IpamError> {
        Ok(self
            .store
            .list_host_affinities(&self.host)
            .await?
            .into_iter()
            .filter(|a| {
                a.value.state == AffinityState::Confirmed
                    && IpFamily::of_net(&a.value.key.cidr) == family
            })
            .map(|a| a.value.key.cidr)
            .collect())
    }
}
