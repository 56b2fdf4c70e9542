//! The vocabulary of a compare-and-swap datastore (reference §3 "Concurrency"), shared by the
//! pure parts that decide what to write (IPAM) and the edge that writes it (etcd, Kubernetes).
//!
//! Revisions are opaque (etcd ModRevision, Kubernetes resourceVersion). Errors distinguish
//! NotFound / AlreadyExists / Conflict / Unavailable / Invalid and always carry the key.

/// An opaque object revision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub String);

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value with the revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: Revision,
}

impl<T> Versioned<T> {
    /// The same revision around a converted value.
    pub fn map<U>(self, convert: impl FnOnce(T) -> U) -> Versioned<U> {
        Versioned {
            value: convert(self.value),
            revision: self.revision,
        }
    }
}

/// Why a datastore operation failed; `key` names the object (etcd key or `kind/name`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{key}: not found")]
    NotFound { key: String },
    #[error("{key}: already exists")]
    AlreadyExists { key: String },
    #[error("{key}: modified concurrently (revision conflict)")]
    Conflict { key: String },
    #[error("{key}: datastore unavailable: {reason}")]
    Unavailable { key: String, reason: String },
    #[error("{key}: invalid stored data: {reason}")]
    Invalid { key: String, reason: String },
}

impl StoreError {
    pub fn key(&self) -> &str {
        match self {
            StoreError::NotFound { key }
            | StoreError::AlreadyExists { key }
            | StoreError::Conflict { key }
            | StoreError::Unavailable { key, .. }
            | StoreError::Invalid { key, .. } => key,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}
