//! Short-lived exclusive locks by name, held across every node that shares
//! the backend (Redis), or within the process (the embedded defaults, one
//! node). A holder keeps its lock alive while it works: the lease is
//! renewed in the background and released when dropped; if the holder
//! dies, the lock expires after its time to live.

mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::redis::RedisLocks;

/// How often a waiting acquirer tries again.
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// A lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else held it for the whole wait.
    #[error("`{name}` is locked by another request")]
    Busy {
        /// The lock.
        name: String,
    },
    /// The backend failed.
    #[error("lock backend: {what}")]
    Backend {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where locks live: each operation is atomic in the backend, and only the
/// holder's token can renew or release a lock.
#[async_trait]
pub trait LockBackend: Send + Sync + 'static {
    /// Takes `name` for `ttl` unless someone holds it; true if taken.
    async fn try_acquire(&self, name: &str, token: &str, ttl: Duration) -> Result<bool, LockError>;
    /// Extends a lock still held with `token`; false if it was lost.
    async fn renew(&self, name: &str, token: &str, ttl: Duration) -> Result<bool, LockError>;
    /// Releases a lock held with `token` (nothing if it was lost).
    async fn release(&self, name: &str, token: &str) -> Result<(), LockError>;
}

/// Named locks with a time to live.
#[derive(Clone)]
pub struct Locks {
    backend: Arc<dyn LockBackend>,
    ttl: Duration,
}

impl Locks {
    /// Locks in `backend` that expire `ttl` after their last renewal.
    pub fn new(backend: Arc<dyn LockBackend>, ttl: Duration) -> Self {
        Self { backend, ttl }
    }

    /// Locks within this process.
    pub fn in_process(ttl: Duration) -> Self {
        Self::new(Arc::new(MemoryLocks::default()), ttl)
    }

    /// Takes `name`, waiting up to `wait` for its holder to let go.
    pub async fn acquire(&self, name: &str, wait: Duration) -> Result<Lease, LockError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let until = Instant::now() + wait;
        while !self.backend.try_acquire(name, &token, self.ttl).await? {
            if Instant::now() + RETRY_EVERY > until {
                return Err(LockError::Busy {
                    name: name.to_string(),
                });
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
        let held = Arc::new(AtomicBool::new(true));
        let renewer = tokio::spawn(renew(
            Arc::clone(&self.backend),
            name.to_string(),
            token.clone(),
            self.ttl,
            Arc::clone(&held),
        ));
        Ok(Lease {
            backend: Arc::clone(&self.backend),
            name: name.to_string(),
            token,
            held,
            renewer,
        })
    }
}

/// Renews a lease at a third of its time to live until it is lost.
async fn renew(
    backend: Arc<dyn LockBackend>,
    name: String,
    token: String,
    ttl: Duration,
    held: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match backend.renew(&name, &token, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(lock = %name, "lock lost: it expired before it was renewed");
                held.store(false, Ordering::Release);
                return;
            }
            // It may still be renewed in time.
            Err(e) => {
                tracing::warn!(lock = %name, error = %crate::text::chain(&e), "cannot renew a lock")
            }
        }
    }
}

/// A held lock; released when dropped.
pub struct Lease {
    backend: Arc<dyn LockBackend>,
    name: String,
    token: String,
    held: Arc<AtomicBool>,
    renewer: JoinHandle<()>,
}

impl Lease {
    /// False once the lock was lost (not renewed in time): the holder must
    /// not commit what it did under it.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        let (backend, name, token) = (
            Arc::clone(&self.backend),
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.token),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = backend.release(&name, &token).await {
                    tracing::warn!(lock = %name, error = %crate::text::chain(&e), "cannot release a lock; it expires on its own");
                }
            });
        }
    }
}

/// Locks of one process.
#[derive(Default)]
pub struct MemoryLocks(Mutex<HashMap<String, (String, Instant)>>);

impl MemoryLocks {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (String, Instant)>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[async_trait]
impl LockBackend for MemoryLocks {
    async fn try_acquire(&self, name: &str, token: &str, ttl: Duration) -> Result<bool, LockError> {
        let now = Instant::now();
        Ok(self.with(|locks| {
            locks.retain(|_, (_, expires)| *expires > now);
            if locks.contains_key(name) {
                return false;
            }
            locks.insert(name.to_string(), (token.to_string(), now + ttl));
            true
        }))
    }

    async fn renew(&self, name: &str, token: &str, ttl: Duration) -> Result<bool, LockError> {
        let now = Instant::now();
        Ok(self.with(|locks| match locks.get_mut(name) {
            Some((held, expires)) if held == token && *expires > now => {
                *expires = now + ttl;
                true
            }
            _ => false,
        }))
    }

    async fn release(&self, name: &str, token: &str) -> Result<(), LockError> {
        self.with(|locks| {
            if locks.get(name).is_some_and(|(held, _)| held == token) {
                locks.remove(name);
            }
        });
        Ok(())
    }
}
