//! SHA-256 of resumable uploads computed as their bytes arrive, so that
//! finishing one need not read it all again. Kept in this process only: a
//! PATCH that lands on another node (or after a restart) finds no running
//! digest, and the upload is hashed from storage when it finishes.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use sha2::Sha256;

/// Running digests kept at most; past that an arbitrary one is dropped
/// (its upload is hashed from storage instead).
const CAPACITY: usize = 4096;

/// Running SHA-256 per upload id, with the offset it covers.
#[derive(Default)]
pub struct Digests(Mutex<HashMap<String, (u64, Sha256)>>);

impl Digests {
    /// The digest of the first `offset` bytes of `id`, if known.
    pub fn at(&self, id: &str, offset: u64) -> Option<Sha256> {
        if offset == 0 {
            return Some(Sha256::default());
        }
        let digests = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match digests.get(id) {
            Some((covered, digest)) if *covered == offset => Some(digest.clone()),
            _ => None,
        }
    }

    /// Records the digest of the first `offset` bytes of `id`.
    pub fn put(&self, id: &str, offset: u64, digest: Sha256) {
        let mut digests = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if digests.len() >= CAPACITY
            && !digests.contains_key(id)
            && let Some(victim) = digests.keys().next().cloned()
        {
            digests.remove(&victim);
        }
        digests.insert(id.to_string(), (offset, digest));
    }

    /// Forgets `id`.
    pub fn forget(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}
