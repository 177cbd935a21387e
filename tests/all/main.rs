//! Airlock's integration tests: one binary, one module per topic.
//!
//! Real plugins come from `plugins/dist/`, built by `scripts/build-plugins.sh`
//! (the test command runs it first). Redis and the S3 server are real
//! processes on 127.0.0.1.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;
mod harness;
mod inline;
mod served;
// Shared with the incident bench, which runs every scenario.
#[allow(dead_code)]
#[path = "../loadgen/mod.rs"]
mod loadgen;

mod authoring;
mod browser;
mod budgets;
mod bursts;
mod cache_refusals;
mod check_is_load;
mod cli;
mod config;
mod containment;
mod cors;
mod delete_race;
mod durable_post_store;
mod fault_taxonomy;
mod faults;
mod fuzz;
mod hostile;
mod http_api;
mod http_errors;
mod incident;
mod isolation;
mod jobs;
mod layers;
mod load_limits;
mod loading;
mod locks;
mod log_forging;
mod openapi;
mod orphan_sweep;
mod output_limits;
mod pages;
mod real_plugins;
mod s3_outage;
mod single_flight;
mod slow_clients;
mod staging;
mod storage;
mod summed_limits;
mod tus;
mod tus_clients;
mod versions;
mod wit_reference;
