//! The plugin runtime: one wasmtime `Engine`, components compiled once and
//! cached on disk, and a fresh `Store` per invocation under the plugin's
//! budget.

mod compile;
mod content;
mod hooks;
mod host;
mod imports;
mod invoke;
pub mod jail;
mod load;
mod outcome;
mod output;
mod prepass;
mod signature;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use self::content::{ChunkedContent, ContentSource, FileContent, readable};
pub use self::hooks::UploadInfo;
use self::host::HostState;
pub use self::host::{CacheOps, ContentHandle, Usage};
pub use self::load::{ComponentInfo, HookKind, LoadError, PLUGIN_VERSIONS, Plugin};
pub use self::outcome::{
    CrashKind, Derived, HookOutput, Invocation, InvokeError, UsageReport, Verdict,
};
pub use self::prepass::ComponentLimits;

/// Bytes of each pooled table reset in place when an instance is freed.
const TABLE_KEEP_RESIDENT: usize = 16 << 10;

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
    /// Largest table one core module may declare or grow to (sizes the
    /// pool's tables; a budget's `table_elements` sums every table).
    pub max_table_elements: u64,
    /// Runtime state (globals, function references…) of one core instance,
    /// in bytes.
    pub max_core_instance_bytes: u64,
    /// Runtime state of one component instance, in bytes.
    pub max_component_instance_bytes: u64,
    /// Instances that may run at once across all plugins (pool size).
    pub max_instances: u32,
    /// Core instances one component may create: one invocation cannot
    /// drain the pool that every plugin shares.
    pub max_core_instances_per_component: u32,
    /// Linear memories one component may hold (their sizes are summed
    /// against the budget's `memory_bytes`).
    pub max_memories_per_component: u32,
    /// Tables one component may hold (their elements are summed against the
    /// budget's `table_elements`).
    pub max_tables_per_component: u32,
    /// Address space of the child process that validates and compiles a
    /// component the service has not compiled before.
    pub compile_memory_bytes: u64,
    /// CPU time of that child process (all its compiler threads).
    pub compile_cpu_seconds: u64,
    /// Wall-clock time of that child process.
    pub compile_timeout_ms: u64,
    /// The `airlock` executable that runs the compile jail; `None` is the
    /// running executable. Not a config key: tests point it at the binary.
    #[serde(skip)]
    pub compiler_program: Option<PathBuf>,
    /// Static limits checked before any validation or compilation.
    pub component_limits: ComponentLimits,
    /// Bytes at the start of each pooled linear memory reset in place
    /// rather than returned to the kernel when an invocation ends. With
    /// Linux's `PAGEMAP_SCAN` (6.7+) only the pages the invocation dirtied
    /// are reset, so the next invocation in the slot takes no page faults
    /// for its stack, data and first heap pages; the cost is that many
    /// resident bytes per warm slot at most. 0 returns every page.
    pub memory_keep_resident_bytes: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            fuel_metering: true,
            compiled_cache_dir: None,
            max_component_bytes: 64 << 20,
            max_memory_bytes: 1 << 30,
            max_table_elements: 100_000,
            max_core_instance_bytes: 1 << 20,
            max_component_instance_bytes: 1 << 20,
            max_instances: 128,
            max_core_instances_per_component: 32,
            max_memories_per_component: 4,
            max_tables_per_component: 16,
            compile_memory_bytes: 1 << 30,
            // A JavaScript plugin carries its engine (12 MB of wasm):
            // ~35 CPU-seconds of Cranelift here. The CPU limit bounds the
            // work; the wall clock is only the backstop, with room for a
            // busy machine, where the jail (at the lowest priority) gets
            // what is left: 120 s of wall refused a JS plugin whose compile
            // shared two cores with a cargo build.
            compile_cpu_seconds: 120,
            compile_timeout_ms: 600_000,
            compiler_program: None,
            component_limits: ComponentLimits::default(),
            memory_keep_resident_bytes: 2 << 20,
        }
    }
}

/// The error behind another: wasmtime's and anyhow's errors, boxed so that
/// their chain of causes stays reachable through `source()`.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Building the runtime failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration.
    #[error("cannot start the plugin runtime: cannot build the engine")]
    Engine(#[source] BoxError),
    /// The `airlock:plugin` imports could not be added to the linker.
    #[error("cannot start the plugin runtime: cannot link the airlock:plugin imports")]
    Imports(#[source] BoxError),
    /// The compiled-component cache directory could not be created.
    #[error("cannot start the plugin runtime: cannot create {}", path.display())]
    CompiledCacheDir {
        /// `compiled_cache_dir`.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The reference for the hooks' signatures could not be built from the
    /// WIT the host was built with.
    #[error("cannot start the plugin runtime: cannot build the hooks' signatures from the WIT")]
    HookSignatures(#[source] BoxError),
    /// The thread that drives the epoch could not be started: without it no
    /// wall-clock limit would ever fire.
    #[error("cannot start the plugin runtime: cannot start the epoch ticker thread")]
    EpochTicker(#[source] std::io::Error),
}

/// Shared by every plugin: compile once, instantiate per invocation.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    // One permit per pooled instance slot: invocations wait for a slot
    // rather than failing when the pool is momentarily full.
    slots: Arc<tokio::sync::Semaphore>,
    signatures: signature::HookSignatures,
    _ticker: EpochTicker,
}

impl PluginRuntime {
    /// Builds the engine (pooling allocator, fuel, epochs) and the linker
    /// that provides exactly the `airlock:plugin` imports.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let instances = config.max_instances.max(1);
        let engine = Engine::new(&engine_config(&config, true))
            .map_err(|e| RuntimeError::Engine(e.into()))?;
        let mut linker = Linker::new(&engine);
        imports::add_to_linker(&mut linker).map_err(|e| RuntimeError::Imports(e.into()))?;
        if let Some(dir) = &config.compiled_cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| RuntimeError::CompiledCacheDir {
                path: dir.clone(),
                source,
            })?;
        }
        let signatures =
            signature::HookSignatures::new(&engine).map_err(RuntimeError::HookSignatures)?;
        let ticker = EpochTicker::start(&engine).map_err(RuntimeError::EpochTicker)?;
        Ok(Self {
            engine,
            linker,
            slots: Arc::new(tokio::sync::Semaphore::new(instances as usize)),
            signatures,
            config,
            _ticker: ticker,
        })
    }
}

/// The engine settings shared by the service and the compile jail: code
/// compiled by one must load in the other, so only the allocator differs
/// (the jail compiles and never instantiates). Public for benchmarks that
/// measure a floor on the very same engine settings.
pub fn engine_config(config: &RuntimeConfig, pooling: bool) -> Config {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .consume_fuel(config.fuel_metering)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10);
    if pooling {
        let instances = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // Every instance slot can hold a component at its per-component
        // caps, so one invocation, however greedy, cannot starve another of
        // pooled core instances, memories or tables.
        let per = |n: u32| n.max(1);
        let (core_instances, memories, tables) = (
            per(config.max_core_instances_per_component),
            per(config.max_memories_per_component),
            per(config.max_tables_per_component),
        );
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(core_instances))
            .total_memories(instances.saturating_mul(memories))
            .total_tables(instances.saturating_mul(tables))
            .total_stacks(instances)
            .max_core_instances_per_component(core_instances)
            .max_memories_per_component(memories)
            .max_tables_per_component(tables)
            .table_elements(usize::try_from(config.max_table_elements).unwrap_or(usize::MAX))
            .max_core_instance_size(
                usize::try_from(config.max_core_instance_bytes).unwrap_or(usize::MAX),
            )
            .max_component_instance_size(
                usize::try_from(config.max_component_instance_bytes).unwrap_or(usize::MAX),
            )
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(
                usize::try_from(config.memory_keep_resident_bytes).unwrap_or(usize::MAX),
            )
            // A component's tables are small (its indirect calls and the
            // adapters' trampolines): reset them in place, not by madvise
            // and a page fault at the next instantiation.
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            // Where the kernel has it (Linux 6.7+), reset only dirtied
            // pages of the kept region; elsewhere the whole region.
            .pagemap_scan(wasmtime::Enabled::Auto);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    wasm
}

/// Drives the engine's epoch so deadlines can interrupt running wasm.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the thread; failing to is an error, never a runtime whose
    /// wall-clock limits are silently off.
    fn start(engine: &Engine) -> std::io::Result<Self> {
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
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            // Its loop does not panic; if it ever did, deadlines stopped
            // firing before this point, which must not go unnoticed.
            tracing::error!("the epoch ticker thread panicked");
        }
    }
}
