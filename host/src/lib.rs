//! Airlock: an upload service that runs third-party plugins as sandboxed
//! WebAssembly components under per-plugin budgets.
//!
//! - [`runtime`] loads components and invokes them under a [`budget::Budget`].
//! - [`cache`] is the capability plugins use for shared state.

pub mod budget;
pub mod cache;
pub mod runtime;

mod bindings;
