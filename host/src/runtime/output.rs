//! What a hook returns, read out of guest memory under the budget.
//!
//! The hook's result is lifted as lazy views ([`WasmList`], [`WasmStr`]):
//! lifting only checks that each list lies inside the guest's memory. Counts
//! are checked against `metadata_entries` / `derived_artifacts`, and every
//! string and byte list is charged to `output_bytes`, *before* the host
//! copies it, so a plugin cannot make the host allocate more than its budget
//! allows.

use bytes::Bytes;
use wasmtime::component::{ComponentType, Lift, WasmList, WasmStr};
use wasmtime::{AsContext, AsContextMut, Store};

use super::host::HostState;
use super::invoke::{CrashKind, Derived, GuestFault, Verdict};
use crate::budget::{Limit, OUTPUT_ENTRY_COST};

/// Longest plugin-error message kept (it goes to logs and responses).
const MAX_ERROR_MESSAGE: usize = 4 << 10;

/// `types.plugin-error`.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(super) struct RawPluginError {
    message: WasmStr,
}

/// `types.replacement`.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(super) struct RawReplacement {
    bytes: WasmList<u8>,
    #[component(name = "content-type")]
    content_type: WasmStr,
    metadata: WasmList<(WasmStr, WasmStr)>,
}

/// `types.verdict`.
#[derive(ComponentType, Lift)]
#[component(variant)]
pub(super) enum RawVerdict {
    #[component(name = "accept")]
    Accept(WasmList<(WasmStr, WasmStr)>),
    #[component(name = "reject")]
    Reject(WasmStr),
    #[component(name = "replace")]
    Replace(RawReplacement),
}

/// `types.derived`.
#[derive(ComponentType, Lift)]
#[component(record)]
pub(super) struct RawDerived {
    name: WasmStr,
    #[component(name = "content-type")]
    content_type: WasmStr,
    bytes: WasmList<u8>,
}

/// The result of `pre-store.process`.
pub(super) type ProcessResult = (Result<RawVerdict, RawPluginError>,);
/// The result of `post-store.on-stored`.
pub(super) type OnStoredResult = (Result<WasmList<RawDerived>, RawPluginError>,);

type Store_ = Store<HostState>;

/// Reads a processor's verdict.
pub(super) fn verdict(store: &mut Store_, raw: RawVerdict) -> wasmtime::Result<Verdict> {
    Ok(match raw {
        RawVerdict::Accept(metadata) => {
            count(store, Limit::MetadataEntries, metadata.len())?;
            Verdict::Accept {
                metadata: read_metadata(store, &metadata)?,
            }
        }
        RawVerdict::Reject(reason) => Verdict::Reject {
            reason: read_str(store, &reason)?,
        },
        RawVerdict::Replace(r) => {
            // The count first: it is the cheapest thing to refuse on.
            count(store, Limit::MetadataEntries, r.metadata.len())?;
            let content_type = read_str(store, &r.content_type)?;
            let bytes = read_bytes(store, &r.bytes)?;
            Verdict::Replace {
                bytes,
                content_type,
                metadata: read_metadata(store, &r.metadata)?,
            }
        }
    })
}

/// Reads an extension's derived artifacts.
pub(super) fn derived(
    store: &mut Store_,
    list: &WasmList<RawDerived>,
) -> wasmtime::Result<Vec<Derived>> {
    count(store, Limit::DerivedArtifacts, list.len())?;
    let mut items = Vec::with_capacity(list.len());
    for i in 0..list.len() {
        let raw = item(store, list, i)?;
        items.push(Derived {
            name: read_str(store, &raw.name)?,
            content_type: read_str(store, &raw.content_type)?,
            bytes: read_bytes(store, &raw.bytes)?,
        });
    }
    Ok(items)
}

/// A plugin-error's message, cut to a bounded length.
pub(super) fn error_message(store: &mut Store_, raw: &RawPluginError) -> wasmtime::Result<String> {
    let text = raw.message.to_str(store.as_context()).map_err(invalid)?;
    let mut cut = text.len().min(MAX_ERROR_MESSAGE);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Ok(text[..cut].to_owned())
}

/// Metadata entries, once their count was charged.
fn read_metadata(
    store: &mut Store_,
    list: &WasmList<(WasmStr, WasmStr)>,
) -> wasmtime::Result<Vec<(String, String)>> {
    let mut entries = Vec::with_capacity(list.len());
    for i in 0..list.len() {
        let (key, value) = item(store, list, i)?;
        entries.push((read_str(store, &key)?, read_str(store, &value)?));
    }
    Ok(entries)
}

/// Charges a count limit and the fixed per-entry cost of `n` entries.
fn count(store: &mut Store_, limit: Limit, n: usize) -> wasmtime::Result<()> {
    let n = n as u64;
    let state = store.data_mut();
    state.charge(limit, n)?;
    state.charge(Limit::OutputBytes, n.saturating_mul(OUTPUT_ENTRY_COST))
}

fn item<T: Lift + 'static>(
    store: &mut Store_,
    list: &WasmList<T>,
    i: usize,
) -> wasmtime::Result<T> {
    match list.get(store.as_context_mut(), i) {
        Some(Ok(item)) => Ok(item),
        Some(Err(e)) => Err(invalid(e)),
        None => {
            Err(GuestFault::new(CrashKind::InvalidResult, "list shorter than its length").into())
        }
    }
}

/// A string, charged to `output_bytes` before it is copied.
fn read_str(store: &mut Store_, s: &WasmStr) -> wasmtime::Result<String> {
    let (len, owned) = {
        let text = s.to_str(store.as_context()).map_err(invalid)?;
        let len = text.len() as u64;
        let fits = len <= store.data().left(Limit::OutputBytes);
        (len, fits.then(|| text.into_owned()))
    };
    // Traps when it does not fit, in which case nothing was copied.
    store.data_mut().charge(Limit::OutputBytes, len)?;
    owned.ok_or_else(|| wasmtime::Error::msg("output over budget"))
}

/// A byte list, charged to `output_bytes` before it is copied.
fn read_bytes(store: &mut Store_, list: &WasmList<u8>) -> wasmtime::Result<Bytes> {
    store
        .data_mut()
        .charge(Limit::OutputBytes, list.len() as u64)?;
    Ok(Bytes::copy_from_slice(list.as_le_slice(store.as_context())))
}

fn invalid(e: wasmtime::Error) -> wasmtime::Error {
    GuestFault::new(CrashKind::InvalidResult, format!("{e:#}")).into()
}
