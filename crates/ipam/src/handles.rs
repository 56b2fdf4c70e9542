//! Handle bookkeeping with compare-and-swap (reference §1.4, §4.3 step 4): a handle records how many
//! addresses it holds in each block. Increments happen before the block write, decrements after a
//! release or a failed block write. A handle whose map becomes empty is deleted.

use ipnet::IpNet;

use super::records::Handle;
use super::IpamError;
use crate::store::{IpamStore, IpamStoreExt};
use starling_model::store::StoreError;

/// Calico's `datastoreRetries`.
pub const DATASTORE_RETRIES: usize = 100;

/// Adds `count` addresses of `block` to the handle, creating it if needed.
pub async fn increment<S: IpamStore>(
    store: &S,
    handle_id: &str,
    block: IpNet,
    count: u64,
) -> Result<(), IpamError> {
    let block_key = block.to_string();
    // Most handles are new (one per pod), so try the create first and save a read.
    let mut fresh = Handle::new(handle_id);
    fresh.blocks.insert(block_key.clone(), count);
    match store.create(&fresh).await {
        Ok(_) => return Ok(()),
        Err(StoreError::AlreadyExists { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    for _ in 0..DATASTORE_RETRIES {
        match store.get::<Handle>(&handle_id.to_string()).await {
            Err(StoreError::NotFound { .. }) => {
                let mut handle = Handle::new(handle_id);
                handle.blocks.insert(block_key.clone(), count);
                match store.create(&handle).await {
                    Ok(_) => return Ok(()),
                    Err(StoreError::AlreadyExists { .. }) => continue,
                    Err(error) => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
            Ok(mut current) => {
                *current.value.blocks.entry(block_key.clone()).or_default() += count;
                match store.update(&current.value, &current.revision).await {
                    Ok(_) => return Ok(()),
                    Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound { .. }) => continue,
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    Err(IpamError::RetriesExhausted {
        what: format!("handle {handle_id}"),
    })
}

/// Removes `count` addresses of `block` from the handle (all of them when `count` is None);
/// deletes the handle when nothing is left. A missing handle is fine (idempotent release).
pub async fn decrement<S: IpamStore>(
    store: &S,
    handle_id: &str,
    block: IpNet,
    count: Option<u64>,
) -> Result<(), IpamError> {
    let block_key = block.to_string();
    for _ in 0..DATASTORE_RETRIES {
        let mut current = match store.get::<Handle>(&handle_id.to_string()).await {
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(error) => return Err(error.into()),
            Ok(current) => current,
        };
        let held = current.value.blocks.get(&block_key).copied().unwrap_or(0);
        let remaining = count.map_or(0, |c| held.saturating_sub(c));
        if remaining == 0 {
            current.value.blocks.remove(&block_key);
        } else {
            current.value.blocks.insert(block_key.clone(), remaining);
        }
        let result = if current.value.blocks.is_empty() {
            store
                .delete::<Handle>(&handle_id.to_string(), &current.revision)
                .await
        } else {
            store
                .update(&current.value, &current.revision)
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(IpamError::RetriesExhausted {
        what: format!("handle {handle_id}"),
    })
}
