//! Airlock's integration tests: one binary, one module per topic.
//!
//! Real plugins come from `plugins/dist/`, built by `scripts/build-plugins.sh`
//! (the test command runs it first). Redis and the S3 server are real
//! processes on 127.0.0.1.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod harness;

mod budgets;
mod cli;
mod config;
mod containment;
mod faults;
mod hostile;
mod http_api;
mod incident;
mod isolation;
mod loading;
mod real_plugins;
mod s3_outage;
mod storage;
