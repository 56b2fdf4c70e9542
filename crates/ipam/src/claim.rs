//! Block ownership transitions over the datastore (reference §4.3 steps 1–3, §4.4):
//! claiming a block (affinity pending → block created → affinity confirmed), checking an existing
//! affinity against its block, and reclaiming an empty block another host claimed long enough ago.
//! Every write is compare-and-swap; losing a race is a normal outcome, not an error.

use chrono::{DateTime, Duration, Utc};
use ipnet::IpNet;

use super::block::Block;
use super::handles::DATASTORE_RETRIES;
use super::records::{Affinity, AffinityKey, AffinityState, AffinityType};
use super::IpamError;
use crate::store::{IpamStore, IpamStoreExt};
use starling_model::store::{StoreError, Versioned};

/// Calico's `EmptyBlockMinReclaimAge`.
pub fn empty_block_min_reclaim_age() -> Duration {
    Duration::minutes(1)
}

pub fn host_affinity_key(host: &str, cidr: IpNet) -> AffinityKey {
    AffinityKey {
        host: host.to_string(),
        affinity_type: AffinityType::Host,
        cidr,
    }
}

/// The sequence number a new block starts at (Calico: the current time in Unix nanoseconds).
fn initial_sequence_number(now: DateTime<Utc>) -> u64 {
    now.timestamp_nanos_opt()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// Sets the affinity's state with CAS, creating it when absent.
async fn write_affinity<S: IpamStore>(
    store: &S,
    key: &AffinityKey,
    state: AffinityState,
) -> Result<(), IpamError> {
    for _ in 0..DATASTORE_RETRIES {
        match store.get::<Affinity>(key).await {
            Err(StoreError::NotFound { .. }) => {
                let affinity = Affinity {
                    key: key.clone(),
                    state,
                    deleted: false,
                };
                match store.create(&affinity).await {
                    Ok(_) => return Ok(()),
                    Err(StoreError::AlreadyExists { .. }) => continue,
                    Err(error) => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
            Ok(mut current) => {
                if current.value.state == state {
                    return Ok(());
                }
                current.value.state = state;
                match store.update(&current.value, &current.revision).await {
                    Ok(_) => return Ok(()),
                    Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => continue,
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    Err(IpamError::RetriesExhausted {
        what: key.to_string(),
    })
}

/// Deletes an affinity whatever its revision (retrying on conflict); absent is fine.
pub async fn delete_affinity<S: IpamStore>(store: &S, key: &AffinityKey) -> Result<(), IpamError> {
    for _ in 0..DATASTORE_RETRIES {
        let current = match store.get::<Affinity>(key).await {
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(error) => return Err(error.into()),
            Ok(current) => current,
        };
        match store.delete::<Affinity>(key, &current.revision).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(IpamError::RetriesExhausted {
        what: key.to_string(),
    })
}

/// Result of trying to claim a block CIDR.
pub enum Claim {
    Claimed(Versioned<Block>),
    /// Another host owns (or just took) the block.
    Taken,
}

/// Claims `cidr` for `host`: affinity pending → block created → affinity confirmed.
pub async fn claim_block<S: IpamStore>(
    store: &S,
    host: &str,
    cidr: IpNet,
    now: DateTime<Utc>,
) -> Result<Claim, IpamError> {
    let key = host_affinity_key(host, cidr);
    write_affinity(store, &key, AffinityState::Pending).await?;
    let affinity_string = format!("host:{host}");
    let block = Block::new(
        cidr,
        Some(affinity_string.clone()),
        Some(now),
        initial_sequence_number(now),
    )?;
    let claimed = match store.create(&block).await {
        Ok(revision) => Versioned {
            value: block,
            revision,
        },
        Err(StoreError::AlreadyExists { .. }) => match store.get::<Block>(&cidr).await {
            Ok(existing)
                if existing.value.affinity.as_deref() == Some(affinity_string.as_str()) =>
            {
                existing
            }
            Ok(_) | Err(StoreError::NotFound { .. }) => {
                delete_affinity(store, &key).await?;
                return Ok(Claim::Taken);
            }
            Err(error) => return Err(error.into()),
        },
        Err(error) => return Err(error.into()),
    };
    write_affinity(store, &key, AffinityState::Confirmed).await?;
    tracing::debug!(%cidr, host, "claimed block");
    Ok(Claim::Claimed(claimed))
}

/// Resolves one of the host's affinities to its block (Calico's `getBlockFromAffinity`):
/// creates a missing block, drops an affinity whose block belongs to someone else, confirms a
/// pending one. `None` = the affinity is not usable.
pub async fn block_for_affinity<S: IpamStore>(
    store: &S,
    affinity: &Versioned<Affinity>,
    now: DateTime<Utc>,
) -> Result<Option<Versioned<Block>>, IpamError> {
    let key = &affinity.value.key;
    if affinity.value.state == AffinityState::PendingDeletion {
        return Ok(None);
    }
    let block = match store.get::<Block>(&key.cidr).await {
        Ok(block) => block,
        Err(StoreError::NotFound { .. }) => {
            return match claim_block(store, &key.host, key.cidr, now).await? {
                Claim::Claimed(block) => Ok(Some(block)),
                Claim::Taken => Ok(None),
            };
        }
        Err(error) => return Err(error.into()),
    };
    if block.value.affinity.as_deref() != Some(affinity.value.block_affinity_string().as_str()) {
        tracing::info!(cidr = %key.cidr, host = %key.host, "removing stale affinity: block belongs elsewhere");
        delete_affinity(store, key).await?;
        return Ok(None);
    }
    if affinity.value.state != AffinityState::Confirmed {
        write_affinity(store, key, AffinityState::Confirmed).await?;
    }
    Ok(Some(block))
}

/// Whether `block` is an empty block of another host old enough to take over.
pub fn is_reclaimable(block: &Block, host: &str, now: DateTime<Utc>) -> bool {
    let Some(owner) = block.host() else {
        return false;
    };
    owner != host
        && block.is_empty()
        && block
            .affinity_claim_time
            .is_none_or(|claimed| now - claimed >= empty_block_min_reclaim_age())
}

/// Takes an empty block away from its owner: owner's affinity → pendingDeletion, block deleted at
/// the revision we saw (so a concurrent allocation wins), owner's affinity deleted.
/// Returns false when the block changed under us.
pub async fn reclaim_block<S: IpamStore>(
    store: &S,
    block: &Versioned<Block>,
) -> Result<bool, IpamError> {
    let Some(owner) = block.value.host() else {
        return Ok(false);
    };
    let owner_key = host_affinity_key(owner, block.value.cidr);
    match store.get::<Affinity>(&owner_key).await {
        Ok(mut affinity) => {
            affinity.value.state = AffinityState::PendingDeletion;
            match store.update(&affinity.value, &affinity.revision).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(StoreError::Conflict { .. }) => return Ok(false),
                Err(error) => return Err(error.into()),
            }
        }
        Err(StoreError::NotFound { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    match store
        .delete::<Block>(&block.value.cidr, &block.revision)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => {
            // Owner allocated meanwhile (or someone else reclaimed): restore a confirmed affinity
            // only if the block is still the owner's.
            if let Ok(current) = store.get::<Block>(&block.value.cidr).await {
                if current.value.host() == Some(owner) {
                    write_affinity(store, &owner_key, AffinityState::Confirmed).await?;
                }
            }
            return Ok(false);
        }
        Err(error) => return Err(error.into()),
    }
    delete_affinity(store, &owner_key).await?;
    tracing::info!(cidr = %block.value.cidr, previous_owner = owner, "reclaimed empty block");
    Ok(true)
}
