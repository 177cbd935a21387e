//! Airlock: an upload service that runs third-party plugins as sandboxed
//! WebAssembly components under per-plugin budgets.
//!
//! - [`runtime`] loads components and invokes them under a [`budget::Budget`].
//! - [`cache`] is the capability plugins use for shared state.
//! - [`storage`] keeps uploads on local disk or S3.
//! - [`jobs`] is the durable queue of post-store work.
//! - [`upload`] is the pipeline; [`http`] the API; [`app`] wires them from
//!   a [`config::Config`].

pub mod admin;
pub mod app;
pub mod assemble;
pub mod auth;
pub mod budget;
pub mod cache;
pub mod config;
pub mod http;
pub mod jobs;
pub mod lock;
pub mod metrics;
pub mod resumable;
pub mod runtime;
pub mod storage;
pub mod supervisor;
pub mod text;
pub mod upload;

mod bindings;
