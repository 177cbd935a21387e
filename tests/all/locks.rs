//! Named locks: one holder at a time, in process and across processes
//! sharing Redis; renewed while held; free again once released, or once
//! the time to live of a holder that died has passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::cache::RedisBackend;
use airlock::lock::{LockBackend, LockError, Locks, MemoryLocks, RedisLocks};

use crate::common::*;
use crate::harness::redis_url;

/// Two views of the same Redis locks, as two nodes would have.
async fn redis_pair(prefix: &str) -> [Arc<dyn LockBackend>; 2] {
    let mut pair = Vec::new();
    for _ in 0..2 {
        let redis = RedisBackend::connect(&redis_url(), Duration::from_secs(2))
            .await
            .unwrap();
        pair.push(Arc::new(RedisLocks::new(redis.connection(), prefix)) as Arc<dyn LockBackend>);
    }
    [Arc::clone(&pair[0]), Arc::clone(&pair[1])]
}

fn prefix() -> String {
    format!("locktest-{}:", uuid::Uuid::new_v4().simple())
}

async fn one_holder_at_a_time(a: Arc<dyn LockBackend>, b: Arc<dyn LockBackend>) {
    let ttl = Duration::from_millis(1200);
    let (a, b) = (Locks::new(a, ttl), Locks::new(b, ttl));
    let lease = a.acquire("upload-1", Duration::ZERO).await.unwrap();
    let busy = b.acquire("upload-1", Duration::from_millis(100)).await;
    assert!(matches!(busy, Err(LockError::Busy { .. })));
    // Another name is another lock.
    drop(b.acquire("upload-2", Duration::ZERO).await.unwrap());
    // Held past its time to live: renewed, so still nobody else's.
    let until = Instant::now() + 3 * ttl;
    while Instant::now() < until {
        assert!(
            b.acquire("upload-1", Duration::from_millis(50))
                .await
                .is_err(),
            "a held lock was taken"
        );
    }
    assert!(lease.held());
    // Released on drop; a waiter gets it.
    let waiter = tokio::spawn(async move { b.acquire("upload-1", Duration::from_secs(5)).await });
    drop(lease);
    assert!(waiter.await.unwrap().is_ok());
}

async fn a_dead_holders_lock_expires(backend: Arc<dyn LockBackend>) {
    // A holder that took it and died: no renewal, no release.
    assert!(
        backend
            .try_acquire("dead", "token-of-the-dead", Duration::from_millis(500))
            .await
            .unwrap()
    );
    assert!(
        !backend
            .renew("dead", "someone-else", Duration::from_secs(5))
            .await
            .unwrap()
    );
    backend.release("dead", "someone-else").await.unwrap();
    let locks = Locks::new(Arc::clone(&backend), Duration::from_secs(5));
    assert!(locks.acquire("dead", Duration::ZERO).await.is_err());
    let freed = eventually(Duration::from_secs(5), || async {
        locks.acquire("dead", Duration::ZERO).await.ok()
    })
    .await;
    assert!(freed.is_some(), "an expired lock stayed taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_one_holder_at_a_time() {
    let backend: Arc<dyn LockBackend> = Arc::new(MemoryLocks::default());
    one_holder_at_a_time(Arc::clone(&backend), backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_one_holder_at_a_time_across_connections() {
    let [a, b] = redis_pair(&prefix()).await;
    one_holder_at_a_time(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_a_dead_holders_lock_expires() {
    a_dead_holders_lock_expires(Arc::new(MemoryLocks::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_dead_holders_lock_expires() {
    let [a, _] = redis_pair(&prefix()).await;
    a_dead_holders_lock_expires(a).await;
}
