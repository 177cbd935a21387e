//! Turning a component's bytes into a wasmtime `Component`: the static
//! limits, the compiled-code cache, the compile jail, and the pool caps the
//! engine checks when it takes the artifact.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

use wasmtime::component::Component;

use super::load::LoadError;
use super::{PluginRuntime, jail};

impl PluginRuntime {
    /// Compiles `bytes` in the compile jail, reusing a previous compilation
    /// by this same engine configuration when the cache directory has one.
    pub(super) fn compile(&self, bytes: &[u8], sha256: &str) -> Result<Component, LoadError> {
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
