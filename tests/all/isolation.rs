//! Cache namespaces and quotas: a plugin sees only its own keys and keeps
//! no more than its quota.

use std::time::Duration;

use airlock::budget::Budget;
use airlock::cache::{CacheError, CachePolicy, PutMode, Quota};
use airlock::runtime::InvokeError;

use crate::common::*;

const WITHIN: Duration = Duration::from_secs(1);

#[tokio::test]
async fn plugins_share_a_backend_but_not_keys() {
    let backend = memory_backend();
    let a = plugin_cache(&backend, "a", CachePolicy::default());
    let b = plugin_cache(&backend, "b", CachePolicy::default());
    a.put("k", "from a".into(), 60, PutMode::Overwrite, WITHIN)
        .await
        .unwrap();
    assert_eq!(b.get("k", WITHIN).await.unwrap(), None);
    assert!(
        !b.delete("k", WITHIN).await.unwrap(),
        "b cannot delete a's key"
    );
    assert_eq!(
        a.get("k", WITHIN).await.unwrap().as_deref(),
        Some(&b"from a"[..])
    );
}

#[tokio::test]
async fn a_plugin_key_cannot_reach_into_another_namespace() {
    // A key that looks like another plugin's full key stays inside the
    // caller's namespace.
    let backend = memory_backend();
    let a = plugin_cache(&backend, "a", CachePolicy::default());
    let b = plugin_cache(&backend, "b", CachePolicy::default());
    a.put("secret", "x".into(), 60, PutMode::Overwrite, WITHIN)
        .await
        .unwrap();
    assert_eq!(b.get("test:a:secret", WITHIN).await.unwrap(), None);
    assert_eq!(b.get("../a:secret", WITHIN).await.unwrap(), None);
}

#[tokio::test]
async fn the_same_component_under_two_names_has_two_caches() {
    // sha256 records each digest with `cache.add`; the second upload of the
    // same bytes is a duplicate only within one plugin's namespace.
    let backend = memory_backend();
    let a = load_as("sha256", "sha-a", roomy(), &backend, CachePolicy::default());
    let b = load_as("sha256", "sha-b", roomy(), &backend, CachePolicy::default());
    let bytes = fixture_bytes("picture.png");
    let mut second = upload("image/png");
    second.id = "upload-2".into();
    let first = verdict(invoke(&a, "image/png", bytes.clone()).await);
    assert_eq!(meta(&first, "duplicate-of"), None);
    let again = verdict(invoke_upload(&a, &second, bytes.clone()).await);
    assert_eq!(meta(&again, "duplicate-of"), Some("upload-1"));
    let other = verdict(invoke_upload(&b, &second, bytes).await);
    assert_eq!(meta(&other, "duplicate-of"), None);
}

#[tokio::test]
async fn add_is_set_if_absent() {
    let cache = plugin_cache(&memory_backend(), "p", CachePolicy::default());
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

#[tokio::test]
async fn keys_and_values_are_validated() {
    let policy = CachePolicy {
        max_value_bytes: 10,
        ..CachePolicy::default()
    };
    let cache = plugin_cache(&memory_backend(), "p", policy);
    let put = |k: String, v: &'static [u8]| {
        let cache = cache.clone();
        async move {
            cache
                .put(&k, v.into(), 60, PutMode::Overwrite, WITHIN)
                .await
        }
    };
    assert_eq!(put(String::new(), b"v").await, Err(CacheError::InvalidKey));
    assert_eq!(
        put("k".repeat(513), b"v").await,
        Err(CacheError::InvalidKey)
    );
    assert_eq!(
        put("new\nline".into(), b"v").await,
        Err(CacheError::InvalidKey)
    );
    assert_eq!(
        put("big".into(), b"01234567890").await,
        Err(CacheError::TooLarge)
    );
    assert_eq!(put("k".repeat(512), b"0123456789").await, Ok(true));
}

#[tokio::test]
async fn ttls_are_capped_by_the_operator() {
    let policy = CachePolicy {
        max_ttl_seconds: 1,
        ..CachePolicy::default()
    };
    let cache = plugin_cache(&memory_backend(), "p", policy);
    assert_eq!(cache.effective_ttl(0), Duration::from_secs(1));
    assert_eq!(cache.effective_ttl(3600), Duration::from_secs(1));
    cache
        .put("k", "v".into(), 3600, PutMode::Overwrite, WITHIN)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(
        cache.get("k", WITHIN).await.unwrap(),
        None,
        "expired at the capped TTL"
    );
}

#[tokio::test]
async fn key_quota_refuses_new_keys_but_allows_updates_and_frees_on_delete() {
    let policy = CachePolicy {
        quota: Quota {
            max_keys: 3,
            max_bytes: 1 << 20,
        },
        ..CachePolicy::default()
    };
    let cache = plugin_cache(&memory_backend(), "p", policy);
    for k in ["a", "b", "c"] {
        cache
            .put(k, "v".into(), 60, PutMode::Overwrite, WITHIN)
            .await
            .unwrap();
    }
    assert_eq!(
        cache
            .put("d", "v".into(), 60, PutMode::Overwrite, WITHIN)
            .await,
        Err(CacheError::QuotaExceeded)
    );
    assert_eq!(
        cache
            .put("a", "w".into(), 60, PutMode::Overwrite, WITHIN)
            .await,
        Ok(true)
    );
    assert!(cache.delete("b", WITHIN).await.unwrap());
    assert_eq!(
        cache
            .put("d", "v".into(), 60, PutMode::Overwrite, WITHIN)
            .await,
        Ok(true)
    );
}

#[tokio::test]
async fn byte_quota_counts_keys_and_values() {
    let policy = CachePolicy {
        quota: Quota {
            max_keys: 100,
            max_bytes: 20,
        },
        ..CachePolicy::default()
    };
    let cache = plugin_cache(&memory_backend(), "p", policy);
    // Full keys are "test:p:<key>" (8 + 1 bytes here) plus the value.
    cache
        .put("a", "12".into(), 60, PutMode::Overwrite, WITHIN)
        .await
        .unwrap();
    assert_eq!(
        cache
            .put("b", "12".into(), 60, PutMode::Overwrite, WITHIN)
            .await,
        Ok(true)
    );
    assert_eq!(
        cache
            .put("c", "1".into(), 60, PutMode::Overwrite, WITHIN)
            .await,
        Err(CacheError::QuotaExceeded)
    );
}

#[tokio::test]
async fn key_flood_plugin_meets_its_quota_not_the_whole_cache() {
    let backend = memory_backend();
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
    let flood = load_as("key-flood", "flood", budget, &backend, policy);
    match error(invoke(&flood, "text/plain", "x".into()).await) {
        InvokeError::Failed { message, .. } => {
            assert!(message.contains("after 50 keys"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Another plugin on the same backend still has its whole quota.
    let other = plugin_cache(&backend, "other", policy);
    for i in 0..50 {
        other
            .put(&format!("k{i}"), "v".into(), 60, PutMode::Overwrite, WITHIN)
            .await
            .unwrap();
    }
}
