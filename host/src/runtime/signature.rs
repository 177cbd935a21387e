//! The hooks' signatures as the WIT defines them, to check a plugin's export
//! at load time: the call itself type-checks only once an instance exists,
//! and `airlock plugin check` must refuse what an invocation would.

use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{LiftLowerAbi, ManglingAndAbi, Resolve};

use super::BoxError;
use super::load::{HookKind, LoadError, POST_STORE_EXPORT, PRE_STORE_EXPORT, hook_export};

/// The WIT contract, as the host was built against it.
const WIT: &str = include_str!("../../../wit/airlock.wit");

/// A component built from the WIT alone (`world host` exports both hooks),
/// whose export types are the reference.
pub(super) struct HookSignatures {
    reference: Component,
}

impl HookSignatures {
    /// Builds the reference component. Its bytes are ours, so it is compiled
    /// in-process.
    pub(super) fn new(engine: &Engine) -> Result<Self, BoxError> {
        let mut resolve = Resolve::default();
        let package = resolve.push_str("airlock.wit", WIT)?;
        let world = resolve.select_world(&[package], Some("host"))?;
        let mut module = wit_component::dummy_module(
            &resolve,
            world,
            ManglingAndAbi::Legacy(LiftLowerAbi::Sync),
        );
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            StringEncoding::UTF8,
        )?;
        let bytes = ComponentEncoder::default()
            .module(&module)
            .and_then(|encoder| encoder.validate(true).encode())?;
        let reference = Component::new(engine, &bytes)?;
        Ok(Self { reference })
    }

    /// Refuses `component` unless its hook function has exactly the WIT's
    /// signature; returns the hook's export index.
    /// The hook is compared with the host's own (current) WIT: the versions
    /// the host runs share every hook signature.
    pub(super) fn check(
        &self,
        component: &Component,
        hook: HookKind,
        exports: &[String],
    ) -> Result<ComponentExportIndex, LoadError> {
        let (current, function) = match hook {
            HookKind::Processor => (PRE_STORE_EXPORT, "process"),
            HookKind::Extension => (POST_STORE_EXPORT, "on-stored"),
        };
        let interface = hook_export(exports, hook).unwrap_or(current);
        let wrong = |what: String| LoadError::WrongWorld(format!("{interface}#{function}: {what}"));
        let (expected, _) = func(&self.reference, current, function)
            .ok_or_else(|| wrong("missing from the host's own WIT".into()))?;
        let (found, index) =
            func(component, interface, function).ok_or_else(|| wrong("not exported".into()))?;
        let params_match = expected.params().len() == found.params().len()
            && expected
                .params()
                .zip(found.params())
                .all(|((n1, t1), (n2, t2))| n1 == n2 && same_type(&t1, &t2));
        let results_match = expected.results().len() == found.results().len()
            && expected
                .results()
                .zip(found.results())
                .all(|(t1, t2)| same_type(&t1, &t2));
        if !(params_match && results_match) || found.async_() {
            return Err(wrong(format!(
                "signature differs from the WIT: expected {}, found {}",
                describe(&expected),
                describe(&found),
            )));
        }
        Ok(index)
    }
}

fn func(
    component: &Component,
    interface: &str,
    function: &str,
) -> Option<(ComponentFunc, ComponentExportIndex)> {
    let (_, instance) = component.get_export(None, interface)?;
    match component.get_export(Some(&instance), function)? {
        (ComponentItem::ComponentFunc(ty), index) => Some((ty, index)),
        _ => None,
    }
}

/// Structural equality, except that resource identities differ between two
/// components by construction: a `borrow` matches a `borrow` (the linker has
/// already checked the resource is the host's `content`).
fn same_type(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Borrow(_), Type::Borrow(_)) | (Type::Own(_), Type::Own(_)) => true,
        _ => a == b,
    }
}

/// `(name, name) -> n result(s)`, enough to see what differs.
fn describe(func: &ComponentFunc) -> String {
    let params: Vec<&str> = func.params().map(|(name, _)| name).collect();
    format!(
        "({}) -> {} result(s)",
        params.join(", "),
        func.results().len()
    )
}
