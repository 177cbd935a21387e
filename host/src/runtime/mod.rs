//! The plugin runtime: one wasmtime `Engine`, components compiled once and
//! cached on disk, and a fresh `Store` per invocation under the plugin's
//! budget.

mod content;
mod host;
mod invoke;
mod load;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use self::content::{ContentSource, FileContent};
use self::host::HostState;
pub use self::host::{CacheOps, ContentHandle, Usage};
pub use self::invoke::{
    CrashKind, Derived, HookOutput, Invocation, InvokeError, UploadInfo, UsageReport, Verdict,
};
pub use self::load::{ComponentInfo, HookKind, LoadError, Plugin};

/// How often the epoch ticks: the resolution of wall-clock budgets.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Settings of the runtime itself (not of any one plugin); `[runtime]` in
/// the config file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Count fuel. Off only to measure what metering costs, so not a config
    /// key: a service always meters.
    #[serde(skip)]
    pub fuel_metering: bool,
    /// Where compiled components are kept between runs; `None` compiles
    /// every time (the service defaults it to `<storage.path>/.compiled`).
    pub compiled_cache_dir: Option<PathBuf>,
    /// Largest component file accepted.
    pub max_component_bytes: u64,
    /// Largest `memory_bytes` a budget may grant (sizes the instance pool).
    pub max_memory_bytes: u64,
    /// Instances that may run at once across all plugins (pool size).
    pub max_instances: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            fuel_metering: true,
            compiled_cache_dir: None,
            max_component_bytes: 64 << 20,
            max_memory_bytes: 1 << 30,
            max_instances: 128,
        }
    }
}

/// Building the runtime failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the plugin runtime: {0}")]
pub struct RuntimeError(String);

/// Shared by every plugin: compile once, instantiate per invocation.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    // One permit per pooled instance slot: invocations wait for a slot
    // rather than failing when the pool is momentarily full.
    slots: Arc<tokio::sync::Semaphore>,
    _ticker: EpochTicker,
}

impl PluginRuntime {
    /// Builds the engine (pooling allocator, fuel, epochs) and the linker
    /// that provides exactly the `airlock:plugin` imports.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let err = |e: wasmtime::Error| RuntimeError(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::default();
        let instances = config.max_instances.max(1);
        // Rust components hold a few core instances (the module plus shims).
        pool.total_component_instances(instances)
            .total_core_instances(instances * 4)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .total_stacks(instances)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX));
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .consume_fuel(config.fuel_metering)
            .epoch_interruption(true)
            .max_wasm_stack(512 << 10)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(err)?;
        let mut linker = Linker::new(&engine);
        crate::bindings::Host_::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(err)?;
        if let Some(dir) = &config.compiled_cache_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError(format!("{}: {e}", dir.display())))?;
        }
        let ticker = EpochTicker::start(&engine);
        Ok(Self {
            engine,
            linker,
            slots: Arc::new(tokio::sync::Semaphore::new(instances as usize)),
            config,
            _ticker: ticker,
        })
    }
}

/// Drives the engine's epoch so deadlines can interrupt running wasm.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("airlock-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
