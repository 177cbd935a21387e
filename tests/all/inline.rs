//! Hostile components written inline: the canonical-ABI boilerplate of a
//! processor or extension around a core module the test writes.
//!
//! A component built here imports `types` (with `content.read`), `cache`
//! (`get-many`, `set-many`) and `log`, keeps its linear memory and a bump
//! allocator in a core instance of their own, and gives the main core module
//! these imports from `"env"`:
//!
//! | import | core signature | what |
//! |---|---|---|
//! | `memory` | memory | the memory the host reads and writes |
//! | `drop-content` | `(param i32)` | `resource.drop` of `content` |
//! | `read` | `(param i32 i64 i32 i32)` | `[method]content.read`, result pointer last |
//! | `get-many` | `(param i32 i32 i32)` | `cache.get-many` (keys pointer, length, result pointer) |
//! | `set-many` | `(param i32 i32 i32 i32)` | `cache.set-many` (entries pointer, length, ttl, result pointer) |
//! | `log` | `(param i32 i32 i32)` | `log.write` (level, message pointer, length) |
//!
//! The main module must export `process` (processor) or `on-stored`
//! (extension) with the core signature [`HOOK`]. Addresses below
//! [`HEAP_START`] are the test's own: the allocator hands out memory above it.

use airlock::budget::Budget;
use airlock::cache::CachePolicy;
use airlock::runtime::{LoadError, Plugin, PluginRuntime};

use crate::common::*;

/// The core signature of `process` and `on-stored`: the upload's four
/// strings, its size and metadata list, and the borrowed `content` handle
/// (parameter 11); the result is a pointer to the result area.
pub const HOOK: &str = "(param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32) (result i32)";

/// Where the allocator starts; lower addresses are free for the test.
pub const HEAP_START: u32 = 32 << 10;

/// The bump allocator the components use unless a test replaces it.
pub const BUMP_REALLOC: &str = r#"
      (local $ptr i32) (local $end i32)
      (local.set $ptr
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $ptr) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (if (i32.eq
                (memory.grow
                  (i32.shr_u
                    (i32.sub
                      (i32.add (local.get $end) (i32.const 65535))
                      (i32.mul (memory.size) (i32.const 65536)))
                    (i32.const 16)))
                (i32.const -1))
            (then unreachable))))
      (global.set $heap (local.get $end))
      (local.get $ptr)"#;

const TYPES: &str = r#"
  (import "airlock:plugin/types@0.1.0" (instance $types
    (type $upload-def (record
      (field "id" string)
      (field "client" string)
      (field "filename" string)
      (field "content-type" string)
      (field "size" u64)
      (field "metadata" (list (tuple string string)))))
    (export "upload" (type $upload (eq $upload-def)))
    (export "content" (type $content (sub resource)))
    (export "[method]content.read" (func
      (param "self" (borrow $content)) (param "offset" u64) (param "len" u32)
      (result (list u8))))
    (type $plugin-error-def (record (field "message" string)))
    (export "plugin-error" (type $plugin-error (eq $plugin-error-def)))
    (type $replacement-def (record
      (field "bytes" (list u8))
      (field "content-type" string)
      (field "metadata" (list (tuple string string)))))
    (export "replacement" (type $replacement (eq $replacement-def)))
    (type $verdict-def (variant
      (case "accept" (list (tuple string string)))
      (case "reject" string)
      (case "replace" $replacement)))
    (export "verdict" (type $verdict (eq $verdict-def)))
    (type $derived-def (record
      (field "name" string)
      (field "content-type" string)
      (field "bytes" (list u8))))
    (export "derived" (type $derived (eq $derived-def)))
  ))
  (alias export $types "upload" (type $upload))
  (alias export $types "content" (type $content))
  (alias export $types "plugin-error" (type $plugin-error))
  (alias export $types "verdict" (type $verdict))
  (alias export $types "derived" (type $derived))
  (alias export $types "[method]content.read" (func $content-read))
"#;

const CACHE_AND_LOG: &str = r#"
  (import "airlock:plugin/cache@0.1.0" (instance $cache
    (type $error-def (variant
      (case "quota-exceeded")
      (case "too-large")
      (case "invalid-key")
      (case "unavailable")))
    (export "error" (type $error (eq $error-def)))
    (export "get-many" (func (param "keys" (list string))
      (result (result (list (option (list u8))) (error $error)))))
    (export "set-many" (func
      (param "entries" (list (tuple string (list u8)))) (param "ttl-seconds" u32)
      (result (result (error $error)))))
  ))
  (alias export $cache "get-many" (func $get-many))
  (alias export $cache "set-many" (func $set-many))
  (import "airlock:plugin/log@0.1.0" (instance $log
    (type $level-def (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type $level (eq $level-def)))
    (export "write" (func (param "level" $level) (param "message" string)))
  ))
  (alias export $log "write" (func $log-write))
"#;

/// Which hook the component exports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum World {
    Processor,
    Extension,
}

/// An inline component; see the module docs.
#[derive(Clone)]
pub struct Component {
    pub world: World,
    /// Whether to import `cache` and `log` (and give their lowered functions
    /// to the main module).
    pub cache_and_log: bool,
    /// Body of `cabi_realloc (param $old $old-size $align $size) (result
    /// i32)`, which may use the global `$heap`.
    pub realloc: String,
    /// Component-level items placed before the main core module (more
    /// imports, modules, instances, canonical functions).
    pub items: String,
    /// More exports of the `"env"` instance given to the main module.
    pub env: String,
    /// The main core module after its `"env"` imports.
    pub core: String,
    /// Replaces the standard hook type, lift and export when set.
    pub export: Option<String>,
}

impl Component {
    pub fn processor(core: impl Into<String>) -> Self {
        Self::new(World::Processor, core.into())
    }

    pub fn extension(core: impl Into<String>) -> Self {
        Self::new(World::Extension, core.into())
    }

    fn new(world: World, core: String) -> Self {
        Self {
            world,
            cache_and_log: true,
            realloc: BUMP_REALLOC.into(),
            items: String::new(),
            env: String::new(),
            core,
            export: None,
        }
    }

    /// The component's text.
    pub fn wat(&self) -> String {
        let (imports, lowered, env_imports, env_exports) = if self.cache_and_log {
            (
                CACHE_AND_LOG,
                r#"
  (core func $get-many-lowered
    (canon lower (func $get-many) (memory $memory) (realloc $realloc)))
  (core func $set-many-lowered
    (canon lower (func $set-many) (memory $memory) (realloc $realloc)))
  (core func $log-lowered (canon lower (func $log-write) (memory $memory)))"#,
                r#"
    (import "env" "get-many" (func $get-many (param i32 i32 i32)))
    (import "env" "set-many" (func $set-many (param i32 i32 i32 i32)))
    (import "env" "log" (func $log (param i32 i32 i32)))"#,
                r#"
      (export "get-many" (func $get-many-lowered))
      (export "set-many" (func $set-many-lowered))
      (export "log" (func $log-lowered))"#,
            )
        } else {
            ("", "", "", "")
        };
        let export = self.export.clone().unwrap_or_else(|| match self.world {
            World::Processor => r#"
  (type $hook-type (func
    (param "upload" $upload)
    (param "content" (borrow $content))
    (result (result $verdict (error $plugin-error)))))
  (func $hook (type $hook-type)
    (canon lift (core func $main "process") (memory $memory) (realloc $realloc)))
  (instance $hook-instance (export "process" (func $hook)))
  (export "airlock:plugin/pre-store@0.1.0" (instance $hook-instance))"#
                .into(),
            World::Extension => r#"
  (type $hook-type (func
    (param "upload" $upload)
    (param "content" (borrow $content))
    (result (result (list $derived) (error $plugin-error)))))
  (func $hook (type $hook-type)
    (canon lift (core func $main "on-stored") (memory $memory) (realloc $realloc)))
  (instance $hook-instance (export "on-stored" (func $hook)))
  (export "airlock:plugin/post-store@0.1.0" (instance $hook-instance))"#
                .into(),
        });
        let Component {
            realloc,
            items,
            env,
            core,
            ..
        } = self;
        format!(
            r#"(component
  {TYPES}
  {imports}
  (core module $mem
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const {HEAP_START}))
    (func (export "cabi_realloc")
      (param $old i32) (param $old-size i32) (param $align i32) (param $size i32)
      (result i32)
      {realloc}))
  (core instance $mem (instantiate $mem))
  (alias core export $mem "memory" (core memory $memory))
  (alias core export $mem "cabi_realloc" (core func $realloc))
  (core func $drop-content (canon resource.drop $content))
  (core func $read-lowered
    (canon lower (func $content-read) (memory $memory) (realloc $realloc)))
  {lowered}
  {items}
  (core module $plugin
    (import "env" "memory" (memory 1))
    (import "env" "drop-content" (func $drop-content (param i32)))
    (import "env" "read" (func $read (param i32 i64 i32 i32)))
    {env_imports}
    {core})
  (core instance $main (instantiate $plugin
    (with "env" (instance
      (export "memory" (memory $memory))
      (export "drop-content" (func $drop-content))
      (export "read" (func $read-lowered))
      {env_exports}
      {env}))))
  {export}
)"#
        )
    }

    /// The component's binary.
    pub fn bytes(&self) -> Vec<u8> {
        let wat = self.wat();
        wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
    }

    /// Loads it into the shared runtime under `budget`.
    pub fn try_load(&self, budget: Budget) -> Result<Plugin, LoadError> {
        load_bytes_with(runtime(), &self.bytes(), budget)
    }

    /// Loads it into the shared runtime under `budget`; panics if refused.
    pub fn load(&self, budget: Budget) -> Plugin {
        self.try_load(budget)
            .unwrap_or_else(|e| panic!("loading an inline component: {e}"))
    }
}

/// Loads `bytes` into `runtime` as plugin "inline" with a fresh cache.
pub fn load_bytes_with(
    runtime: &PluginRuntime,
    bytes: &[u8],
    budget: Budget,
) -> Result<Plugin, LoadError> {
    let cache = plugin_cache(&memory_backend(), "inline", CachePolicy::default());
    runtime.load("inline", bytes, budget, cache)
}

/// An active data segment writing `bytes` at `address`.
pub fn data(address: u32, bytes: &[u8]) -> String {
    let escaped: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
    format!("(data (i32.const {address}) \"{escaped}\")")
}

/// A 32-bit little-endian word, for building data segments.
pub fn word(value: u32) -> [u8; 4] {
    value.to_le_bytes()
}

/// A processor body that drops its `content` handle and returns the result
/// area at address 16, after running `before` (core instructions).
pub fn process_returning_area(before: &str) -> String {
    format!(
        r#"(func (export "process") {HOOK}
      (call $drop-content (local.get 11))
      {before}
      (i32.const 16))"#
    )
}

/// A processor that accepts with exactly `entries` metadata entries, built
/// in memory by data segments (keys and values at 1024, list at 4096).
pub fn accepting_with_metadata(entries: &[(&str, &str)]) -> Component {
    let list_at = 4096u32;
    let mut strings = Vec::new();
    let mut list = Vec::new();
    let put = |s: &str, strings: &mut Vec<u8>| {
        let at = 1024 + strings.len() as u32;
        strings.extend_from_slice(s.as_bytes());
        (at, s.len() as u32)
    };
    for (key, value) in entries {
        let (kp, kl) = put(key, &mut strings);
        let (vp, vl) = put(value, &mut strings);
        for w in [kp, kl, vp, vl] {
            list.extend_from_slice(&word(w));
        }
    }
    assert!(1024 + strings.len() < list_at as usize);
    assert!(list_at as usize + list.len() < HEAP_START as usize);
    let area = format!(
        r#"(i32.store8 (i32.const 16) (i32.const 0))
      (i32.store8 (i32.const 20) (i32.const 0))
      (i32.store (i32.const 24) (i32.const {list_at}))
      (i32.store (i32.const 28) (i32.const {}))"#,
        entries.len()
    );
    Component::processor(format!(
        "{}\n{}\n{}",
        data(1024, &strings),
        data(list_at, &list),
        process_returning_area(&area)
    ))
}

/// An extension returning `names.len()` derived artifacts with those names,
/// content type "application/octet-stream" and no bytes.
pub fn deriving(names: &[String]) -> Component {
    let ct = b"application/octet-stream";
    let list_at = 8192u32;
    let mut strings = ct.to_vec();
    let mut list = Vec::new();
    for name in names {
        let at = 1024 + strings.len() as u32;
        strings.extend_from_slice(name.as_bytes());
        for w in [at, name.len() as u32, 1024, ct.len() as u32, 0, 0] {
            list.extend_from_slice(&word(w));
        }
    }
    assert!(1024 + strings.len() < list_at as usize);
    assert!(list_at as usize + list.len() < HEAP_START as usize);
    Component::extension(format!(
        r#"{}
    {}
    (func (export "on-stored") {HOOK}
      (call $drop-content (local.get 11))
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.store (i32.const 20) (i32.const {list_at}))
      (i32.store (i32.const 24) (i32.const {}))
      (i32.const 16))"#,
        data(1024, &strings),
        data(list_at, &list),
        names.len()
    ))
}
