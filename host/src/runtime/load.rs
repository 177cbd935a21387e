//! Loading a component: size and format checks, the compiled-code cache,
//! the import allow-list, and pre-linking.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre};

use super::host::HostState;
use super::{BoxError, PluginRuntime};
use crate::budget::Budget;
use crate::cache::PluginCache;

/// The versions of `airlock:plugin` the host runs: the current one (its
/// WIT, `wit/airlock.wit`) and the earlier ones it only added to, whose
/// imports the linker resolves to the current interfaces (semver).
pub const PLUGIN_VERSIONS: [&str; 3] = ["0.1.0", "0.1.1", "0.1.2"];

/// The interfaces a plugin may import (any of [`PLUGIN_VERSIONS`]), with
/// the functions each provides.
const ALLOWED_IMPORTS: &[(&str, &[&str])] = &[
    (
        "airlock:plugin/cache",
        &[
            "get", "set", "add", "delete", "get-many", "set-many", "wait",
        ],
    ),
    ("airlock:plugin/log", &["write"]),
    (
        "airlock:plugin/types",
        &[
            "content",
            "[method]content.size",
            "[method]content.read",
            "[method]content.sha256",
        ],
    ),
];
pub(super) const PRE_STORE_EXPORT: &str = "airlock:plugin/pre-store@0.1.2";
pub(super) const POST_STORE_EXPORT: &str = "airlock:plugin/post-store@0.1.2";

/// `name` (`airlock:plugin/<interface>@<version>`) without its version, if
/// the version is one the host runs.
fn unversioned(name: &str) -> Option<&str> {
    let (interface, version) = name.split_once('@')?;
    PLUGIN_VERSIONS.contains(&version).then_some(interface)
}

/// The name under which `exports` holds `hook`'s interface (at any version
/// the host runs).
pub(super) fn hook_export(exports: &[String], hook: HookKind) -> Option<&str> {
    let wanted = match hook {
        HookKind::Processor => "airlock:plugin/pre-store",
        HookKind::Extension => "airlock:plugin/post-store",
    };
    exports
        .iter()
        .map(String::as_str)
        .find(|e| unversioned(e) == Some(wanted))
}

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
    /// Both hooks.
    pub const ALL: [HookKind; 2] = [HookKind::Processor, HookKind::Extension];

    /// The hook of the WIT world `name`.
    pub fn from_world(name: &str) -> Option<HookKind> {
        Self::ALL.into_iter().find(|hook| hook.world() == name)
    }

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
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
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
        "targets no Airlock world: it must export exactly one of `{PRE_STORE_EXPORT}` (world processor) or `{POST_STORE_EXPORT}` (world extension), or the same at an earlier version the host runs; it exports [{0}]"
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
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
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
        let hook = self
            .signatures
            .check(&component, info.world, &info.exports)?;
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
            let Some((_, funcs)) = ALLOWED_IMPORTS
                .iter()
                .find(|(allowed, _)| unversioned(name) == Some(*allowed))
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
            hook_export(&exports, HookKind::Processor).is_some(),
            hook_export(&exports, HookKind::Extension).is_some(),
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
}
