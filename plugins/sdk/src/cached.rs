//! Cache helpers on top of `airlock:plugin/cache`: typed values, and
//! single-flight rebuilding of one entry.

use crate::cache;

/// Reads `key` as JSON into `T`.
///
/// A value that does not decode as `T` (written by an older version of the
/// plugin, say) is a miss, `Ok(None)`: the caller recomputes and overwrites
/// it, as it would for an absent key.
///
/// ```no_run
/// # #[cfg(feature = "processor")] fn f() -> Result<(), airlock_plugin_sdk::cache::Error> {
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Seen { count: u32 }
/// let seen: Option<Seen> = airlock_plugin_sdk::get_json("seen:alice")?;
/// let count = seen.map_or(0, |s| s.count) + 1;
/// airlock_plugin_sdk::set_json("seen:alice", &Seen { count }, 3600)?;
/// # Ok(()) }
/// ```
#[cfg(feature = "json")]
pub fn get_json<T: serde::de::DeserializeOwned>(key: &str) -> Result<Option<T>, cache::Error> {
    Ok(cache::get(key)?.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// Stores `value` as JSON under `key` for `ttl_seconds` (see `cache.set`).
///
/// A value serde_json cannot encode (a map with non-string keys) is
/// refused as `too-large`, before any host call: nothing of it could be
/// stored.
#[cfg(feature = "json")]
pub fn set_json<T: serde::Serialize + ?Sized>(
    key: &str,
    value: &T,
    ttl_seconds: u32,
) -> Result<(), cache::Error> {
    let bytes = serde_json::to_vec(value).map_err(|_| cache::Error::TooLarge)?;
    cache::set(key, &bytes, ttl_seconds)
}

/// Returns the value under `key`, computing and storing it on a miss, with
/// at most one caller computing it at a time: the stampede-safe way to
/// rebuild one entry (the opposite of flushing a cache and rebuilding
/// everything on the next request).
///
/// Shorthand for [`SingleFlight::new(ttl_seconds).run(key, compute)`](SingleFlight::run).
///
/// ```no_run
/// # #[cfg(feature = "processor")] fn f(expensive: fn() -> Vec<u8>) -> Result<(), airlock_plugin_sdk::PluginError> {
/// let table = airlock_plugin_sdk::get_or_compute("lookup-table:v1", 3600, || {
///     Ok::<_, airlock_plugin_sdk::PluginError>(expensive())
/// })?;
/// # Ok(()) }
/// ```
pub fn get_or_compute<E>(
    key: &str,
    ttl_seconds: u32,
    compute: impl FnOnce() -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    SingleFlight::new(ttl_seconds).run(key, compute)
}

/// Single-flight settings for [`get_or_compute`].
///
/// On a miss, the caller that stores a short lock key with `cache.add`
/// computes the value, stores it and removes the lock; the others wait for
/// it with `cache.wait` (at most `wait_ms`), then compute and store it
/// themselves if it did not come (the winner failed or is slow). A cache
/// that is down is a miss, never an error: the value is computed and
/// returned, as a plugin must work without its cache.
///
/// Cache calls per run: 1 on a hit; 5 for the caller that computes (get,
/// add, get, set, delete); for a waiting caller 2 plus the look-ups of its
/// wait (at most 16), plus a set if it ends up computing.
///
/// ```no_run
/// # #[cfg(feature = "processor")] fn f(build: fn() -> Vec<u8>) -> Result<(), airlock_plugin_sdk::PluginError> {
/// use airlock_plugin_sdk::{PluginError, SingleFlight};
/// let value = SingleFlight { wait_ms: 500, ..SingleFlight::new(600) }
///     .run("model:v3", || Ok::<_, PluginError>(build()))?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SingleFlight {
    /// How long the computed value is kept, in seconds.
    pub ttl_seconds: u32,
    /// How long the lock key lives, in seconds: how long the others trust
    /// a computing caller before one of them computes too.
    pub lock_seconds: u32,
    /// How long a caller that lost the lock waits for the value, in ms.
    pub wait_ms: u32,
}

impl SingleFlight {
    /// Keeps values `ttl_seconds`; a 10 s lock and a 2 s wait.
    pub fn new(ttl_seconds: u32) -> Self {
        SingleFlight {
            ttl_seconds,
            lock_seconds: 10,
            wait_ms: 2_000,
        }
    }

    /// The value under `key`, computed by `compute` on a miss (see the type).
    pub fn run<E>(
        &self,
        key: &str,
        compute: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, E> {
        match cache::get(key) {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            // Down, or a key the host refuses: nothing to share with.
            Err(_) => return compute(),
        }
        let lock = format!("{key}#lock");
        match cache::add(&lock, b"1", self.lock_seconds) {
            Ok(true) => {
                // Another caller may have stored the value and dropped its
                // lock between our `get` and `add`: look once more.
                if let Ok(Some(value)) = cache::get(key) {
                    let _ = cache::delete(&lock);
                    return Ok(value);
                }
                let computed = compute();
                if let Ok(value) = &computed {
                    // Best effort: a value that cannot be stored (quota,
                    // size) is still this caller's answer.
                    let _ = cache::set(key, value, self.ttl_seconds);
                }
                let _ = cache::delete(&lock);
                computed
            }
            Ok(false) => match cache::wait(key, self.wait_ms) {
                Ok(Some(value)) => Ok(value),
                _ => self.compute_and_set(key, compute),
            },
            // The lock key is too long or the cache went away: no
            // coordination, but the value is still shared.
            Err(_) => self.compute_and_set(key, compute),
        }
    }

    fn compute_and_set<E>(
        &self,
        key: &str,
        compute: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, E> {
        let value = compute()?;
        // Best effort, as above.
        let _ = cache::set(key, &value, self.ttl_seconds);
        Ok(value)
    }
}
