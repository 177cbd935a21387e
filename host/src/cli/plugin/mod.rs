//! `airlock plugin …`: what a plugin author needs to start, build, test,
//! check and try a plugin locally, exactly as the service would run it.

mod build;
mod fixtures;
mod inspect;
mod project;
mod report;
mod run;
mod scaffold;
mod wit_docs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use airlock::budget::Budget;
use airlock::cache::{CachePolicy, MemoryBackend, PluginCache};
use airlock::runtime::{Plugin, PluginRuntime, RuntimeConfig, UploadInfo};

/// Plugin tools.
#[derive(Subcommand)]
pub enum PluginCommand {
    /// Start a plugin project in a new directory: source, budget, fixtures
    /// with their expected outcomes, a README; it builds with
    /// `airlock plugin build` and tests with `airlock plugin test`.
    New(scaffold::NewArgs),
    /// Build a plugin project into a component (`dist/<name>.wasm`), check
    /// it as the service would, and print its size, world and imports.
    Build(build::BuildArgs),
    /// Run a built plugin on every fixture under `fixtures/` and compare
    /// with the expected outcome beside it; exits non-zero on a mismatch.
    Test(fixtures::TestArgs),
    /// Report a component's world, imports and size; exits non-zero with the
    /// reason if Airlock would refuse it.
    Check {
        /// The component file.
        component: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a plugin once on a file, as the service would, and report its
    /// result and what it used. Exit codes: 0 accepted / ran, 2 rejected,
    /// 3 stopped over budget, 1 any other error.
    Run(Box<run::RunArgs>),
    /// Write the `airlock:plugin` reference (one Markdown page per
    /// interface, from the WIT's doc comments) into a directory.
    WitDocs(wit_docs::WitDocsArgs),
    /// Turn a core wasm module built with wit-bindgen into a component.
    Componentize {
        /// The core module (`.wasm` from `cargo build --target wasm32-…`).
        module: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Runs a plugin subcommand.
pub async fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginCommand::New(args) => scaffold::run(&args),
        PluginCommand::Build(args) => build::run(&args),
        PluginCommand::Test(args) => fixtures::run(&args).await,
        PluginCommand::WitDocs(args) => wit_docs::run(&args),
        PluginCommand::Check { component, json } => inspect::check(&component, json),
        PluginCommand::Run(args) => run::run(*args).await,
        PluginCommand::Componentize { module, output } => inspect::componentize(&module, &output),
    }
}

/// A runtime for one local run, roomy enough for `max_memory_bytes`.
fn runtime(max_memory_bytes: u64) -> anyhow::Result<PluginRuntime> {
    Ok(PluginRuntime::new(RuntimeConfig {
        max_instances: 4,
        max_memory_bytes: max_memory_bytes.max(RuntimeConfig::default().max_memory_bytes),
        compiled_cache_dir: compiled_cache_dir(),
        ..RuntimeConfig::default()
    })?)
}

/// Where the CLI keeps compiled components between runs, so trying a plugin
/// again does not recompile it: `$XDG_CACHE_HOME/airlock/compiled` or
/// `~/.cache/airlock/compiled`.
fn compiled_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("airlock").join("compiled"))
}

/// Loads `component` as plugin `name` under `budget`, with an in-memory
/// cache of its own, as the service would.
fn load_plugin(
    runtime: &PluginRuntime,
    name: &str,
    component: &Path,
    budget: Budget,
) -> anyhow::Result<Plugin> {
    let cache = PluginCache::new(
        Arc::new(MemoryBackend::new(64 << 20)),
        "airlock",
        name,
        CachePolicy::default(),
        Duration::from_millis(250),
    );
    runtime
        .load_file(name, component, budget, cache)
        .with_context(|| format!("refused {}", component.display()))
}

/// The upload a local run describes `input` as.
fn upload_for(
    input: &Path,
    content_type: Option<&str>,
    filename: Option<&str>,
    metadata: BTreeMap<String, String>,
) -> UploadInfo {
    UploadInfo {
        id: "local-run".into(),
        client: "cli".into(),
        filename: filename.map(str::to_string).unwrap_or_else(|| {
            input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        content_type: content_type
            .map(str::to_string)
            .unwrap_or_else(|| guess_content_type(input).into()),
        metadata,
        // Computed by the host if the plugin asks (`content.sha256`).
        sha256: String::new(),
    }
}

/// A budget from a TOML file with budget keys (`fuel`, `timeout_ms`, …);
/// keys it leaves out keep their defaults.
fn read_budget(path: &Path) -> anyhow::Result<Budget> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read budget file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid budget file {}", path.display()))
}

/// A plugin name made of a file name.
fn plugin_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "plugin".into()
    } else {
        name
    }
}

/// A content type from the file extension, as a browser would declare it.
fn guess_content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "json" => "application/json",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}
