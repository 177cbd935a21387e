//! `airlock plugin test`: a built plugin run on every fixture of its
//! project, under the project's budget, each compared with the expected
//! outcome written beside it (`fixtures/<file>.toml`). Like Shopify's
//! function-runner, with Airlock's budget report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::project::Project;
use super::{load_plugin, read_budget, runtime, upload_for};
use airlock::runtime::{FileContent, HookOutput, Invocation, InvokeError, Verdict};

/// `airlock plugin test` arguments.
#[derive(Args)]
pub struct TestArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Print the results as JSON (for CI).
    #[arg(long)]
    json: bool,
}

/// What a fixture's `.toml` expects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// What the plugin must do.
    outcome: Outcome,
    /// The upload's declared content type (default: from the extension).
    content_type: Option<String>,
    /// The upload's file name (default: the fixture's).
    filename: Option<String>,
    /// Metadata the client sent with the upload.
    #[serde(default)]
    upload_metadata: BTreeMap<String, String>,
    /// Entries the verdict must carry (`"*"`: any value).
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// Text the rejection reason or the error must contain.
    reason: Option<String>,
    /// Names of artifacts an extension must derive.
    #[serde(default)]
    derived: Vec<String>,
    /// For `over-budget`: the limit (`fuel`, `timeout_ms`, …).
    limit: Option<String>,
    /// Ceilings on what the invocation may use.
    #[serde(default)]
    max: Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    Accept,
    Reject,
    Replace,
    Derived,
    Failed,
    OverBudget,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Max {
    fuel: Option<u64>,
    wall_ms: Option<f64>,
    memory_bytes: Option<u64>,
    cache_calls: Option<u64>,
    read_bytes: Option<u64>,
}

/// One fixture's result.
#[derive(Debug, Serialize)]
struct Case {
    fixture: String,
    expected: Outcome,
    got: String,
    fuel: Option<u64>,
    wall_ms: f64,
    memory_bytes: u64,
    cache_calls: u64,
    /// Every way the result differs from the expectation; empty: passed.
    problems: Vec<String>,
}

/// Runs every fixture; exits 1 when any case fails.
pub(super) async fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let project = Project::open(&args.dir)?;
    let component = project.component();
    if !component.is_file() {
        bail!(
            "{} is not built yet: run `airlock plugin build` first",
            component.display()
        );
    }
    let budget = if project.budget().is_file() {
        read_budget(&project.budget())?
    } else {
        airlock::budget::Budget::default()
    };
    let runtime = runtime(budget.memory_bytes)?;
    let plugin = load_plugin(&runtime, &project.name, &component, budget)?;
    let fixtures = fixtures(&project.fixtures())?;
    if fixtures.is_empty() {
        bail!(
            "no fixtures in {}: add a file and, beside it, <file>.toml with its expected outcome",
            project.fixtures().display()
        );
    }
    let mut cases = Vec::with_capacity(fixtures.len());
    for (input, expect_path) in fixtures {
        let text = std::fs::read_to_string(&expect_path)
            .with_context(|| format!("cannot read {}", expect_path.display()))?;
        let expect: Expect = toml::from_str(&text)
            .with_context(|| format!("invalid expectation {}", expect_path.display()))?;
        let content = FileContent::open(&input)
            .with_context(|| format!("cannot read fixture {}", input.display()))?;
        let upload = upload_for(
            &input,
            expect.content_type.as_deref(),
            expect.filename.as_deref(),
            expect.upload_metadata.clone(),
        );
        let invocation = plugin.invoke(&upload, Arc::new(content)).await;
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        cases.push(judge(name, &expect, &invocation));
    }
    let failed = cases.iter().filter(|c| !c.problems.is_empty()).count();
    if args.json {
        let report = serde_json::json!({
            "plugin": project.name,
            "component": component,
            "budget": budget,
            "passed": cases.len() - failed,
            "failed": failed,
            "cases": cases,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&project.name, &cases);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The fixtures in `dir` (every file but the `.toml`s and hidden files),
/// each with its expectation; a fixture without one is an error, not a
/// skipped case.
fn fixtures(dir: &Path) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden || !path.is_file() || path.extension().is_some_and(|e| e == "toml") {
            continue;
        }
        let mut expect = path.clone().into_os_string();
        expect.push(".toml");
        let expect = PathBuf::from(expect);
        if !expect.is_file() {
            bail!(
                "fixture {} has no {} saying what to expect",
                path.display(),
                expect.display()
            );
        }
        found.push((path, expect));
    }
    found.sort();
    Ok(found)
}

/// Compares an invocation with what was expected of it.
fn judge(fixture: String, expect: &Expect, invocation: &Invocation) -> Case {
    let mut problems = Vec::new();
    let (got, metadata, text, derived, limit) = match &invocation.outcome {
        Ok(HookOutput::Verdict(Verdict::Accept { metadata })) => {
            (Outcome::Accept, metadata.as_slice(), None, Vec::new(), None)
        }
        Ok(HookOutput::Verdict(Verdict::Reject { reason })) => (
            Outcome::Reject,
            &[][..],
            Some(reason.clone()),
            Vec::new(),
            None,
        ),
        Ok(HookOutput::Verdict(Verdict::Replace { metadata, .. })) => (
            Outcome::Replace,
            metadata.as_slice(),
            None,
            Vec::new(),
            None,
        ),
        Ok(HookOutput::Derived(items)) => (
            Outcome::Derived,
            &[][..],
            None,
            items.iter().map(|d| d.name.clone()).collect(),
            None,
        ),
        Err(InvokeError::BudgetExceeded { limit, .. }) => (
            Outcome::OverBudget,
            &[][..],
            invocation.outcome.as_ref().err().map(ToString::to_string),
            Vec::new(),
            Some(limit.key()),
        ),
        Err(e) => (
            Outcome::Failed,
            &[][..],
            Some(e.to_string()),
            Vec::new(),
            None,
        ),
    };
    let described = match (&got, &text) {
        (Outcome::Accept | Outcome::Replace | Outcome::Derived, _) | (_, None) => {
            kebab(got).to_string()
        }
        (_, Some(text)) => format!("{}: {text}", kebab(got)),
    };
    if got != expect.outcome {
        problems.push(format!(
            "expected {}, got {described}",
            kebab(expect.outcome)
        ));
    }
    for (key, want) in &expect.metadata {
        match metadata.iter().find(|(k, _)| k == key) {
            None => problems.push(format!("no metadata '{key}'")),
            Some((_, value)) if want != "*" && value != want => {
                problems.push(format!("metadata '{key}' is '{value}', expected '{want}'"))
            }
            Some(_) => {}
        }
    }
    if let Some(reason) = &expect.reason
        && !text.as_deref().is_some_and(|t| t.contains(reason.as_str()))
    {
        problems.push(format!("the reason does not contain '{reason}'"));
    }
    for name in &expect.derived {
        if !derived.contains(name) {
            problems.push(format!("no derived artifact '{name}'"));
        }
    }
    if let Some(want) = &expect.limit
        && limit != Some(want.as_str())
    {
        problems.push(format!("not stopped by its {want} limit"));
    }
    let report = &invocation.report;
    let usage = &report.usage;
    let mut over = |what: &str, used: f64, max: Option<f64>| {
        if let Some(max) = max
            && used > max
        {
            problems.push(format!("{what} {used} over the fixture's max {max}"));
        }
    };
    over(
        "fuel",
        report.fuel_used.unwrap_or(0) as f64,
        expect.max.fuel.map(|v| v as f64),
    );
    over("wall_ms", report.wall_time_ms, expect.max.wall_ms);
    over(
        "memory_bytes",
        usage.peak_memory_bytes as f64,
        expect.max.memory_bytes.map(|v| v as f64),
    );
    over(
        "cache_calls",
        usage.cache_calls as f64,
        expect.max.cache_calls.map(|v| v as f64),
    );
    over(
        "read_bytes",
        usage.read_bytes as f64,
        expect.max.read_bytes.map(|v| v as f64),
    );
    Case {
        fixture,
        expected: expect.outcome,
        got: described,
        fuel: report.fuel_used,
        wall_ms: report.wall_time_ms,
        memory_bytes: usage.peak_memory_bytes,
        cache_calls: usage.cache_calls,
        problems,
    }
}

fn kebab(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Accept => "accept",
        Outcome::Reject => "reject",
        Outcome::Replace => "replace",
        Outcome::Derived => "derived",
        Outcome::Failed => "failed",
        Outcome::OverBudget => "over-budget",
    }
}

fn print_table(plugin: &str, cases: &[Case]) {
    println!(
        "{:<24} {:<12} {:>12} {:>9} {:>10} {:>6}  result",
        "fixture", "expected", "fuel", "wall ms", "memory", "cache"
    );
    for case in cases {
        let verdict = if case.problems.is_empty() {
            "ok".to_string()
        } else {
            format!("FAIL: {}", case.problems.join("; "))
        };
        println!(
            "{:<24} {:<12} {:>12} {:>9.2} {:>10} {:>6}  {verdict}",
            case.fixture,
            kebab(case.expected),
            case.fuel.map_or_else(|| "-".into(), |f| f.to_string()),
            case.wall_ms,
            case.memory_bytes,
            case.cache_calls,
        );
    }
    let failed = cases.iter().filter(|c| !c.problems.is_empty()).count();
    println!("{plugin}: {} passed, {failed} failed", cases.len() - failed);
}
