//! Loading a component: size and format checks, the compiled-code cache,
//! the import allow-list, and pre-linking.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre};

use super::host::HostState;
use super::{BoxError, PluginRuntime, jail};
use crate::budget::Budget;
use crate::cache::PluginCache;

/// The interfaces a plugin may import, with the functions each provides.
const ALLOWED_IMPORTS: &[(&str, &[&str])] = &[
    (
        "airlock:plugin/cache@0.1.0",
        &["get", "set", "add", "delete", "get-many", "set-many"],
    ),
    ("airlock:plugin/log@0.1.0", &["write"]),
    (
        "airlock:plugin/types@0.1.0",
        &["content", "[method]content.size", "[method]content.read"],
    ),
];
pub(super) const PRE_STORE_EXPORT: &str = "airlock:plugin/pre-store@0.1.0";
pub(super) const POST_STORE_EXPORT: &str = "airlock:plugin/post-store@0.1.0";

/// Which hook a plugin implements, from the world it targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// `world processor`: runs before an upload is stored.
    Processor,
    /// `world extension`: runs after an upload is stored.
    Extension,
}

impl HookKind {
    /// The WIT world name.
    pub fn world(self) -> &'static str {
        match self {
            HookKind::Processor => "processor",
            HookKind::Extension => "extension",
        }
    }
}

/// A component was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// Larger than the runtime accepts.
    #[error("component is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// `max_component_bytes`.
        limit: u64,
    },
    /// A core module where a component was expected.
    #[error(
        "this is a core WebAssembly module, not a component: run `airlock plugin componentize` on it"
    )]
    CoreModule,
    /// Not valid WebAssembly, or rejected by the compiler.
    #[error("not a valid component: {0}")]
    Malformed(String),
    /// Imports something Airlock does not provide.
    #[error(
        "imports `{0}`, which Airlock does not provide (plugins may import only airlock:plugin/cache, log and types)"
    )]
    DisallowedImport(String),
    /// Exports neither (or both) of the hook interfaces.
    #[error(
        "targets no Airlock world: it must export exactly one of `{PRE_STORE_EXPORT}` (world processor) or `{POST_STORE_EXPORT}` (world extension); it exports [{0}]"
    )]
    WrongWorld(String),
    /// Passes one of `runtime.component_limits`, found before validation.
    #[error("component exceeds runtime.component_limits.{limit}: found {found}, allowed {allowed}")]
    ComponentLimit {
        /// The key of the limit.
        limit: &'static str,
        /// What the component has.
        found: u64,
        /// The limit.
        allowed: u64,
    },
    /// Validating or compiling it was stopped by the compile jail.
    #[error("compiling it was stopped at runtime.{limit} = {allowed}")]
    Compile {
        /// `compile_memory_bytes`, `compile_cpu_seconds` or `compile_timeout_ms`.
        limit: &'static str,
        /// The limit.
        allowed: u64,
    },
    /// Needs more of the instance pool than one component may take.
    #[error("component needs {found}, above runtime.{limit} = {allowed}")]
    PoolLimit {
        /// `max_core_instances_per_component`, `max_memories_per_component`,
        /// `max_tables_per_component`, `max_memory_bytes`,
        /// `max_table_elements`, `max_core_instance_bytes` or
        /// `max_component_instance_bytes`.
        limit: &'static str,
        /// What it needs.
        found: u64,
        /// The limit.
        allowed: u64,
    },
    /// The compile jail itself could not run (not the component's fault).
    #[error("cannot run the compile jail: {what}")]
    Jail {
        /// What failed.
        what: String,
        /// The error behind it, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// Its budget asks for more memory than the instance pool was sized for.
    #[error("budget memory_bytes = {asked} is above the runtime's max_memory_bytes = {limit}")]
    MemoryAboveRuntimeLimit {
        /// The budget's memory_bytes.
        asked: u64,
        /// `max_memory_bytes`.
        limit: u64,
    },
}

/// What `airlock plugin check` reports about a component.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    /// The hook world it targets.
    pub world: HookKind,
    /// Imported interfaces.
    pub imports: Vec<String>,
    /// Exported interfaces.
    pub exports: Vec<String>,
    /// Size of the component file.
    pub size: u64,
    /// SHA-256 of the component file.
    pub sha256: String,
}

/// A loaded plugin, ready to be invoked any number of times.
pub struct Plugin {
    pub(super) name: Arc<str>,
    pub(super) info: ComponentInfo,
    pub(super) pre: InstancePre<HostState>,
    /// The hook function (`process` or `on-stored`).
    pub(super) hook: ComponentExportIndex,
    pub(super) budget: Budget,
    pub(super) cache: PluginCache,
    pub(super) fuel_metering: bool,
    pub(super) slots: Arc<tokio::sync::Semaphore>,
}

impl Plugin {
    /// The plugin's name (its cache namespace and metrics label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hook it implements.
    pub fn hook(&self) -> HookKind {
        self.info.world
    }

    /// Its budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Facts about its component.
    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }
}

impl PluginRuntime {
    /// Reads and loads a component file.
    pub fn load_file(
        &self,
        name: &str,
        path: &Path,
        budget: Budget,
        cache: PluginCache,
    ) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|e| LoadError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.load(name, &bytes, budget, cache)
    }

    /// Checks, compiles (or fetches from the cache) and pre-links a component.
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        budget: Budget,
        cache: PluginCache,
    ) -> Result<Plugin, LoadError> {
        if budget.memory_bytes > self.config.max_memory_bytes {
            return Err(LoadError::MemoryAboveRuntimeLimit {
                asked: budget.memory_bytes,
                limit: self.config.max_memory_bytes,
            });
        }
        let (info, pre, hook) = self.prepare(bytes)?;
        Ok(Plugin {
            name: name.into(),
            info,
            pre,
            hook,
            budget,
            cache,
            fuel_metering: self.config.fuel_metering,
            slots: Arc::clone(&self.slots),
        })
    }

    /// Everything `load` checks, without a budget: for `airlock plugin check`,
    /// which must refuse exactly what the service refuses.
    pub fn inspect(&self, bytes: &[u8]) -> Result<ComponentInfo, LoadError> {
        self.prepare(bytes).map(|(info, _, _)| info)
    }

    /// Compiles, checks imports and the hook's signature, and pre-links.
    fn prepare(
        &self,
        bytes: &[u8],
    ) -> Result<(ComponentInfo, InstancePre<HostState>, ComponentExportIndex), LoadError> {
        let (component, info) = self.compile_checked(bytes)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Malformed(format!("{e:#}")))?;
        let hook = self.signatures.check(&component, info.world)?;
        Ok((info, pre, hook))
    }

    fn compile_checked(&self, bytes: &[u8]) -> Result<(Component, ComponentInfo), LoadError> {
        let size = bytes.len() as u64;
        if size > self.config.max_component_bytes {
            return Err(LoadError::TooLarge {
                size,
                limit: self.config.max_component_bytes,
            });
        }
        // Binary wasm starts with `\0asm` then a version: 1 for core modules,
        // 0x0001000d for components. Text (WAT) is left to the parser.
        if bytes.starts_with(b"\0asm") && bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            return Err(LoadError::CoreModule);
        }
        let sha256 = hex::encode(Sha256::digest(bytes));
        let component = self.compile(bytes, &sha256)?;
        let info = self.describe(&component, size, sha256)?;
        Ok((component, info))
    }

    fn describe(
        &self,
        component: &Component,
        size: u64,
        sha256: String,
    ) -> Result<ComponentInfo, LoadError> {
        let ty = component.component_type();
        let mut imports = Vec::new();
        for (name, item) in ty.imports(&self.engine) {
            let Some((_, funcs)) = ALLOWED_IMPORTS.iter().find(|(allowed, _)| *allowed == name)
            else {
                return Err(LoadError::DisallowedImport(name.to_string()));
            };
            let ComponentItem::ComponentInstance(instance) = item.ty else {
                // Airlock provides each interface as an instance; anything
                // else under that name (a bare function…) cannot be linked.
                return Err(LoadError::DisallowedImport(format!(
                    "{name} as something other than an interface instance"
                )));
            };
            for (export, item) in instance.exports(&self.engine) {
                // Type exports (records, variants) carry no capability.
                let is_type = matches!(item.ty, ComponentItem::Type(_));
                if !is_type && !funcs.contains(&export) {
                    return Err(LoadError::DisallowedImport(format!("{name}#{export}")));
                }
            }
            imports.push(name.to_string());
        }
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let world = match (
            exports.iter().any(|e| e == PRE_STORE_EXPORT),
            exports.iter().any(|e| e == POST_STORE_EXPORT),
        ) {
            (true, false) => HookKind::Processor,
            (false, true) => HookKind::Extension,
            _ => return Err(LoadError::WrongWorld(exports.join(", "))),
        };
        Ok(ComponentInfo {
            world,
            imports,
            exports,
            size,
            sha256,
        })
    }

    /// Compiles `bytes` in the compile jail, reusing a previous compilation
    /// by this same engine configuration when the cache directory has one.
    fn compile(&self, bytes: &[u8], sha256: &str) -> Result<Component, LoadError> {
        // The static limits hold for every load, cached or not: the limits
        // may have been tightened since the artifact was made. Text (WAT,
        // for tests and authors) is converted and checked inside the jail,
        // so it never comes from the cache.
        let binary = bytes.starts_with(b"\0asm");
        if binary {
            self.config.component_limits.check(bytes)?;
        }
        let cached = self
            .config
            .compiled_cache_dir
            .as_ref()
            .filter(|_| binary)
            .map(|dir| {
                let mut engine_hash = DefaultHasher::new();
                self.engine
                    .precompile_compatibility_hash()
                    .hash(&mut engine_hash);
                (
                    dir,
                    dir.join(format!("{sha256}-{:016x}.cwasm", engine_hash.finish())),
                )
            });
        if let Some((_, path)) = &cached
            && path.exists()
        {
            match deserialize_own_file(&self.engine, path).map_err(pool_refusal) {
                Ok(component) => return Ok(component),
                // Tighter pool caps than when it was compiled: a refusal,
                // not a stale artifact.
                Err(refusal @ LoadError::PoolLimit { .. }) => return Err(refusal),
                Err(e) => {
                    let error: &(dyn std::error::Error + 'static) = &e;
                    tracing::warn!(path = %path.display(), error, "discarding unusable compiled component")
                }
            }
        }
        let artifact = jail::compile(&self.config, bytes)?;
        let component = deserialize_own_bytes(&self.engine, &artifact).map_err(pool_refusal)?;
        // A failed cache write only costs a recompile next time.
        if let Some((dir, path)) = &cached
            && let Err(e) = write_atomically(dir, path, &artifact)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled component");
        }
        Ok(component)
    }
}

/// Loads a compiled component that this process family wrote itself into its
/// private cache directory (never a user-supplied file); the file name binds
/// it to the source's hash and to the engine's compatibility hash.
#[allow(unsafe_code)]
fn deserialize_own_file(engine: &wasmtime::Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the artifact was produced by the compile jail of a compatible
    // engine and written atomically, so it is neither truncated nor foreign;
    // wasmtime still checks its header and engine settings.
    unsafe { Component::deserialize_file(engine, path) }
}

/// Loads the artifact the compile jail just produced.
#[allow(unsafe_code)]
fn deserialize_own_bytes(
    engine: &wasmtime::Engine,
    artifact: &[u8],
) -> wasmtime::Result<Component> {
    // SAFETY: the bytes come straight from our own `airlock __compile` child
    // (`Engine::precompile_component` with the same settings), not from a
    // user; wasmtime still checks its header and engine settings.
    unsafe { Component::deserialize(engine, artifact) }
}

/// Why the service's engine refused an artifact the jail compiled: the
/// pooling allocator checks per-component caps when a component is created,
/// and says so only in words.
fn pool_refusal(err: wasmtime::Error) -> LoadError {
    let text = format!("{err:#}");
    let Some((_, limit)) = POOL_REFUSALS.iter().find(|(words, _)| text.contains(words)) else {
        return LoadError::Jail {
            what: "unusable artifact from the compiler".into(),
            source: Some(err.into()),
        };
    };
    // "… N …, which exceeds the … limit/maximum of M …": the last two numbers.
    // (Byte counts are printed in hex; details follow a ';'.) Words that do
    // not parse as numbers are skipped.
    let sentence = text.split(';').next().unwrap_or_default();
    let numbers: Vec<u64> = sentence
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|n| match n.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => n.parse().ok(),
        })
        .collect();
    let (found, allowed) = match numbers.as_slice() {
        [.., found, allowed] => (*found, *allowed),
        _ => (0, 0),
    };
    LoadError::PoolLimit {
        limit,
        found,
        allowed,
    }
}

/// wasmtime's words for each pool cap, most specific first, and the
/// `[runtime]` key that sets it.
const POOL_REFUSALS: [(&str, &str); 7] = [
    (
        "instance allocation for this module requires",
        "max_core_instance_bytes",
    ),
    (
        "instance allocation for this component requires",
        "max_component_instance_bytes",
    ),
    ("core module instances", "max_core_instances_per_component"),
    ("minimum byte size", "max_memory_bytes"),
    ("minimum element size", "max_table_elements"),
    ("memories", "max_memories_per_component"),
    ("tables", "max_tables_per_component"),
];

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
