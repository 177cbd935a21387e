//! The sandbox fuzzer, long-running: as many seeded cases as asked for
//! (generated, stressed, mutated and random components; see
//! `tests/fuzzgen/`), each through `inspect`, `load` and one invocation under
//! a small budget, then the outcome counts, the longest invocation and the
//! largest resident memory. Exits 1 if any invariant broke, listing the seeds.
//!
//! Needs the plugins built (`scripts/build-plugins.sh`), which it mutates:
//!
//! ```sh
//! cargo bench -p airlock --bench fuzz -- --iterations 2000 [--seed S]
//! cargo bench -p airlock --bench fuzz -- --case SEED [--save DIR]   # replay one case
//! ```
//!
//! `--quick` draws cases at the integration test's scale; `--verbose` prints
//! every case; `--save DIR` writes the bytes of every case with a finding
//! (or of the replayed case) to `DIR/<seed>.wasm`.

#![allow(missing_docs)]

#[path = "../../tests/fuzzgen/mod.rs"]
mod fuzzgen;

use std::path::PathBuf;
use std::process::ExitCode;

use fuzzgen::oracle::Oracle;
use fuzzgen::{Case, Generator, Scale, case_seed};

struct Args {
    iterations: u64,
    seed: u64,
    case: Option<u64>,
    save: Option<PathBuf>,
    scale: Scale,
    verbose: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        iterations: 500,
        seed: 0xa1f0_c0de,
        case: None,
        save: None,
        scale: Scale::FULL,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    let number = |flag: &str, value: Option<String>| -> Result<u64, String> {
        let value = value.ok_or(format!("{flag} needs a value"))?;
        match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => value.parse(),
        }
        .map_err(|e| format!("{flag} {value}: {e}"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--iterations" | "-n" => args.iterations = number(&arg, it.next())?,
            "--seed" => args.seed = number(&arg, it.next())?,
            "--case" => args.case = Some(number(&arg, it.next())?),
            "--save" => args.save = Some(it.next().ok_or("--save needs a directory")?.into()),
            "--quick" => args.scale = Scale::QUICK,
            "--verbose" | "-v" => args.verbose = true,
            // What `cargo bench` adds for harness-less targets.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// The `airlock` executable, whose compile jail the runtime uses: the one
/// cargo built for this bench, else the one beside it.
fn airlock_exe() -> Result<PathBuf, String> {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_airlock"));
    if built.is_file() {
        return Ok(built);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("airlock")));
    match beside {
        Some(path) if path.is_file() => Ok(path),
        _ => Err(format!(
            "the airlock executable is missing ({}): build it with `cargo build --release -p airlock`",
            built.display()
        )),
    }
}

/// Every built plugin, to mutate.
fn corpus() -> Result<Vec<(String, Vec<u8>)>, String> {
    let dir = std::env::var_os("AIRLOCK_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist"));
    let mut corpus = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        format!(
            "{}: {e}; build the plugins with scripts/build-plugins.sh",
            dir.display()
        )
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            corpus.push((name, bytes));
        }
    }
    corpus.sort();
    if corpus.is_empty() {
        return Err(format!(
            "no plugins in {}: build them with scripts/build-plugins.sh",
            dir.display()
        ));
    }
    Ok(corpus)
}

fn save(dir: &Option<PathBuf>, case: &Case) {
    if let Some(dir) = dir {
        let path = dir.join(format!("{}.wasm", case.seed));
        let written =
            std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, &case.bytes));
        match written {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}

fn run() -> Result<bool, String> {
    let args = parse_args()?;
    let generator = Generator::new(corpus()?, args.scale);
    let sentinel = generator.sentinel()?;
    let mut oracle = Oracle::new(airlock_exe()?)?;

    if let Some(seed) = args.case {
        let case = generator.case(seed);
        println!(
            "case {seed}: {} ({} bytes){}",
            case.source,
            case.bytes.len(),
            case.footprint
                .map(|fp| format!(", {fp:?}"))
                .unwrap_or_default()
        );
        save(&args.save, &case);
        let summary = oracle.run(&case);
        println!(
            "{}: {}; load {:.0} ms{}",
            summary.kind,
            summary.detail,
            summary.load_ms,
            summary
                .wall_ms
                .map(|ms| format!(", invoke {ms:.1} ms"))
                .unwrap_or_default()
        );
        oracle.finish();
        println!("{}", oracle.report());
        return Ok(oracle.stats.findings.is_empty());
    }

    println!(
        "fuzzing {} cases from seed {:#x} (replay one with --case SEED)",
        args.iterations, args.seed
    );
    oracle.check_sentinel(&sentinel, 0);
    let mut findings = 0;
    for i in 0..args.iterations {
        let case = generator.case(case_seed(args.seed, i));
        let summary = oracle.run(&case);
        if args.verbose {
            eprintln!(
                "case {i} seed {} {} ({} bytes): {}; load {:.0} ms{}",
                case.seed,
                case.source,
                case.bytes.len(),
                summary.kind,
                summary.load_ms,
                summary
                    .wall_ms
                    .map(|ms| format!(", invoke {ms:.1} ms"))
                    .unwrap_or_default()
            );
        }
        if oracle.stats.findings.len() > findings {
            findings = oracle.stats.findings.len();
            if let Some(f) = oracle.stats.findings.last() {
                eprintln!("finding: seed {} ({}): {}", f.seed, f.source, f.what);
            }
            save(&args.save, &case);
        }
        if i % 100 == 99 {
            oracle.check_sentinel(&sentinel, case.seed);
            let stats = &oracle.stats;
            eprintln!(
                "{} cases, max wall {:.0} ms, max RSS {} MiB, {} findings",
                stats.cases,
                stats.max_wall_ms.0,
                stats.max_rss_bytes >> 20,
                stats.findings.len()
            );
        }
    }
    oracle.check_sentinel(&sentinel, case_seed(args.seed, args.iterations));
    oracle.finish();
    println!("{}", oracle.report());
    Ok(oracle.stats.findings.is_empty())
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fuzz: {e}");
            ExitCode::from(2)
        }
    }
}
