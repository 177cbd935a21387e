//! `airlock plugin …`: what a plugin author needs to build, check and try a
//! plugin locally, exactly as the service would run it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::report::{print_report, report_json, write_outputs};

use airlock::budget::{Budget, Limit};
use airlock::cache::{CachePolicy, MemoryBackend, PluginCache};
use airlock::runtime::{
    FileContent, HookOutput, InvokeError, PluginRuntime, RuntimeConfig, UploadInfo, Verdict,
};

/// Exit code when the plugin rejected the input.
const EXIT_REJECTED: u8 = 2;
/// Exit code when the plugin was stopped for exceeding its budget.
const EXIT_OVER_BUDGET: u8 = 3;

/// Plugin tools.
#[derive(Subcommand)]
pub enum PluginCommand {
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
    Run(Box<RunArgs>),
    /// Turn a core wasm module built with wit-bindgen into a component.
    Componentize {
        /// The core module (`.wasm` from `cargo build --target wasm32-…`).
        module: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// `airlock plugin run` arguments.
#[derive(Args)]
pub struct RunArgs {
    /// The component file.
    component: PathBuf,
    /// The file to feed it, as an upload.
    input: PathBuf,
    /// Declared content type (default: guessed from the file extension).
    #[arg(long)]
    content_type: Option<String>,
    /// A TOML file with budget keys (fuel, timeout_ms, …); flags override it.
    #[arg(long)]
    budget: Option<PathBuf>,
    /// Write replacement content and derived artifacts into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    limits: LimitFlags,
}

/// Budget overrides: one `--<key>` flag per limit (`--cache-calls` for
/// `cache_calls`), made from [`Limit::ALL`].
struct LimitFlags(Vec<(Limit, u64)>);

impl LimitFlags {
    fn apply(&self, budget: &mut Budget) {
        for &(limit, value) in &self.0 {
            *limit.allowance(budget) = value;
        }
    }

    /// The flag of each limit and its value name (`timeout-ms`,
    /// `TIMEOUT_MS`), in the order of [`Limit::ALL`]. clap keeps names as
    /// `&'static str`; these are made once per process.
    fn names() -> &'static [(String, String)] {
        static NAMES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
        NAMES.get_or_init(|| {
            Limit::ALL
                .iter()
                .map(|limit| {
                    let key = limit.key();
                    (key.replace('_', "-"), key.to_ascii_uppercase())
                })
                .collect()
        })
    }
}

impl clap::FromArgMatches for LimitFlags {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Self(Vec::new());
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for limit in Limit::ALL {
            if let Some(&value) = matches.get_one::<u64>(limit.key()) {
                self.0.retain(|(set, _)| *set != limit);
                self.0.push((limit, value));
            }
        }
        Ok(())
    }
}

impl Args for LimitFlags {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Limit::ALL
            .iter()
            .zip(Self::names())
            .fold(cmd, |cmd, (limit, (flag, value_name))| {
                cmd.arg(
                    clap::Arg::new(limit.key())
                        .long(flag.as_str())
                        .value_name(value_name.as_str())
                        .value_parser(clap::value_parser!(u64))
                        .help(limit.description()),
                )
            })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// Runs a plugin subcommand.
pub async fn run(cmd: PluginCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginCommand::Check { component, json } => check(&component, json),
        PluginCommand::Run(args) => run_once(*args).await,
        PluginCommand::Componentize { module, output } => componentize(&module, &output),
    }
}

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

fn check(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let info = match runtime(0)?.inspect(&bytes) {
        Ok(info) => info,
        Err(e) => {
            // With its causes, if it has any (a jail that could not run).
            let e = format!("{:#}", anyhow::Error::new(e));
            if json {
                println!("{}", serde_json::json!({ "ok": false, "error": e }));
            } else {
                eprintln!("refused: {}: {e}", path.display());
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    if json {
        println!("{}", serde_json::json!({ "ok": true, "component": info }));
    } else {
        println!("{}: ok", path.display());
        println!("  world:   {}", info.world.world());
        println!("  size:    {} bytes", info.size);
        println!("  sha256:  {}", info.sha256);
        println!("  imports: {}", info.imports.join(", "));
        println!("  exports: {}", info.exports.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn componentize(module: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .with_context(|| format!("cannot make a component of {}", module.display()))?;
    std::fs::write(output, &component)
        .with_context(|| format!("cannot write {}", output.display()))?;
    println!("{} ({} bytes)", output.display(), component.len());
    Ok(ExitCode::SUCCESS)
}

fn load_budget(args: &RunArgs) -> anyhow::Result<Budget> {
    let mut budget = match &args.budget {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read budget file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("invalid budget file {}", path.display()))?
        }
        None => Budget::default(),
    };
    args.limits.apply(&mut budget);
    Ok(budget)
}

async fn run_once(args: RunArgs) -> anyhow::Result<ExitCode> {
    let budget = load_budget(&args)?;
    let runtime = runtime(budget.memory_bytes)?;
    let name = plugin_name(&args.component);
    let cache = PluginCache::new(
        Arc::new(MemoryBackend::new(64 << 20)),
        "airlock",
        &name,
        CachePolicy::default(),
        Duration::from_millis(250),
    );
    let plugin = runtime
        .load_file(&name, &args.component, budget, cache)
        .with_context(|| format!("refused {}", args.component.display()))?;
    let content = FileContent::open(&args.input)
        .with_context(|| format!("cannot read input {}", args.input.display()))?;
    let upload = UploadInfo {
        id: "local-run".into(),
        client: "cli".into(),
        filename: args
            .input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        content_type: args
            .content_type
            .clone()
            .unwrap_or_else(|| guess_content_type(&args.input).into()),
        metadata: Default::default(),
        // Computed by the host if the plugin asks (`content.sha256`).
        sha256: String::new(),
    };
    let invocation = plugin.invoke(&upload, Arc::new(content)).await;
    if let (Some(dir), Ok(output)) = (&args.out, &invocation.outcome) {
        write_outputs(dir, output)?;
    }
    let code = match &invocation.outcome {
        Ok(HookOutput::Verdict(Verdict::Reject { .. })) => ExitCode::from(EXIT_REJECTED),
        Ok(_) => ExitCode::SUCCESS,
        Err(InvokeError::BudgetExceeded { .. }) => ExitCode::from(EXIT_OVER_BUDGET),
        Err(_) => ExitCode::FAILURE,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report_json(&name, &plugin, &invocation))?
        );
    } else {
        print_report(&name, &plugin, &invocation);
    }
    Ok(code)
}

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
