//! The sandbox fuzzer, short and seeded: generated, stressed, mutated and
//! random components through `inspect`, `load` and one invocation each,
//! under a small budget (generator and oracle in `tests/fuzzgen/`). The
//! long-running form is `cargo bench -p airlock --bench fuzz -- --iterations N`.

#[path = "../fuzzgen/mod.rs"]
pub mod fuzzgen;

use airlock::budget::Budget;
use fuzzgen::oracle::{Oracle, TIME_BOUND_FUEL, budget};
use fuzzgen::{Generator, STRESS_KINDS, Scale, case_seed, stress_module};

use crate::common::plugin_path;

const RUN_SEED: u64 = 0xa1f0_c0de;
const CASES: u64 = 150;

/// Built plugins to mutate: the ones every checkout has.
const CORPUS: &[&str] = &[
    "trivial",
    "sha256",
    "content-sniff",
    "exif-strip",
    "panic",
    "memory-hog",
    "infinite-loop",
    "wasi-escape",
];

fn generator() -> Generator {
    let corpus = CORPUS
        .iter()
        .map(|name| {
            let bytes = std::fs::read(plugin_path(name)).unwrap();
            (name.to_string(), bytes)
        })
        .collect();
    Generator::new(corpus, Scale::QUICK)
}

#[test]
fn no_generated_or_mutated_component_gets_past_the_sandbox() {
    let generator = generator();
    let sentinel = generator.sentinel().unwrap();
    let mut oracle = Oracle::new(env!("CARGO_BIN_EXE_airlock").into()).unwrap();
    oracle.check_sentinel(&sentinel, 0);
    for i in 0..CASES {
        let case = generator.case(case_seed(RUN_SEED, i));
        oracle.run(&case);
        if i % 25 == 24 {
            oracle.check_sentinel(&sentinel, case.seed);
        }
    }
    // Spinning, in `run` and in a start function, with fuel to spare: the
    // wall-clock timeout must stop both, in time.
    for kind in ["spin", "start-loop"] {
        let case = generator.stress_case(kind, 1).unwrap();
        let budget = Budget {
            fuel: TIME_BOUND_FUEL,
            ..budget()
        };
        let summary = oracle.run_with(&case, budget);
        assert_eq!(
            summary.kind, "invoke: budget stop, timeout_ms",
            "{kind}: {}",
            summary.detail
        );
    }
    oracle.finish();
    let report = oracle.report();
    println!("{report}");
    assert!(oracle.stats.findings.is_empty(), "{report}");

    // The run reached what it is for: components that load and run, and
    // ones stopped by their budget or refused.
    let count = |prefix: &str| -> u64 {
        let counts = &oracle.stats.counts;
        counts
            .iter()
            .filter(|(kind, _)| kind.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    };
    assert!(count("load: ok") >= CASES / 4, "{report}");
    assert!(count("invoke: accepted") >= CASES / 10, "{report}");
    assert!(count("invoke: budget stop") >= 1, "{report}");
    assert!(count("load: refused") >= CASES / 4, "{report}");
}

#[test]
fn cases_are_reproducible_from_their_seed() {
    let generator = generator();
    for i in 0..50 {
        let seed = case_seed(RUN_SEED, i);
        let (a, b) = (generator.case(seed), generator.case(seed));
        assert_eq!((&a.source, &a.bytes), (&b.source, &b.bytes), "seed {seed}");
    }
}

#[test]
fn generated_modules_are_valid_for_the_engine() {
    // Smith and stress cases should reach the runtime, not stop at its
    // validator: the shell around them and the features they use must be
    // what wasmtime accepts.
    let generator = generator();
    let features = fuzzgen::engine_features();
    let mut generated = 0;
    for i in 0..300 {
        let case = generator.case(case_seed(RUN_SEED ^ 1, i));
        if case.is_generated() {
            generated += 1;
            let error = wasmparser::Validator::new_with_features(features)
                .validate_all(&case.bytes)
                .err();
            assert!(
                error.is_none(),
                "seed {} ({}): {error:?}",
                case.seed,
                case.source
            );
        }
    }
    assert!(generated >= 150, "{generated}");
    let mut rng = fuzzgen::Rng::new(7);
    for kind in STRESS_KINDS {
        for count in [1, 1_000] {
            let module = stress_module(kind, count, &mut rng).unwrap();
            let component = fuzzgen::embed(&module).unwrap();
            let error = wasmparser::Validator::new_with_features(features)
                .validate_all(&component)
                .err();
            assert!(error.is_none(), "{kind} x {count}: {error:?}");
        }
    }
}
