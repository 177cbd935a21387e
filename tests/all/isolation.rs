//! Cache namespaces and quotas: a plugin sees only its own keys and keeps
//! no more than its quota — the same on the in-memory backend and on real
//! Redis.

use std::sync::Arc;
use std::time::Duration;

use airlock::budget::Budget;
use airlock::cache::{
    CacheBackend, CacheError, CachePolicy, PluginCache, PutMode, Quota, RedisBackend,
};
use airlock::runtime::InvokeError;

use crate::common::*;
use crate::harness::redis_url;

const WITHIN: Duration = Duration::from_secs(1);

/// A backend and a key prefix no other test uses.
pub struct Backend {
    backend: Arc<dyn CacheBackend>,
    prefix: String,
}

impl Backend {
    fn cache(&self, plugin: &str, policy: CachePolicy) -> PluginCache {
        PluginCache::new(
            Arc::clone(&self.backend),
            &self.prefix,
            plugin,
            policy,
            Duration::from_millis(500),
        )
    }

    /// Bytes a key of `plugin` takes in the quota (the full key is counted).
    fn key_bytes(&self, plugin: &str, key: &str) -> u64 {
        (self.prefix.len() + 1 + plugin.len() + 1 + key.len()) as u64
    }
}

fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

async fn memory() -> Backend {
    Backend {
        backend: memory_backend(),
        prefix: unique_prefix(),
    }
}

async fn redis() -> Backend {
    let backend = RedisBackend::connect(&redis_url(), Duration::from_secs(2))
        .await
        .expect("redis on 127.0.0.1");
    Backend {
        backend: Arc::new(backend),
        prefix: unique_prefix(),
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $name() { super::$name(super::memory().await).await })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $name() { super::$name(super::redis().await).await })*
        }
    };
}

on_both_backends!(
    plugins_share_a_backend_but_not_keys,
    a_plugin_key_cannot_reach_into_another_namespace,
    the_same_component_under_two_names_has_two_caches,
    add_is_set_if_absent,
    ttls_are_capped_by_the_operator,
    key_quota_refuses_new_keys_but_allows_updates_and_frees_on_delete,
    byte_quota_counts_keys_and_values,
    key_flood_plugin_meets_its_quota_not_the_whole_cache,
);

async fn put(cache: &PluginCache, key: &str, value: &'static [u8]) -> Result<bool, CacheError> {
    cache
        .put(key, value.into(), 60, PutMode::Overwrite, WITHIN)
        .await
}

async fn plugins_share_a_backend_but_not_keys(b: Backend) {
    let (a, other) = (
        b.cache("a", CachePolicy::default()),
        b.cache("b", CachePolicy::default()),
    );
    put(&a, "k", b"from a").await.unwrap();
    assert_eq!(other.get("k", WITHIN).await.unwrap(), None);
    assert!(
        !other.delete("k", WITHIN).await.unwrap(),
        "b cannot delete a's key"
    );
    assert_eq!(
        a.get("k", WITHIN).await.unwrap().as_deref(),
        Some(&b"from a"[..])
    );
}

async fn a_plugin_key_cannot_reach_into_another_namespace(b: Backend) {
    // A key that looks like another plugin's full key stays inside the
    // caller's namespace.
    let (a, other) = (
        b.cache("a", CachePolicy::default()),
        b.cache("b", CachePolicy::default()),
    );
    put(&a, "secret", b"x").await.unwrap();
    let full = format!("{}:a:secret", b.prefix);
    assert_eq!(other.get(&full, WITHIN).await.unwrap(), None);
    assert_eq!(other.get("../a:secret", WITHIN).await.unwrap(), None);
}

async fn the_same_component_under_two_names_has_two_caches(b: Backend) {
    // sha256 records each digest with `cache.add`; the second upload of the
    // same bytes is a duplicate only within one plugin's namespace.
    let a = load_with_cache(
        "sha256",
        "sha-a",
        roomy(),
        b.cache("sha-a", CachePolicy::default()),
    );
    let other = load_with_cache(
        "sha256",
        "sha-b",
        roomy(),
        b.cache("sha-b", CachePolicy::default()),
    );
    let bytes = fixture_bytes("picture.png");
    let mut second = upload("image/png");
    second.id = "upload-2".into();
    let first = verdict(invoke(&a, "image/png", bytes.clone()).await);
    assert_eq!(meta(&first, "duplicate-of"), None);
    let again = verdict(invoke_upload(&a, &second, bytes.clone()).await);
    assert_eq!(meta(&again, "duplicate-of"), Some("upload-1"));
    let elsewhere = verdict(invoke_upload(&other, &second, bytes).await);
    assert_eq!(meta(&elsewhere, "duplicate-of"), None);
}

async fn add_is_set_if_absent(b: Backend) {
    let cache = b.cache("p", CachePolicy::default());
    assert!(
        cache
            .put("lock", "1".into(), 60, PutMode::IfAbsent, WITHIN)
            .await
            .unwrap()
    );
    assert!(
        !cache
            .put("lock", "2".into(), 60, PutMode::IfAbsent, WITHIN)
            .await
            .unwrap()
    );
    assert_eq!(
        cache.get("lock", WITHIN).await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
}

async fn ttls_are_capped_by_the_operator(b: Backend) {
    let cache = b.cache(
        "p",
        CachePolicy {
            max_ttl_seconds: 1,
            ..CachePolicy::default()
        },
    );
    assert_eq!(cache.effective_ttl(0), Duration::from_secs(1));
    assert_eq!(cache.effective_ttl(3600), Duration::from_secs(1));
    cache
        .put("k", "v".into(), 3600, PutMode::Overwrite, WITHIN)
        .await
        .unwrap();
    // Gone within seconds: at the capped TTL, not after the hour asked for.
    let expired = eventually(Duration::from_secs(10), || async {
        cache
            .get("k", WITHIN)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(expired.is_some(), "not expired at the capped TTL");
}

async fn key_quota_refuses_new_keys_but_allows_updates_and_frees_on_delete(b: Backend) {
    let policy = CachePolicy {
        quota: Quota {
            max_keys: 3,
            max_bytes: 1 << 20,
        },
        ..CachePolicy::default()
    };
    let cache = b.cache("p", policy);
    for k in ["a", "b", "c"] {
        put(&cache, k, b"v").await.unwrap();
    }
    assert_eq!(put(&cache, "d", b"v").await, Err(CacheError::QuotaExceeded));
    assert_eq!(
        put(&cache, "a", b"w").await,
        Ok(true),
        "updating a key is not a new key"
    );
    assert!(cache.delete("b", WITHIN).await.unwrap());
    assert_eq!(put(&cache, "d", b"v").await, Ok(true));
    // Another plugin's quota is its own.
    assert_eq!(put(&b.cache("q", policy), "d", b"v").await, Ok(true));
}

async fn byte_quota_counts_keys_and_values(b: Backend) {
    // Room for exactly two entries of a one-letter key and a 2-byte value.
    let entry = b.key_bytes("p", "a") + 2;
    let policy = CachePolicy {
        quota: Quota {
            max_keys: 100,
            max_bytes: 2 * entry,
        },
        ..CachePolicy::default()
    };
    let cache = b.cache("p", policy);
    assert_eq!(put(&cache, "a", b"12").await, Ok(true));
    assert_eq!(put(&cache, "b", b"12").await, Ok(true));
    assert_eq!(put(&cache, "c", b"1").await, Err(CacheError::QuotaExceeded));
    assert_eq!(
        put(&cache, "a", b"1").await,
        Ok(true),
        "shrinking is always allowed"
    );
    assert_eq!(
        put(&cache, "b", b"123").await,
        Ok(true),
        "the freed byte is usable"
    );
    assert_eq!(
        put(&cache, "b", b"1234").await,
        Err(CacheError::QuotaExceeded),
        "growing past it is not (one byte is free, two are asked)"
    );
}

async fn key_flood_plugin_meets_its_quota_not_the_whole_cache(b: Backend) {
    let policy = CachePolicy {
        quota: Quota {
            max_keys: 50,
            max_bytes: 1 << 20,
        },
        ..CachePolicy::default()
    };
    let budget = Budget {
        cache_calls: 10_000,
        ..roomy()
    };
    let flood = load_with_cache("key-flood", "flood", budget, b.cache("flood", policy));
    match error(invoke(&flood, "text/plain", "x".into()).await) {
        InvokeError::Failed { message, .. } => {
            assert!(message.contains("after 50 keys"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Another plugin on the same backend still has its whole quota.
    let other = b.cache("other", policy);
    for i in 0..50 {
        other
            .put(&format!("k{i}"), "v".into(), 60, PutMode::Overwrite, WITHIN)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn keys_and_values_are_validated() {
    let b = memory().await;
    let cache = b.cache(
        "p",
        CachePolicy {
            max_value_bytes: 10,
            ..CachePolicy::default()
        },
    );
    let put_owned = |k: String, v: &'static [u8]| {
        let cache = cache.clone();
        async move {
            cache
                .put(&k, v.into(), 60, PutMode::Overwrite, WITHIN)
                .await
        }
    };
    assert_eq!(
        put_owned(String::new(), b"v").await,
        Err(CacheError::InvalidKey)
    );
    assert_eq!(
        put_owned("k".repeat(513), b"v").await,
        Err(CacheError::InvalidKey)
    );
    assert_eq!(
        put_owned("new\nline".into(), b"v").await,
        Err(CacheError::InvalidKey)
    );
    assert_eq!(
        put_owned("big".into(), b"01234567890").await,
        Err(CacheError::TooLarge)
    );
    assert_eq!(put_owned("k".repeat(512), b"0123456789").await, Ok(true));
}

#[tokio::test]
async fn redis_expired_keys_leave_the_quota() {
    // Redis forgets keys on its own; the accounting must follow, or a plugin
    // would be locked out by keys that no longer exist.
    let b = redis().await;
    let policy = CachePolicy {
        quota: Quota {
            max_keys: 2,
            max_bytes: 1 << 20,
        },
        max_ttl_seconds: 1,
        ..CachePolicy::default()
    };
    let cache = b.cache("p", policy);
    put(&cache, "a", b"v").await.unwrap();
    put(&cache, "b", b"v").await.unwrap();
    assert_eq!(put(&cache, "c", b"v").await, Err(CacheError::QuotaExceeded));
    // Once a and b expire (1 s), c and d fit.
    let freed = eventually(Duration::from_secs(10), || async {
        match put(&cache, "c", b"v").await {
            Err(CacheError::QuotaExceeded) => None,
            other => Some(other),
        }
    })
    .await;
    assert_eq!(freed, Some(Ok(true)), "expired keys still count");
    assert_eq!(put(&cache, "d", b"v").await, Ok(true));
}
