//! Shared helpers: a runtime, plugins by name, fixtures, inline components.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock::budget::{Budget, Limit};
use airlock::cache::{CacheBackend, CachePolicy, MemoryBackend, PluginCache};
use airlock::runtime::{
    ContentSource, HookOutput, Invocation, InvokeError, Plugin, PluginRuntime, RuntimeConfig,
    UploadInfo, Verdict,
};
use bytes::Bytes;

/// The checkout's root. Read when the test runs (cargo sets it): checkouts
/// share one target dir, and cargo may run a test binary another checkout
/// built, whose compile-time `CARGO_MANIFEST_DIR` names that checkout.
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("..")
}

/// A test fixture file.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// A fixture's bytes.
pub fn fixture_bytes(name: &str) -> Bytes {
    std::fs::read(fixture(name)).expect("fixture").into()
}

/// A built plugin component from `plugins/dist`.
pub fn plugin_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("AIRLOCK_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("plugins/dist"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the plugins with scripts/build-plugins.sh",
        path.display()
    );
    path
}

/// A runtime shared by the tests of this binary (one engine, like the
/// service), with a compiled-component cache so reruns skip Cranelift.
pub fn runtime() -> &'static PluginRuntime {
    static RUNTIME: std::sync::OnceLock<PluginRuntime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        PluginRuntime::new(RuntimeConfig {
            compiled_cache_dir: Some(std::env::temp_dir().join("airlock-test-compiled")),
            max_instances: 32,
            compiler_program: Some(compiler()),
            ..RuntimeConfig::default()
        })
        .expect("runtime")
    })
}

/// The `airlock` binary, which runs the compile jail for the runtime under
/// test (the test binary cannot).
pub fn compiler() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_airlock"))
}

/// A cache for plugin `name` on `backend` with `policy`.
pub fn plugin_cache(
    backend: &Arc<dyn CacheBackend>,
    name: &str,
    policy: CachePolicy,
) -> PluginCache {
    PluginCache::new(
        Arc::clone(backend),
        "test",
        name,
        policy,
        Duration::from_millis(500),
    )
}

/// A fresh in-memory backend.
pub fn memory_backend() -> Arc<dyn CacheBackend> {
    Arc::new(MemoryBackend::new(64 << 20))
}

/// Loads plugin `name` from `plugins/dist` with its own fresh cache.
pub fn load(name: &str, budget: Budget) -> Plugin {
    load_as(
        name,
        name,
        budget,
        &memory_backend(),
        CachePolicy::default(),
    )
}

/// Loads the component of plugin `component` under the name `name`.
pub fn load_as(
    component: &str,
    name: &str,
    budget: Budget,
    backend: &Arc<dyn CacheBackend>,
    policy: CachePolicy,
) -> Plugin {
    load_with_cache(component, name, budget, plugin_cache(backend, name, policy))
}

/// Loads the component of plugin `component` as `name` with `cache`.
pub fn load_with_cache(component: &str, name: &str, budget: Budget, cache: PluginCache) -> Plugin {
    runtime()
        .load_file(name, &plugin_path(component), budget, cache)
        .unwrap_or_else(|e| panic!("loading {component}: {e}"))
}

/// An upload record for `content_type`.
pub fn upload(content_type: &str) -> UploadInfo {
    UploadInfo {
        id: "upload-1".into(),
        client: "tests".into(),
        filename: "file".into(),
        content_type: content_type.into(),
        metadata: Default::default(),
        // Left to the host to compute if a plugin asks.
        sha256: String::new(),
    }
}

/// Invokes `plugin` on `bytes` declared as `content_type`.
pub async fn invoke(plugin: &Plugin, content_type: &str, bytes: Bytes) -> Invocation {
    invoke_upload(plugin, &upload(content_type), bytes).await
}

/// Invokes `plugin` on `bytes` described by `upload`.
pub async fn invoke_upload(plugin: &Plugin, upload: &UploadInfo, bytes: Bytes) -> Invocation {
    let content: Arc<dyn ContentSource> = Arc::new(bytes);
    plugin.invoke(upload, content).await
}

/// The verdict of a successful processor invocation.
pub fn verdict(invocation: Invocation) -> Verdict {
    match invocation.outcome {
        Ok(HookOutput::Verdict(v)) => v,
        other => panic!("expected a verdict, got {other:?}"),
    }
}

/// The error of a failed invocation.
pub fn error(invocation: Invocation) -> InvokeError {
    match invocation.outcome {
        Err(e) => e,
        Ok(out) => panic!("expected an error, got {out:?}"),
    }
}

/// Metadata value `key` of an accept or replace verdict.
pub fn meta<'a>(verdict: &'a Verdict, key: &str) -> Option<&'a str> {
    let metadata = match verdict {
        Verdict::Accept { metadata } | Verdict::Replace { metadata, .. } => metadata,
        Verdict::Reject { .. } => return None,
    };
    metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A budget with everything generous except what the test sets.
pub fn roomy() -> Budget {
    Budget {
        timeout_ms: 10_000,
        ..Budget::default()
    }
}

/// Runs the `airlock` binary with `args`: exit code and stdout + stderr.
pub fn airlock<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String) {
    let out = std::process::Command::new(compiler())
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run airlock");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// After whatever stopped `after`, the shared runtime still runs a good
/// plugin.
pub async fn assert_trivial_still_runs(after: &str) {
    let ok = invoke(
        &load("trivial", roomy()),
        "image/png",
        fixture_bytes("picture.png"),
    )
    .await;
    assert!(ok.outcome.is_ok(), "after {after}: {:?}", ok.outcome);
}

/// The used amount of a budget stop on `limit` with allowance `allowed`.
pub fn assert_stopped(invocation: Invocation, limit: Limit, allowed: u64) -> u64 {
    match error(invocation) {
        InvokeError::BudgetExceeded {
            limit: hit,
            used,
            allowed: a,
            plugin,
        } => {
            assert_eq!(
                (hit, a),
                (limit, allowed),
                "plugin {plugin} stopped for the wrong limit"
            );
            // Wall time is reported in whole milliseconds.
            let over = used > allowed || limit == Limit::Timeout && used >= allowed;
            assert!(over, "used {used} should exceed allowed {allowed}");
            used
        }
        other => panic!("expected a {limit} budget stop, got {other:?}"),
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`:
/// the one way tests wait for something to happen (never a fixed sleep).
/// `None` if `limit` passed first.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        // The polling interval.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
