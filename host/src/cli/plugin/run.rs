//! `airlock plugin run`: one invocation on a file, with the budget from
//! a file and flags, reported as a table or JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::report::{print_report, report_json, write_outputs};
use super::{load_plugin, plugin_name, read_budget, runtime, upload_for};

use airlock::budget::{Budget, Limit};
use airlock::runtime::{FileContent, HookOutput, InvokeError, Verdict};

/// Exit code when the plugin rejected the input.
const EXIT_REJECTED: u8 = 2;
/// Exit code when the plugin was stopped for exceeding its budget.
const EXIT_OVER_BUDGET: u8 = 3;

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

fn load_budget(args: &RunArgs) -> anyhow::Result<Budget> {
    let mut budget = match &args.budget {
        Some(path) => read_budget(path)?,
        None => Budget::default(),
    };
    args.limits.apply(&mut budget);
    Ok(budget)
}

/// Runs the plugin once and reports.
pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let budget = load_budget(&args)?;
    let runtime = runtime(budget.memory_bytes)?;
    let name = plugin_name(&args.component);
    let plugin = load_plugin(&runtime, &name, &args.component, budget)?;
    let content = FileContent::open(&args.input)
        .with_context(|| format!("cannot read input {}", args.input.display()))?;
    let upload = upload_for(
        &args.input,
        args.content_type.as_deref(),
        None,
        Default::default(),
    );
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
