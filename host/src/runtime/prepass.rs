//! A cheap pass over a component's bytes that refuses oversized shapes
//! before anything expensive (validation, compilation) runs on them.
//!
//! It only reads section headers and function-body preambles: its time is
//! linear in the file and its memory is proportional to the nesting depth,
//! which it bounds first.

use serde::{Deserialize, Serialize};
use wasmparser::{Parser, Payload};

use super::load::LoadError;

/// Static limits on a component's shape, checked before validation;
/// `[runtime.component_limits]` in the config file. Each refusal names the
/// key that was passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentLimits {
    /// Components and modules nested inside each other.
    pub max_nesting_depth: u64,
    /// Core modules in the whole file.
    pub max_modules: u64,
    /// Nested components in the whole file.
    pub max_components: u64,
    /// Core and component instance declarations.
    pub max_instances: u64,
    /// Core functions defined, over every module.
    pub max_functions: u64,
    /// Locals declared by one function.
    pub max_locals_per_function: u64,
    /// Size of one function body.
    pub max_function_body_bytes: u64,
    /// Core, component and canonical type declarations.
    pub max_types: u64,
    /// Core and component imports.
    pub max_imports: u64,
    /// Core and component exports.
    pub max_exports: u64,
}

impl Default for ComponentLimits {
    fn default() -> Self {
        // Generous for real plugins (a componentize-js component has one
        // ~10 MB module with tens of thousands of functions) and far below
        // what makes the validator or Cranelift blow up.
        Self {
            max_nesting_depth: 8,
            max_modules: 64,
            max_components: 64,
            max_instances: 512,
            max_functions: 100_000,
            max_locals_per_function: 50_000,
            max_function_body_bytes: 4 << 20,
            max_types: 100_000,
            max_imports: 1_000,
            max_exports: 10_000,
        }
    }
}

#[derive(Default)]
struct Counts {
    modules: u64,
    components: u64,
    instances: u64,
    functions: u64,
    types: u64,
    imports: u64,
    exports: u64,
}

impl ComponentLimits {
    /// Every key, as named in refusals.
    const KEYS: [&'static str; 10] = [
        "max_nesting_depth",
        "max_modules",
        "max_components",
        "max_instances",
        "max_functions",
        "max_locals_per_function",
        "max_function_body_bytes",
        "max_types",
        "max_imports",
        "max_exports",
    ];

    /// The static name of limit `name`, if it is one.
    pub(super) fn key(name: &str) -> Option<&'static str> {
        Self::KEYS.iter().copied().find(|k| *k == name)
    }

    /// Walks `bytes` once and refuses the first limit passed.
    pub(super) fn check(&self, bytes: &[u8]) -> Result<(), LoadError> {
        let mut counts = Counts::default();
        let mut depth: u64 = 0;
        for payload in Parser::new(0).parse_all(bytes) {
            let payload = payload.map_err(|e| LoadError::Malformed(e.to_string()))?;
            match payload {
                Payload::Version { .. } => {
                    depth += 1;
                    exceed("max_nesting_depth", depth, self.max_nesting_depth)?;
                }
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ModuleSection { .. } => {
                    add("max_modules", &mut counts.modules, 1, self.max_modules)?
                }
                Payload::ComponentSection { .. } => add(
                    "max_components",
                    &mut counts.components,
                    1,
                    self.max_components,
                )?,
                Payload::InstanceSection(s) => add_section(
                    "max_instances",
                    &mut counts.instances,
                    s.count(),
                    self.max_instances,
                )?,
                Payload::ComponentInstanceSection(s) => add_section(
                    "max_instances",
                    &mut counts.instances,
                    s.count(),
                    self.max_instances,
                )?,
                Payload::FunctionSection(s) => add_section(
                    "max_functions",
                    &mut counts.functions,
                    s.count(),
                    self.max_functions,
                )?,
                Payload::TypeSection(s) => {
                    add_section("max_types", &mut counts.types, s.count(), self.max_types)?
                }
                Payload::CoreTypeSection(s) => {
                    add_section("max_types", &mut counts.types, s.count(), self.max_types)?
                }
                Payload::ComponentTypeSection(s) => {
                    add_section("max_types", &mut counts.types, s.count(), self.max_types)?
                }
                Payload::ImportSection(s) => add_section(
                    "max_imports",
                    &mut counts.imports,
                    s.count(),
                    self.max_imports,
                )?,
                Payload::ComponentImportSection(s) => add_section(
                    "max_imports",
                    &mut counts.imports,
                    s.count(),
                    self.max_imports,
                )?,
                Payload::ExportSection(s) => add_section(
                    "max_exports",
                    &mut counts.exports,
                    s.count(),
                    self.max_exports,
                )?,
                Payload::ComponentExportSection(s) => add_section(
                    "max_exports",
                    &mut counts.exports,
                    s.count(),
                    self.max_exports,
                )?,
                Payload::CodeSectionEntry(body) => {
                    let size = body.range().len() as u64;
                    exceed(
                        "max_function_body_bytes",
                        size,
                        self.max_function_body_bytes,
                    )?;
                    let mut locals: u64 = 0;
                    let reader = body
                        .get_locals_reader()
                        .map_err(|e| LoadError::Malformed(e.to_string()))?;
                    for group in reader {
                        let (count, _) = group.map_err(|e| LoadError::Malformed(e.to_string()))?;
                        locals = locals.saturating_add(u64::from(count));
                        exceed(
                            "max_locals_per_function",
                            locals,
                            self.max_locals_per_function,
                        )?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn exceed(limit: &'static str, found: u64, allowed: u64) -> Result<(), LoadError> {
    if found > allowed {
        return Err(LoadError::ComponentLimit {
            limit,
            found,
            allowed,
        });
    }
    Ok(())
}

fn add(limit: &'static str, counter: &mut u64, n: u64, allowed: u64) -> Result<(), LoadError> {
    *counter = counter.saturating_add(n);
    exceed(limit, *counter, allowed)
}

/// Sections declare their item count up front: refusing on the declared
/// count costs nothing and needs no item to be read.
fn add_section(
    limit: &'static str,
    counter: &mut u64,
    n: u32,
    allowed: u64,
) -> Result<(), LoadError> {
    add(limit, counter, u64::from(n), allowed)
}
