//! What a hook returns, read under the budget.
//!
//! wasmtime lifts a hook's result and then runs the guest's post-return
//! (which frees it), so the result must be copied during the call. That copy
//! is bounded *before* it happens by the store's hostcall fuel, which
//! [`copy_allowance`] derives from the budget (set when the guest returns;
//! see `invoke`): a result bigger than that stops the lift with nothing
//! allocated. What was lifted is then counted
//! against `metadata_entries` / `derived_artifacts` and charged to
//! `output_bytes` (+ [`OUTPUT_ENTRY_COST`] per entry).

use bytes::Bytes;

use super::host::HostState;
use super::outcome::{Derived, Verdict};
use crate::bindings::types;
use crate::budget::{Budget, Limit, OUTPUT_ENTRY_COST};
use crate::text::{escape_untrusted, one_line};

/// Longest plugin-error message kept (it goes to logs and responses).
const MAX_ERROR_MESSAGE: usize = 4 << 10;
/// What one lifted entry (a metadata pair, a derived record) costs the host
/// on top of its bytes: wasmtime charges the host-side size of each element.
const HOST_ENTRY_BYTES: u64 = 128;
/// Room for the fixed part of a result and for small host-call arguments.
const COPY_SLACK: u64 = 64 << 10;

/// Most bytes wasmtime may copy out of the guest when lifting the result of
/// an invocation under `budget`: its whole allowed result.
pub(super) fn copy_allowance(budget: &Budget) -> usize {
    let entries = budget
        .metadata_entries
        .saturating_add(budget.derived_artifacts)
        .saturating_mul(HOST_ENTRY_BYTES);
    let result = budget.output_bytes.saturating_add(entries);
    usize::try_from(result.saturating_add(COPY_SLACK)).unwrap_or(usize::MAX)
}

/// Counts and charges a processor's verdict.
pub(super) fn verdict(state: &mut HostState, verdict: types::Verdict) -> wasmtime::Result<Verdict> {
    Ok(match verdict {
        types::Verdict::Accept(metadata) => {
            charge_metadata(state, &metadata)?;
            Verdict::Accept { metadata }
        }
        types::Verdict::Reject(reason) => {
            state.charge(Limit::OutputBytes, reason.len() as u64)?;
            // Shown to the client and logged: one visible line.
            Verdict::Reject {
                reason: escape_untrusted(&reason),
            }
        }
        types::Verdict::Replace(r) => {
            charge_metadata(state, &r.metadata)?;
            let size = r.bytes.len() + r.content_type.len();
            state.charge(Limit::OutputBytes, size as u64)?;
            Verdict::Replace {
                bytes: Bytes::from(r.bytes),
                content_type: r.content_type,
                metadata: r.metadata,
            }
        }
    })
}

/// Counts and charges an extension's derived artifacts.
pub(super) fn derived(
    state: &mut HostState,
    items: Vec<types::Derived>,
) -> wasmtime::Result<Vec<Derived>> {
    charge_entries(state, Limit::DerivedArtifacts, items.len())?;
    let size: usize = items
        .iter()
        .map(|d| d.name.len() + d.content_type.len() + d.bytes.len())
        .sum();
    state.charge(Limit::OutputBytes, size as u64)?;
    Ok(items
        .into_iter()
        .map(|d| Derived {
            name: d.name,
            content_type: d.content_type,
            bytes: d.bytes.into(),
        })
        .collect())
}

/// A plugin-error's message, cut to a bounded length and made one visible
/// line (it is logged and may be shown to the client).
pub(super) fn error_message(error: types::PluginError) -> String {
    one_line(&error.message, MAX_ERROR_MESSAGE)
}

fn charge_metadata(state: &mut HostState, metadata: &[(String, String)]) -> wasmtime::Result<()> {
    charge_entries(state, Limit::MetadataEntries, metadata.len())?;
    let size: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    state.charge(Limit::OutputBytes, size as u64)
}

/// Charges a count limit and the fixed per-entry cost of `n` entries.
fn charge_entries(state: &mut HostState, limit: Limit, n: usize) -> wasmtime::Result<()> {
    let n = n as u64;
    state.charge(limit, n)?;
    state.charge(Limit::OutputBytes, n.saturating_mul(OUTPUT_ENTRY_COST))
}
