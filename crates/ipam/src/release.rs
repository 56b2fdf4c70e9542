//! Release (reference §4.4): by address, by handle, affinity release, empty-block and handle
//! cleanup. Every operation is idempotent: releasing what is already free, or a handle or affinity
//! that no longer exists, succeeds and changes nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::block::Block;
use super::claim::{self, host_affinity_key};
use super::handles::{self, DATASTORE_RETRIES};
use super::records::{Affinity, AffinityState, Handle};
use super::IpamError;
use crate::store::{IpamStore, IpamStoreExt};
use starling_model::store::StoreError;

/// What a release did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseOutcome {
    /// Released addresses with the handle they belonged to.
    pub released: Vec<(IpAddr, Option<String>)>,
    /// Addresses that were not allocated (or in no block).
    pub not_allocated: Vec<IpAddr>,
}

/// Releases addresses wherever they are allocated.
pub async fn release_addresses<S: IpamStore>(
    store: &S,
    addresses: &[IpAddr],
) -> Result<ReleaseOutcome, IpamError> {
    let blocks: Vec<IpNet> = store
        .list::<Block>()
        .await?
        .into_iter()
        .map(|b| b.value.cidr)
        .collect();
    let mut by_block: BTreeMap<IpNet, Vec<IpAddr>> = BTreeMap::new();
    let mut outcome = ReleaseOutcome::default();
    for address in addresses {
        match blocks.iter().find(|cidr| cidr.contains(address)) {
            Some(cidr) => by_block.entry(*cidr).or_default().push(*address),
            None => outcome.not_allocated.push(*address),
        }
    }
    for (cidr, addresses) in by_block {
        let released = release_in_block(store, cidr, |block| block.release(&addresses)).await?;
        outcome.not_allocated.extend(
            addresses
                .iter()
                .filter(|a| !released.iter().any(|(r, _)| r == *a)),
        );
        outcome.released.extend(released);
    }
    Ok(outcome)
}

/// Releases every address of a handle and deletes the handle.
pub async fn release_by_handle<S: IpamStore>(
    store: &S,
    handle_id: &str,
) -> Result<Vec<IpAddr>, IpamError> {
    let handle = match store.get::<Handle>(&handle_id.to_string()).await {
        Ok(handle) => handle.value,
        Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let mut released = Vec::new();
    for cidr_text in handle.blocks.keys() {
        let Ok(cidr) = cidr_text.parse::<IpNet>() else {
            tracing::warn!(handle_id, block = %cidr_text, "handle names a block that is not a CIDR");
            continue;
        };
        let freed = release_in_block(store, cidr, |block| {
            let addresses = block.addresses_of_handle(handle_id);
            block.release(&addresses)
        })
        .await?;
        released.extend(freed.into_iter().map(|(address, _)| address));
        // Whatever the count said, this block no longer holds anything of the handle.
        handles::decrement(store, handle_id, cidr, None).await?;
    }
    Ok(released)
}

/// Releases a handle's addresses by scanning every block, for allocations whose handle record is
/// missing (a leak class `ipam check` reports). Reads the whole block list: an operator tool, not
/// the CNI path.
pub async fn release_by_handle_scan<S: IpamStore>(
    store: &S,
    handle_id: &str,
) -> Result<Vec<IpAddr>, IpamError> {
    let mut released = Vec::new();
    for block in store.list::<Block>().await? {
        if block.value.addresses_of_handle(handle_id).is_empty() {
            continue;
        }
        let freed = release_in_block(store, block.value.cidr, |b| {
            let addresses = b.addresses_of_handle(handle_id);
            b.release(&addresses)
        })
        .await?;
        released.extend(freed.into_iter().map(|(address, _)| address));
    }
    Ok(released)
}

/// Runs `release` on one block with CAS and retry, deletes the block if it became empty and has no
/// affinity, then decrements the handles of what was released (except when called by handle, where
/// the caller drops the whole entry; decrementing twice is harmless as counts saturate at zero).
async fn release_in_block<S, F>(
    store: &S,
    cidr: IpNet,
    mut release: F,
) -> Result<Vec<(IpAddr, Option<String>)>, IpamError>
where
    S: IpamStore,
    F: FnMut(&mut Block) -> Vec<(IpAddr, Option<String>)>,
{
    for _ in 0..DATASTORE_RETRIES {
        let current = match store.get::<Block>(&cidr).await {
            Ok(block) => block,
            Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut updated = current.value.clone();
        let released = release(&mut updated);
        if released.is_empty() {
            return Ok(released);
        }
        updated.sequence_number += 1;
        let result = if updated.is_empty() && updated.affinity.is_none() {
            store.delete::<Block>(&cidr, &current.revision).await
        } else {
            store.update(&updated, &current.revision).await.map(|_| ())
        };
        match result {
            Ok(()) => {
                let mut per_handle: BTreeMap<&str, u64> = BTreeMap::new();
                for (_, handle) in &released {
                    if let Some(handle) = handle {
                        *per_handle.entry(handle.as_str()).or_default() += 1;
                    }
                }
                for (handle, count) in per_handle {
                    handles::decrement(store, handle, cidr, Some(count)).await?;
                }
                return Ok(released);
            }
            Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(IpamError::RetriesExhausted {
        what: format!("block {cidr}"),
    })
}

/// Releases `host`'s affinity for `cidr`: pendingDeletion, then the block is deleted if empty or
/// made non-affine if not, then the affinity is deleted.
pub async fn release_affinity<S: IpamStore>(
    store: &S,
    host: &str,
    cidr: IpNet,
) -> Result<(), IpamError> {
    let key = host_affinity_key(host, cidr);
    match store.get::<Affinity>(&key).await {
        Ok(mut affinity) if affinity.value.state != AffinityState::PendingDeletion => {
            affinity.value.state = AffinityState::PendingDeletion;
            match store.update(&affinity.value, &affinity.revision).await {
                Ok(_) | Err(StoreError::NotFound { .. }) | Err(StoreError::Conflict { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    let affinity_string = format!("host:{host}");
    for _ in 0..DATASTORE_RETRIES {
        let block = match store.get::<Block>(&cidr).await {
            Ok(block) => block,
            Err(StoreError::NotFound { .. }) => break,
            Err(error) => return Err(error.into()),
        };
        if block.value.affinity.as_deref() != Some(affinity_string.as_str()) {
            break;
        }
        let result = if block.value.is_empty() {
            store.delete::<Block>(&cidr, &block.revision).await
        } else {
            let mut updated = block.value.clone();
            updated.affinity = None;
            updated.affinity_claim_time = None;
            updated.sequence_number += 1;
            store.update(&updated, &block.revision).await.map(|_| ())
        };
        match result {
            Ok(()) | Err(StoreError::NotFound { .. }) => break,
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    claim::delete_affinity(store, &key).await
}

/// Releases every affinity of a host (node removal).
pub async fn release_host_affinities<S: IpamStore>(
    store: &S,
    host: &str,
) -> Result<usize, IpamError> {
    let affinities: Vec<IpNet> = store
        .list::<Affinity>()
        .await?
        .into_iter()
        .filter(|a| a.value.key.host == host)
        .map(|a| a.value.key.cidr)
        .collect();
    for cidr in &affinities {
        release_affinity(store, host, *cidr).await?;
    }
    Ok(affinities.len())
}

/// Releases the host's affinities to empty blocks that lie in none of `usable_pools` (pools that
/// are disabled, deleted, or no longer select the host: §4.2 step 5). Non-empty blocks keep their
/// affinity until their addresses are released. Returns the released block CIDRs.
pub async fn release_unused_affinities<S: IpamStore>(
    store: &S,
    host: &str,
    usable_pools: &[starling_model::IpPool],
) -> Result<Vec<IpNet>, IpamError> {
    let mut released = Vec::new();
    for affinity in store.list::<Affinity>().await? {
        let cidr = affinity.value.key.cidr;
        if affinity.value.key.host != host || usable_pools.iter().any(|p| p.cidr.contains(&cidr)) {
            continue;
        }
        let empty = match store.get::<Block>(&cidr).await {
            Ok(block) => block.value.is_empty(),
            Err(StoreError::NotFound { .. }) => true,
            Err(error) => return Err(error.into()),
        };
        if empty {
            release_affinity(store, host, cidr).await?;
            released.push(cidr);
        }
    }
    Ok(released)
}

/// Deletes empty blocks that have no affinity; returns their CIDRs.
pub async fn delete_empty_unowned_blocks<S: IpamStore>(store: &S) -> Result<Vec<IpNet>, IpamError> {
    let mut deleted = Vec::new();
    for block in store.list::<Block>().await? {
        if block.value.is_empty() && block.value.affinity.is_none() {
            match store
                .delete::<Block>(&block.value.cidr, &block.revision)
                .await
            {
                Ok(()) => deleted.push(block.value.cidr),
                // Changed meanwhile: it is in use again or already gone.
                Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(deleted)
}

/// Rewrites handles to match the blocks: counts corrected, handles with no addresses deleted.
/// Only safe while no assignment is in flight (a handle is incremented before its block write).
pub async fn cleanup_handles<S: IpamStore>(store: &S) -> Result<usize, IpamError> {
    let mut actual: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for block in store.list::<Block>().await? {
        for (_, attribute) in block.value.allocated() {
            if let Some(handle) = &attribute.handle_id {
                *actual
                    .entry(handle.clone())
                    .or_default()
                    .entry(block.value.cidr.to_string())
                    .or_default() += 1;
            }
        }
    }
    let mut changed = 0;
    for handle in store.list::<Handle>().await? {
        let wanted = actual.remove(&handle.value.id).unwrap_or_default();
        if wanted == handle.value.blocks {
            continue;
        }
        let result = if wanted.is_empty() {
            store
                .delete::<Handle>(&handle.value.id, &handle.revision)
                .await
        } else {
            let mut updated = handle.value.clone();
            updated.blocks = wanted;
            store.update(&updated, &handle.revision).await.map(|_| ())
        };
        match result {
            Ok(()) => changed += 1,
            Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(changed)
}
