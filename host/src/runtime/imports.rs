//! The host side of the WIT imports. `types` (the content resource) comes
//! from the generated bindings; `cache` and `log` take their strings and
//! lists as lazy views of guest memory, so every call is charged and every
//! length checked before the host copies a byte.

use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{HasSelf, Lift, Linker, LinkerInstance, WasmList, WasmStr};
use wasmtime::{AsContext, AsContextMut, StoreContextMut};

use super::host::{CacheOps, HostState};
use super::outcome::{CrashKind, GuestFault};
use crate::bindings::{cache, log, types};
use crate::budget::Limit;
use crate::cache::{CacheError, MAX_BATCH, MAX_KEY_BYTES, PluginCache, PutMode};
use crate::text::one_line;

/// Log lines longer than this are cut.
const MAX_LOG_LINE: usize = 4 << 10;
// The current version: components built against an earlier one the host
// runs (`load::PLUGIN_VERSIONS`) resolve to these by semver.
const CACHE_INTERFACE: &str = "airlock:plugin/cache@0.1.2";
const LOG_INTERFACE: &str = "airlock:plugin/log@0.1.2";

/// Most look-ups one `cache.wait` makes.
const WAIT_LOOKUPS: u32 = 16;
/// Longest pause between two look-ups of one `cache.wait`.
const WAIT_MAX_PAUSE: Duration = Duration::from_millis(100);

/// What a cache import answers the guest.
pub(super) type Answer<T> = (Result<T, cache::Error>,);
type Ctx<'a> = StoreContextMut<'a, HostState>;

impl From<CacheError> for cache::Error {
    fn from(err: CacheError) -> Self {
        match err {
            CacheError::QuotaExceeded => cache::Error::QuotaExceeded,
            CacheError::TooLarge => cache::Error::TooLarge,
            CacheError::InvalidKey => cache::Error::InvalidKey,
            CacheError::Unavailable => cache::Error::Unavailable,
        }
    }
}

/// Provides exactly the `airlock:plugin` imports.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    types::add_to_linker::<_, HasSelf<HostState>>(linker, |state| state)?;
    add_cache(&mut linker.instance(CACHE_INTERFACE)?)?;
    add_log(&mut linker.instance(LOG_INTERFACE)?)?;
    Ok(())
}

fn add_cache(cache: &mut LinkerInstance<'_, HostState>) -> wasmtime::Result<()> {
    cache.func_wrap_async("get", |store: Ctx<'_>, (key,): (WasmStr,)| {
        Box::new(async move {
            one_key(
                store,
                |o| &mut o.get,
                &key,
                async |cache, key, left| cache.get(key, left).await.map(|v| v.map(Vec::from)),
            )
            .await
        })
    })?;
    cache.func_wrap_async(
        "wait",
        |store: Ctx<'_>, (key, timeout_ms): (WasmStr, u32)| {
            Box::new(async move { wait(store, &key, timeout_ms).await })
        },
    )?;
    cache.func_wrap_async("delete", |store: Ctx<'_>, (key,): (WasmStr,)| {
        Box::new(async move {
            one_key(
                store,
                |o| &mut o.delete,
                &key,
                async |cache, key, left| cache.delete(key, left).await,
            )
            .await
        })
    })?;
    cache.func_wrap_async(
        "set",
        |store: Ctx<'_>, (key, value, ttl): (WasmStr, WasmList<u8>, u32)| {
            Box::new(async move {
                let put = put(store, |o| &mut o.set, &key, &value, ttl, PutMode::Overwrite);
                let (answer,) = put.await?;
                Ok((answer.map(drop),))
            })
        },
    )?;
    cache.func_wrap_async(
        "add",
        |store: Ctx<'_>, (key, value, ttl): (WasmStr, WasmList<u8>, u32)| {
            Box::new(async move {
                put(store, |o| &mut o.add, &key, &value, ttl, PutMode::IfAbsent).await
            })
        },
    )?;
    cache.func_wrap_async(
        "get-many",
        |mut store: Ctx<'_>, (keys,): (WasmList<WasmStr>,)| {
            Box::new(async move {
                // Charged per key asked for, before the batch is refused.
                store.data_mut().charge_calls(|o| &mut o.get, keys.len())?;
                if keys.len() > MAX_BATCH {
                    return Ok((Err(cache::Error::TooLarge),));
                }
                let mut owned = Vec::with_capacity(keys.len());
                for i in 0..keys.len() {
                    let key = guest_item(&mut store, &keys, i)?;
                    match guest_key(&mut store, &key)? {
                        Some(key) => owned.push(key),
                        None => return Ok((Err(cache::Error::InvalidKey),)),
                    }
                }
                let state = store.data_mut();
                let deadline = Instant::now() + state.time_left()?;
                let mut values = Vec::with_capacity(owned.len());
                for key in &owned {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match state.cache.get(key, left).await {
                        Ok(value) => values.push(value.map(Vec::from)),
                        Err(e) => return state.settle(Err(e)),
                    }
                }
                Ok((Ok(values),))
            })
        },
    )?;
    cache.func_wrap_async(
        "set-many",
        |mut store: Ctx<'_>, (entries, ttl): (WasmList<(WasmStr, WasmList<u8>)>, u32)| {
            Box::new(async move {
                store
                    .data_mut()
                    .charge_calls(|o| &mut o.set, entries.len())?;
                if entries.len() > MAX_BATCH {
                    return Ok((Err(cache::Error::TooLarge),));
                }
                let mut owned = Vec::with_capacity(entries.len());
                for i in 0..entries.len() {
                    let (key, value) = guest_item(&mut store, &entries, i)?;
                    let Some(key) = guest_key(&mut store, &key)? else {
                        return Ok((Err(cache::Error::InvalidKey),));
                    };
                    let Some(value) = guest_value(&store, &value) else {
                        return Ok((Err(cache::Error::TooLarge),));
                    };
                    owned.push((key, value));
                }
                let state = store.data_mut();
                let bytes = owned.iter().map(|(k, v)| written(k, v)).sum();
                state.charge(Limit::CacheWriteBytes, bytes)?;
                let deadline = Instant::now() + state.time_left()?;
                for (key, value) in owned {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let result = state
                        .cache
                        .put(&key, value, ttl, PutMode::Overwrite, left)
                        .await;
                    if let Err(e) = result {
                        return state.settle(Err(e));
                    }
                }
                Ok((Ok(()),))
            })
        },
    )?;
    Ok(())
}

/// `get` and `delete`: charge the call, read the key, run `op` within what
/// is left of the deadline.
async fn one_key<T>(
    mut store: Ctx<'_>,
    kind: fn(&mut CacheOps) -> &mut u64,
    key: &WasmStr,
    op: impl AsyncFnOnce(&PluginCache, &str, Duration) -> Result<T, CacheError>,
) -> wasmtime::Result<Answer<T>> {
    store.data_mut().charge_calls(kind, 1)?;
    let Some(key) = guest_key(&mut store, key)? else {
        return Ok((Err(cache::Error::InvalidKey),));
    };
    let state = store.data_mut();
    let left = state.time_left()?;
    let result = op(&state.cache, &key, left).await;
    state.settle(result)
}

/// `wait`: up to [`WAIT_LOOKUPS`] look-ups of `key`, each charged as a
/// `get`, spaced 1 ms doubling to [`WAIT_MAX_PAUSE`], until the key is there
/// or `timeout_ms` (at most half the invocation's time left) has passed.
/// Bounded in look-ups and time whatever the guest asks for.
async fn wait(
    mut store: Ctx<'_>,
    key: &WasmStr,
    timeout_ms: u32,
) -> wasmtime::Result<Answer<Option<Vec<u8>>>> {
    store.data_mut().charge_calls(|o| &mut o.get, 1)?;
    let Some(key) = guest_key(&mut store, key)? else {
        return Ok((Err(cache::Error::InvalidKey),));
    };
    let state = store.data_mut();
    let asked = Duration::from_millis(u64::from(timeout_ms));
    // At most half the time left, so that a caller whose wait came to
    // nothing still has time to compute the value itself.
    let until = Instant::now() + asked.min(state.time_left()? / 2);
    let mut pause = Duration::from_millis(1);
    for lookup in 1..=WAIT_LOOKUPS {
        if lookup > 1 {
            state.charge_calls(|o| &mut o.get, 1)?;
        }
        let left = state.time_left()?;
        match state.cache.get(&key, left).await {
            Ok(Some(value)) => return Ok((Ok(Some(Vec::from(value))),)),
            Ok(None) => {}
            Err(e) => return state.settle(Err(e)),
        }
        let now = Instant::now();
        if lookup == WAIT_LOOKUPS || now >= until {
            break;
        }
        tokio::time::sleep(pause.min(until - now)).await;
        pause = (pause * 2).min(WAIT_MAX_PAUSE);
    }
    Ok((Ok(None),))
}

/// `set` and `add`: charge the call, refuse, charge the bytes, write.
async fn put(
    mut store: Ctx<'_>,
    kind: fn(&mut CacheOps) -> &mut u64,
    key: &WasmStr,
    value: &WasmList<u8>,
    ttl: u32,
    mode: PutMode,
) -> wasmtime::Result<Answer<bool>> {
    store.data_mut().charge_calls(kind, 1)?;
    let Some(key) = guest_key(&mut store, key)? else {
        return Ok((Err(cache::Error::InvalidKey),));
    };
    let Some(value) = guest_value(&store, value) else {
        return Ok((Err(cache::Error::TooLarge),));
    };
    let state = store.data_mut();
    state.charge(Limit::CacheWriteBytes, written(&key, &value))?;
    let left = state.time_left()?;
    let result = state.cache.put(&key, value, ttl, mode, left).await;
    state.settle(result)
}

fn add_log(log: &mut LinkerInstance<'_, HostState>) -> wasmtime::Result<()> {
    log.func_wrap(
        "write",
        |mut store: Ctx<'_>, (level, message): (log::Level, WasmStr)| {
            store.data_mut().charge(Limit::LogLines, 1)?;
            let text = guest_text(&mut store, &message, "log line")?;
            let line = one_line(&text, MAX_LOG_LINE);
            store.data_mut().log(level, line);
            Ok(())
        },
    )
}

/// A string the guest passed, checked to be UTF-8 in place (nothing is
/// copied). Checking costs time in its length, which only its memory bounds,
/// so the deadline is checked first: a plugin cannot keep the host working
/// past it, one string at a time.
fn guest_text<'a>(
    store: &'a mut Ctx<'_>,
    text: &WasmStr,
    what: &str,
) -> wasmtime::Result<std::borrow::Cow<'a, str>> {
    store.data_mut().time_left()?;
    let store: &'a Ctx<'_> = store;
    text.to_str(store).map_err(|e| {
        GuestFault::new(
            CrashKind::InvalidResult,
            format!("{what} is not UTF-8: {e}"),
        )
        .into()
    })
}

/// Reads a cache key: `None` (invalid-key) when it is longer than any key
/// may be, without copying it.
fn guest_key(store: &mut Ctx<'_>, key: &WasmStr) -> wasmtime::Result<Option<String>> {
    let text = guest_text(store, key, "cache key")?;
    Ok((text.len() <= MAX_KEY_BYTES).then(|| text.into_owned()))
}

/// Reads a cache value: `None` (too-large) when it is over the plugin's value
/// cap, without copying it.
fn guest_value(store: &Ctx<'_>, value: &WasmList<u8>) -> Option<Bytes> {
    let max = store.data().cache.max_value_bytes();
    (value.len() as u64 <= max)
        .then(|| Bytes::copy_from_slice(value.as_le_slice(store.as_context())))
}

/// Element `i` of a list the guest passed.
fn guest_item<T: Lift + 'static>(
    store: &mut Ctx<'_>,
    list: &WasmList<T>,
    i: usize,
) -> wasmtime::Result<T> {
    match list.get(store.as_context_mut(), i) {
        Some(Ok(item)) => Ok(item),
        Some(Err(e)) => Err(GuestFault::new(CrashKind::InvalidResult, format!("{e:#}")).into()),
        None => {
            Err(GuestFault::new(CrashKind::InvalidResult, "list shorter than its length").into())
        }
    }
}

fn written(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}
