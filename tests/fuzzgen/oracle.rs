//! The sandbox fuzzer's oracle, after wasmtime's `crates/fuzzing/src/oracles.rs`:
//! every case goes through `inspect` (what `airlock plugin check` runs),
//! `load` and, when it loads, one invocation under a small budget, and the
//! host must survive it within bounds. One case in four runs with fuel to
//! spare, so that the wall-clock timeout is what stops it.
//!
//! Invariants (a broken one is a [`Finding`]):
//!
//! - nothing panics;
//! - `inspect` and `load` agree (both accept, or both refuse for the same
//!   reason);
//! - no component makes the compile jail fail (`LoadError::Jail`, the host's
//!   own failure), and an invocation is never `InvokeError::Host`: whatever
//!   a component does, the outcome is the plugin's (refused, accepted,
//!   stopped by a budget, crashed, failed, invalid output);
//! - its wall time (`report.wall_time_ms`, and as measured here) stays
//!   within `timeout_ms` + [`WALL_SLACK_MS`];
//! - every usage counter of the report (fuel, peak memory, table elements,
//!   cache calls and bytes, read bytes, output bytes, log lines, metadata
//!   entries, derived artifacts) stays within its allowance, but for the one
//!   a budget stop names;
//! - a generated module that ran to the end held no more linear memory, nor
//!   table elements, at instantiation than the budget grants (its memories'
//!   and tables' initial sizes, summed over the component), and the report
//!   counts at least that much;
//! - a generated module in the shell that ran to the end returned the
//!   shell's `ok(accept([]))`;
//! - the process's resident memory stays under [`RSS_LIMIT_BYTES`];
//! - a known-good component still loads and runs after any number of cases.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::budget::{Budget, Limit};
use airlock::cache::{CacheBackend, CachePolicy, MemoryBackend, PluginCache};
use airlock::runtime::{
    ContentSource, HookOutput, InvokeError, LoadError, PluginRuntime, RuntimeConfig, UploadInfo,
    Verdict,
};
use bytes::Bytes;

use super::Case;

/// Slack on top of `timeout_ms` before an invocation counts as overlong.
pub const WALL_SLACK_MS: f64 = 250.0;
/// Bound on the fuzzing process's resident memory.
pub const RSS_LIMIT_BYTES: u64 = 1 << 30;

/// The small budget cases run under.
pub fn budget() -> Budget {
    Budget {
        fuel: 10_000_000,
        timeout_ms: 500,
        memory_bytes: 16 << 20,
        ..Budget::default()
    }
}

/// Fuel for one case in four: more than 500 ms of wasm can burn, so that
/// the wall-clock timeout (epoch interruption, host-call deadlines) is what
/// stops a spinning case.
pub const TIME_BOUND_FUEL: u64 = 50_000_000_000;

/// The budget of the case with `seed`: [`budget`], or one time in four the
/// same with [`TIME_BOUND_FUEL`].
pub fn budget_for(seed: u64) -> Budget {
    let mut budget = budget();
    if super::Rng::new(seed ^ 0x7157_b0d6_e7ba_11ce).chance(1, 4) {
        budget.fuel = TIME_BOUND_FUEL;
    }
    budget
}

/// The runtime the fuzzer drives: like the service's, with a small pool and
/// compilation in the `airlock` executable's compile jail.
pub fn runtime_config(compiler_program: PathBuf) -> RuntimeConfig {
    RuntimeConfig {
        compiled_cache_dir: None,
        max_instances: 4,
        compiler_program: Some(compiler_program),
        ..RuntimeConfig::default()
    }
}

/// A broken invariant.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The case's seed (replays it).
    pub seed: u64,
    /// How the case was made.
    pub source: String,
    /// What went wrong, with the exact error.
    pub what: String,
}

/// What happened to one case.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The outcome's kind, as counted.
    pub kind: String,
    /// The refusal or the invocation's outcome, in full.
    pub detail: String,
    /// Time spent in `inspect` + `load`, in ms.
    pub load_ms: f64,
    /// Wall time of the invocation, if it loaded.
    pub wall_ms: Option<f64>,
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Stats {
    /// Cases run.
    pub cases: u64,
    /// Outcomes by kind: `load: …` for what loading said, `invoke: …` for
    /// what the invocation of a loaded case returned.
    pub counts: BTreeMap<String, u64>,
    /// Per case source (`smith`, `stress:locals`, `mutate:sha256`…):
    /// (cases, loaded).
    pub by_source: BTreeMap<String, (u64, u64)>,
    /// Longest invocation, in ms, and its seed.
    pub max_wall_ms: (f64, u64),
    /// Longest `inspect` + `load`, in ms, and its seed.
    pub max_load_ms: (f64, u64),
    /// Largest VmRSS seen after a case, in bytes.
    pub max_rss_bytes: u64,
    /// VmHWM (peak resident memory) at the end, in bytes.
    pub peak_rss_bytes: u64,
    /// Broken invariants.
    pub findings: Vec<Finding>,
    /// Time spent.
    pub elapsed: Duration,
}

/// Drives cases through the runtime and checks the invariants.
pub struct Oracle {
    runtime: PluginRuntime,
    tokio: tokio::runtime::Runtime,
    backend: Arc<dyn CacheBackend>,
    budget: Budget,
    started: Instant,
    /// What the run saw so far.
    pub stats: Stats,
}

impl Oracle {
    /// An oracle whose runtime compiles in `compiler_program` (the `airlock`
    /// executable).
    pub fn new(compiler_program: PathBuf) -> Result<Self, String> {
        if !compiler_program.is_file() {
            return Err(format!(
                "{} is missing: build it first (cargo build -p airlock)",
                compiler_program.display()
            ));
        }
        let runtime =
            PluginRuntime::new(runtime_config(compiler_program)).map_err(|e| e.to_string())?;
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            runtime,
            tokio,
            backend: Arc::new(MemoryBackend::new(16 << 20)),
            budget: budget(),
            started: Instant::now(),
            stats: Stats::default(),
        })
    }

    /// Runs one case under [`budget_for`] its seed, checks every
    /// invariant, and says what happened.
    pub fn run(&mut self, case: &Case) -> Summary {
        self.run_with(case, budget_for(case.seed))
    }

    /// Runs one case under `budget`, checks every invariant, and says what
    /// happened.
    pub fn run_with(&mut self, case: &Case, budget: Budget) -> Summary {
        self.stats.cases += 1;
        let source = case.source.clone();
        self.stats.by_source.entry(source.clone()).or_default().0 += 1;

        let load_started = Instant::now();
        let inspected = catch_unwind(AssertUnwindSafe(|| self.runtime.inspect(&case.bytes)));
        let cache = PluginCache::new(
            Arc::clone(&self.backend),
            "fuzz",
            "fuzz",
            CachePolicy::default(),
            Duration::from_millis(200),
        );
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            self.runtime.load("fuzz", &case.bytes, budget, cache)
        }));
        let load_ms = load_started.elapsed().as_secs_f64() * 1000.0;
        if load_ms > self.stats.max_load_ms.0 {
            self.stats.max_load_ms = (load_ms, case.seed);
        }
        let (inspected, loaded) = match (inspected, loaded) {
            (Ok(i), Ok(l)) => (i, l),
            (Err(panic), _) => return self.panicked(case, "inspect", &*panic, load_ms),
            (_, Err(panic)) => return self.panicked(case, "load", &*panic, load_ms),
        };
        let inspect_kind = inspected.as_ref().err().map(load_error_kind);
        let load_kind = loaded.as_ref().err().map(load_error_kind);
        if inspect_kind != load_kind {
            self.find(
                case,
                format!(
                    "inspect and load disagree: inspect {}, load {}",
                    describe(inspected.as_ref().err()),
                    describe(loaded.as_ref().err())
                ),
            );
        }
        let plugin = match loaded {
            Ok(plugin) => plugin,
            Err(e) => {
                let kind = format!("load: refused, {}", load_error_kind(&e));
                if kind.ends_with("Jail") {
                    // The jail failing is the host's failure, not a refusal
                    // of the component: a component must not cause it.
                    self.find(case, format!("load failed as a host error: {e}"));
                }
                self.count(kind.clone());
                self.sample_rss(case);
                return Summary {
                    kind,
                    detail: e.to_string(),
                    load_ms,
                    wall_ms: None,
                };
            }
        };
        self.count("load: ok".into());
        self.stats.by_source.entry(source).or_default().1 += 1;

        let upload = UploadInfo {
            id: format!("fuzz-{:016x}", case.seed),
            client: "fuzz".into(),
            filename: "fuzz.bin".into(),
            content_type: "application/octet-stream".into(),
            metadata: [("origin".into(), "fuzz".into())].into(),
            sha256: String::new(),
        };
        let content: Arc<dyn ContentSource> =
            Arc::new(Bytes::from(super::Rng::new(case.seed).bytes(4096)));
        let invoke_started = Instant::now();
        let invocation = catch_unwind(AssertUnwindSafe(|| {
            self.tokio.block_on(plugin.invoke(&upload, content))
        }));
        let measured_ms = invoke_started.elapsed().as_secs_f64() * 1000.0;
        let invocation = match invocation {
            Ok(invocation) => invocation,
            Err(panic) => return self.panicked(case, "invoke", &*panic, load_ms),
        };
        let report = &invocation.report;
        let wall_ms = report.wall_time_ms.max(measured_ms);
        if wall_ms > self.stats.max_wall_ms.0 {
            self.stats.max_wall_ms = (wall_ms, case.seed);
        }
        let limit_ms = budget.timeout_ms as f64 + WALL_SLACK_MS;
        if wall_ms > limit_ms {
            self.find(
                case,
                format!(
                    "invocation took {wall_ms:.0} ms (report {:.0} ms), over timeout_ms {} + {WALL_SLACK_MS} ms; outcome {:?}",
                    report.wall_time_ms, budget.timeout_ms, invocation.outcome
                ),
            );
        }
        // Every counter within its allowance, except the one a budget stop
        // names (it may record what was asked for).
        let usage = &report.usage;
        let stopped = invocation
            .outcome
            .as_ref()
            .err()
            .and_then(InvokeError::limit);
        // Time is checked against the wall clock apart, with its slack.
        let counters = Limit::ALL
            .into_iter()
            .filter(|limit| *limit != Limit::Timeout)
            .map(|limit| (limit, report.used(limit).unwrap_or(0)));
        for (limit, used) in counters {
            let allowed = limit.allowed_in(&budget);
            if used > allowed && stopped != Some(limit) {
                self.find(
                    case,
                    format!(
                        "used {used} of {limit}, allowed {allowed}, yet the outcome is {:?}",
                        invocation.outcome
                    ),
                );
            }
        }
        let kind = format!("invoke: {}", outcome_kind(&invocation.outcome));
        self.count(kind.clone());
        match &invocation.outcome {
            Err(e @ InvokeError::Host { .. }) => {
                self.find(case, format!("invocation ended as a host error: {e}"));
            }
            Ok(output) => {
                if let Some(fp) = case.footprint {
                    if !matches!(output, HookOutput::Verdict(Verdict::Accept { metadata }) if metadata.is_empty())
                    {
                        self.find(
                            case,
                            format!("the shell returned {output:?}, not ok(accept([]))"),
                        );
                    }
                    // What the instance held at instantiation is a lower
                    // bound of what the host must have counted.
                    if usage.peak_memory_bytes < fp.memory_bytes {
                        self.find(
                            case,
                            format!(
                                "peak_memory_bytes reported {} below the {} bytes of linear memory the component held at instantiation",
                                usage.peak_memory_bytes, fp.memory_bytes
                            ),
                        );
                    }
                    if usage.table_elements < fp.table_elements {
                        self.find(
                            case,
                            format!(
                                "table_elements reported {} below the {} elements the component held at instantiation",
                                usage.table_elements, fp.table_elements
                            ),
                        );
                    }
                    if fp.memory_bytes > budget.memory_bytes {
                        self.find(
                            case,
                            format!(
                                "ran to the end holding {} bytes of linear memory ({} memories of its own) over memory_bytes {}; peak_memory_bytes reported {}",
                                fp.memory_bytes,
                                fp.memories,
                                budget.memory_bytes,
                                report.usage.peak_memory_bytes
                            ),
                        );
                    }
                    if fp.table_elements > budget.table_elements {
                        self.find(
                            case,
                            format!(
                                "ran to the end holding {} table elements ({} tables of its own) over table_elements {}",
                                fp.table_elements, fp.tables, budget.table_elements
                            ),
                        );
                    }
                }
            }
            Err(_) => {}
        }
        drop(plugin);
        self.sample_rss(case);
        Summary {
            kind,
            detail: format!("{:?}", invocation.outcome),
            load_ms,
            wall_ms: Some(wall_ms),
        }
    }

    /// Loads and invokes a known-good component: the runtime must still
    /// serve after everything it ran (no leaked instance slot, no poisoned
    /// state). `after` is the seed of the last case.
    pub fn check_sentinel(&mut self, bytes: &[u8], after: u64) {
        let cache = PluginCache::new(
            Arc::clone(&self.backend),
            "fuzz",
            "sentinel",
            CachePolicy::default(),
            Duration::from_millis(200),
        );
        let sentinel = Case {
            seed: after,
            source: "sentinel".into(),
            bytes: Vec::new(),
            footprint: None,
        };
        let plugin = match self.runtime.load("sentinel", bytes, self.budget, cache) {
            Ok(plugin) => plugin,
            Err(e) => {
                return self.find(&sentinel, format!("the sentinel no longer loads: {e}"));
            }
        };
        let content: Arc<dyn ContentSource> = Arc::new(Bytes::from_static(b"sentinel"));
        let upload = UploadInfo {
            id: "sentinel".into(),
            ..UploadInfo::default()
        };
        let invocation = self.tokio.block_on(plugin.invoke(&upload, content));
        if !matches!(
            invocation.outcome,
            Ok(HookOutput::Verdict(Verdict::Accept { .. }))
        ) {
            self.find(
                &sentinel,
                format!("the sentinel no longer runs: {:?}", invocation.outcome),
            );
        }
    }

    /// Closes the run: the peak RSS and the time spent.
    pub fn finish(&mut self) {
        self.stats.elapsed = self.started.elapsed();
        if let Some((_, hwm)) = rss() {
            self.stats.peak_rss_bytes = hwm;
        }
    }

    /// The run's figures as a table.
    pub fn report(&self) -> String {
        let s = &self.stats;
        let mut out = String::new();
        let secs = s.elapsed.as_secs_f64().max(1e-9);
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{} cases in {:.1} s ({:.1} cases/s); budget: fuel {} (one case in four: {}), timeout {} ms, memory {} MiB",
            s.cases,
            secs,
            s.cases as f64 / secs,
            self.budget.fuel,
            TIME_BOUND_FUEL,
            self.budget.timeout_ms,
            self.budget.memory_bytes >> 20
        );
        let _ = writeln!(out, "\n{:>7}  outcome", "count");
        for (kind, n) in &s.counts {
            let _ = writeln!(out, "{n:>7}  {kind}");
        }
        let _ = writeln!(out, "\n{:>7} {:>7}  source", "cases", "loaded");
        for (source, (n, loaded)) in &s.by_source {
            let _ = writeln!(out, "{n:>7} {loaded:>7}  {source}");
        }
        let _ = writeln!(
            out,
            "\nmax invocation wall time: {:.1} ms (seed {}; limit {} + {WALL_SLACK_MS} ms)",
            s.max_wall_ms.0, s.max_wall_ms.1, self.budget.timeout_ms
        );
        let _ = writeln!(
            out,
            "max inspect + load time: {:.1} ms (seed {})",
            s.max_load_ms.0, s.max_load_ms.1
        );
        let _ = writeln!(
            out,
            "max RSS after a case: {:.1} MiB; peak RSS (VmHWM): {:.1} MiB; limit {} MiB",
            s.max_rss_bytes as f64 / (1 << 20) as f64,
            s.peak_rss_bytes as f64 / (1 << 20) as f64,
            RSS_LIMIT_BYTES >> 20
        );
        let _ = writeln!(out, "findings: {}", s.findings.len());
        for f in &s.findings {
            let _ = writeln!(out, "  seed {} ({}): {}", f.seed, f.source, f.what);
        }
        out
    }

    fn count(&mut self, kind: String) {
        *self.stats.counts.entry(kind).or_default() += 1;
    }

    fn find(&mut self, case: &Case, what: String) {
        self.count("FINDING".into());
        self.stats.findings.push(Finding {
            seed: case.seed,
            source: case.source.clone(),
            what,
        });
    }

    fn panicked(
        &mut self,
        case: &Case,
        during: &str,
        panic: &(dyn std::any::Any + Send),
        load_ms: f64,
    ) -> Summary {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        self.find(case, format!("panic in {during}: {message}"));
        self.sample_rss(case);
        Summary {
            kind: format!("PANIC in {during}"),
            detail: message,
            load_ms,
            wall_ms: None,
        }
    }

    fn sample_rss(&mut self, case: &Case) {
        let Some((rss, _)) = rss() else { return };
        self.stats.max_rss_bytes = self.stats.max_rss_bytes.max(rss);
        let already = self
            .stats
            .findings
            .iter()
            .any(|f| f.what.starts_with("RSS"));
        if rss > RSS_LIMIT_BYTES && !already {
            self.find(
                case,
                format!("RSS {} MiB over {} MiB", rss >> 20, RSS_LIMIT_BYTES >> 20),
            );
        }
    }
}

/// A refusal's kind: the variant name, plus the limit it names if any
/// (from `Debug`, so new variants are counted without a change here).
pub fn load_error_kind(e: &LoadError) -> String {
    let debug = format!("{e:?}");
    let name: String = debug
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    match debug.split_once("limit: \"") {
        Some((_, rest)) => {
            let limit: String = rest.chars().take_while(|c| *c != '"').collect();
            format!("{name} {limit}")
        }
        None => name,
    }
}

fn describe(e: Option<&LoadError>) -> String {
    match e {
        None => "accepts".into(),
        Some(e) => format!("refuses ({e})"),
    }
}

/// An invocation outcome's kind.
pub fn outcome_kind(outcome: &Result<HookOutput, InvokeError>) -> String {
    match outcome {
        Ok(HookOutput::Verdict(Verdict::Accept { .. })) => "accepted".into(),
        Ok(HookOutput::Verdict(Verdict::Reject { .. })) => "rejected".into(),
        Ok(HookOutput::Verdict(Verdict::Replace { .. })) => "replaced".into(),
        Ok(HookOutput::Derived(_)) => "derived".into(),
        Err(InvokeError::BudgetExceeded { limit, .. }) => format!("budget stop, {limit}"),
        Err(InvokeError::Crashed { crash, .. }) => format!("crash, {crash:?}"),
        Err(InvokeError::Failed { .. }) => "failed".into(),
        Err(InvokeError::InvalidOutput { .. }) => "invalid output".into(),
        Err(InvokeError::Host { .. }) => "HOST ERROR".into(),
    }
}

/// (VmRSS, VmHWM) of this process, in bytes.
pub fn rss() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib << 10)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
