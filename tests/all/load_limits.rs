//! Loading is bounded: a component's shape is checked by a cheap pre-pass
//! before anything expensive runs on it, compilation runs in a child process
//! under CPU, memory and wall-clock limits, and a component that needs more
//! pooled core instances, memories or tables than one component may have is
//! refused at load.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use airlock::budget::Budget;
use airlock::runtime::{ComponentLimits, LoadError, PluginRuntime, RuntimeConfig};

use crate::common::*;
use crate::fuzz::fuzzgen::leb128;
use crate::inline::*;

/// A runtime of its own with `limits` and a 2 s CPU / 4 s wall compile jail.
fn runtime_with(limits: ComponentLimits) -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig {
        compiler_program: Some(compiler()),
        compiled_cache_dir: None,
        max_instances: 2,
        component_limits: limits,
        compile_cpu_seconds: 2,
        compile_timeout_ms: 4_000,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn assert_component_limit(result: Result<airlock::runtime::Plugin, LoadError>, key: &str) {
    match result {
        Err(LoadError::ComponentLimit {
            limit,
            found,
            allowed,
        }) => {
            assert_eq!(limit, key);
            assert!(found > allowed, "found {found}, allowed {allowed}");
        }
        other => panic!("expected {key} to be refused, got {:?}", other.err()),
    }
}

/// This process's peak resident memory since the last reset, in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Resets the peak resident memory to the current one (Linux 4.0+).
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[test]
fn a_deeply_nested_component_is_refused_by_the_pre_pass_at_once() {
    // 200 components each nested in the next, encoded by hand (the text
    // parser itself refuses this depth): a component is the header, and a
    // nested one is a component section (id 4) holding its whole encoding.
    const HEADER: &[u8] = b"\0asm\x0d\0\x01\0";
    let mut bytes = HEADER.to_vec();
    for _ in 1..200 {
        let mut outer = HEADER.to_vec();
        outer.push(4);
        leb128(&mut outer, bytes.len() as u64);
        outer.extend_from_slice(&bytes);
        bytes = outer;
    }
    assert_eq!(
        wasmparser::Parser::new(0)
            .parse_all(&bytes)
            .filter(|p| matches!(p, Ok(wasmparser::Payload::Version { .. })))
            .count(),
        200
    );
    // No compiled-component cache: this is the pre-pass on its own (see
    // `tightened_limits_apply_to_components_compiled_before` for the cache).
    let runtime = runtime_with(ComponentLimits::default());
    let started = Instant::now();
    let result = load_bytes_with(&runtime, &bytes, Budget::default());
    assert_component_limit(result, "max_nesting_depth");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

/// Locals and loop depth of [`slow_to_compile`]: well inside the pre-pass
/// limits (39 KB of wasm) and far past any sane compile budget. Measured on
/// the 2-core development machine, compiled without a jail: 36 s of CPU and
/// 1.7 GB resident.
const SLOW_LOCALS: u32 = 2_000;
const SLOW_DEPTH: u32 = 500;

/// A processor with one extra core module: one function with `locals` i64
/// locals inside `depth` nested loops, whose innermost body rewrites every
/// local and where each loop branches back to its header. Every local is
/// live, and changed, around every back-edge: SSA construction gives every
/// loop header one block parameter per local (`depth × locals` of them), and
/// register allocation then works on all of them at once. A few tens of KiB
/// of wasm that costs Cranelift most of a minute and gigabytes.
fn slow_to_compile(locals: u32, depth: u32) -> Vec<u8> {
    let mut body = String::new();
    for d in 0..depth {
        writeln!(body, "(loop $l{d}").unwrap();
    }
    for i in 0..locals {
        let next = (i + 1) % locals;
        writeln!(
            body,
            "(local.set {i} (i64.add (local.get {i}) (local.get {next})))"
        )
        .unwrap();
    }
    // Each loop repeats while a counter (local `locals`, the only i32) is
    // non-zero after a decrement: a trip count nothing can fold away.
    for d in (0..depth).rev() {
        writeln!(
            body,
            "(br_if $l{d} (local.tee {locals} (i32.sub (local.get {locals}) (i32.const 1)))))"
        )
        .unwrap();
    }
    let mut sum = String::from("(local.get 0)");
    for i in 1..locals {
        write!(sum, " (local.get {i}) i64.add").unwrap();
    }
    let module = format!(
        r#"(core module $slow
    (func (export "spin") (result i64)
      {i64s}
      (local i32)
      (local.set {locals} (i32.const 3))
      {body}
      {sum}))"#,
        i64s = "(local i64) ".repeat(locals as usize),
    );
    // Part of an otherwise valid processor, so that the only thing wrong
    // with it is what compiling it costs.
    Component {
        items: module,
        ..accepting_with_metadata(&[])
    }
    .bytes()
}

#[test]
fn a_component_cranelift_chokes_on_is_stopped_within_the_compile_limits() {
    let bytes = slow_to_compile(SLOW_LOCALS, SLOW_DEPTH);
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
    let runtime = runtime_with(ComponentLimits::default());
    reset_peak_rss();
    let before = peak_rss_bytes();
    let started = Instant::now();
    let result = load_bytes_with(&runtime, &bytes, Budget::default());
    let took = started.elapsed();
    match result {
        Err(LoadError::Compile { limit, allowed }) => {
            let expected = match limit {
                "compile_cpu_seconds" => 2,
                "compile_timeout_ms" => 4_000,
                "compile_memory_bytes" => RuntimeConfig::default().compile_memory_bytes,
                other => panic!("unknown compile limit {other}"),
            };
            assert_eq!(allowed, expected, "{limit}");
        }
        other => panic!("expected a compile limit, got {:?}", other.err()),
    }
    // The wall-clock limit is 4 s; allow for starting and reaping the child
    // on a busy machine.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    // Cranelift ran in the child: this process did not grow by anything like
    // what the compilation needed.
    let grew = peak_rss_bytes().saturating_sub(before);
    assert!(grew < 512 << 20, "the test process grew by {grew} bytes");
}

#[test]
fn the_service_stays_usable_after_a_compile_was_killed() {
    let runtime = runtime_with(ComponentLimits::default());
    let slow = slow_to_compile(SLOW_LOCALS, SLOW_DEPTH);
    assert!(matches!(
        load_bytes_with(&runtime, &slow, Budget::default()),
        Err(LoadError::Compile { .. })
    ));
    let good = std::fs::read(plugin_path("trivial")).unwrap();
    load_bytes_with(&runtime, &good, Budget::default()).unwrap();
}

#[test]
fn function_and_local_counts_over_their_limits_are_refused_naming_the_key() {
    let functions = |n: usize| {
        format!(
            "(component (core module {}))",
            "(func (result i32) (i32.const 1))".repeat(n)
        )
    };
    let locals = |n: usize| {
        format!(
            "(component (core module (func (result i32) {} (i32.const 1))))",
            "(local i32)".repeat(n)
        )
    };
    let cases: Vec<(ComponentLimits, String, &str)> = vec![
        (
            ComponentLimits {
                max_functions: 10,
                ..ComponentLimits::default()
            },
            functions(11),
            "max_functions",
        ),
        (
            ComponentLimits {
                max_locals_per_function: 100,
                ..ComponentLimits::default()
            },
            locals(101),
            "max_locals_per_function",
        ),
        (
            ComponentLimits {
                max_function_body_bytes: 1_000,
                ..ComponentLimits::default()
            },
            format!("(component (core module (func {} )))", "nop ".repeat(2_000)),
            "max_function_body_bytes",
        ),
        (
            ComponentLimits {
                max_modules: 3,
                ..ComponentLimits::default()
            },
            format!("(component {})", "(core module)".repeat(4)),
            "max_modules",
        ),
        (
            ComponentLimits {
                max_components: 2,
                ..ComponentLimits::default()
            },
            format!("(component {})", "(component)".repeat(5)),
            "max_components",
        ),
        (
            ComponentLimits {
                max_instances: 2,
                ..ComponentLimits::default()
            },
            format!(
                "(component (core module $m) {})",
                "(core instance (instantiate $m))".repeat(5)
            ),
            "max_instances",
        ),
        (
            ComponentLimits {
                max_types: 10,
                ..ComponentLimits::default()
            },
            format!(
                "(component (core module {}))",
                "(type (func (param i32)))".repeat(50)
            ),
            "max_types",
        ),
        (
            ComponentLimits {
                max_imports: 2,
                ..ComponentLimits::default()
            },
            format!(
                "(component (core module {}))",
                (0..10)
                    .map(|i| format!("(import \"env\" \"f{i}\" (func))"))
                    .collect::<String>()
            ),
            "max_imports",
        ),
        (
            ComponentLimits {
                max_exports: 2,
                ..ComponentLimits::default()
            },
            format!(
                "(component (core module (func $f) {}))",
                (0..10)
                    .map(|i| format!("(export \"f{i}\" (func $f))"))
                    .collect::<String>()
            ),
            "max_exports",
        ),
    ];
    for (limits, wat, key) in cases {
        let runtime = runtime_with(limits);
        let bytes = wat::parse_str(&wat).unwrap();
        assert_component_limit(load_bytes_with(&runtime, &bytes, Budget::default()), key);
        // `plugin check` goes through the same pre-pass.
        match runtime.inspect(&bytes) {
            Err(LoadError::ComponentLimit { limit, .. }) => assert_eq!(limit, key),
            other => panic!("inspect: expected {key}, got {other:?}"),
        }
    }
}

#[test]
fn real_plugins_pass_a_nesting_limit_of_two() {
    // A component made by `wasm-tools component new` nests its core modules
    // and a shim component one level deep: exactly the limit is allowed.
    let runtime = runtime_with(ComponentLimits {
        max_nesting_depth: 2,
        ..ComponentLimits::default()
    });
    let bytes = std::fs::read(plugin_path("trivial")).unwrap();
    load_bytes_with(&runtime, &bytes, Budget::default()).unwrap();
}

#[test]
fn tightened_limits_apply_to_components_compiled_before() {
    // A component compiled and cached under looser limits (or by a version
    // without the pre-pass) must not skip the pre-pass when it is loaded
    // again: the compiled cache is keyed by the bytes and the engine, not by
    // the limits, so the cheap check has to run before the cache is asked.
    let dir = tempfile::tempdir().unwrap();
    let with = |component_limits| {
        PluginRuntime::new(RuntimeConfig {
            compiler_program: Some(compiler()),
            compiled_cache_dir: Some(dir.path().to_path_buf()),
            max_instances: 2,
            component_limits,
            ..RuntimeConfig::default()
        })
        .unwrap()
    };
    let bytes = std::fs::read(plugin_path("trivial")).unwrap();
    load_bytes_with(&with(ComponentLimits::default()), &bytes, Budget::default()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "compiled and cached"
    );
    let tightened = with(ComponentLimits {
        max_functions: 10,
        ..ComponentLimits::default()
    });
    assert_component_limit(
        load_bytes_with(&tightened, &bytes, Budget::default()),
        "max_functions",
    );
    match tightened.inspect(&bytes) {
        Err(LoadError::ComponentLimit { limit, .. }) => assert_eq!(limit, "max_functions"),
        other => panic!("inspect: expected max_functions, got {other:?}"),
    }
}

/// A processor that also instantiates `count` copies of `module`.
fn with_instances_of(module: &str, count: usize) -> Component {
    let mut items = format!("(core module $extra {module})\n");
    for i in 0..count {
        writeln!(items, "(core instance $extra{i} (instantiate $extra))").unwrap();
    }
    Component {
        items,
        ..accepting_with_metadata(&[])
    }
}

#[tokio::test]
async fn components_over_the_pool_caps_are_refused_at_load() {
    // The control: a handful of each runs.
    let fine = with_instances_of("(memory 1) (table 1 funcref)", 3);
    let ok = invoke(
        &fine.load(roomy()),
        "image/png",
        fixture_bytes("picture.png"),
    )
    .await;
    assert!(ok.outcome.is_ok(), "{:?}", ok.outcome);

    let defaults = RuntimeConfig::default();
    for (what, key, component) in [
        // The component's own memory instance and main module are two more
        // core instances, and the memory instance one more memory.
        (
            "core instances",
            "max_core_instances_per_component",
            with_instances_of("", defaults.max_core_instances_per_component as usize - 1),
        ),
        (
            "memories",
            "max_memories_per_component",
            with_instances_of("(memory 1)", defaults.max_memories_per_component as usize),
        ),
        (
            "tables",
            "max_tables_per_component",
            with_instances_of(
                "(table 1 funcref)",
                defaults.max_tables_per_component as usize + 1,
            ),
        ),
    ] {
        match component.try_load(roomy()) {
            Err(LoadError::PoolLimit {
                limit,
                found,
                allowed,
            }) => {
                assert_eq!(limit, key, "too many {what}");
                assert_eq!(found, allowed + 1, "too many {what}");
            }
            Err(other) => panic!("too many {what}: refused for the wrong reason: {other}"),
            Ok(_) => panic!("too many {what}: loaded"),
        }
    }
}

#[test]
fn a_memory_or_table_declared_larger_than_the_pool_is_refused_naming_the_key() {
    let defaults = RuntimeConfig::default();
    // 20,000 pages = 1.22 GiB, over max_memory_bytes (1 GiB).
    for (module, key, allowed) in [
        (
            "(memory 20000)",
            "max_memory_bytes",
            defaults.max_memory_bytes,
        ),
        (
            "(table 5000000 funcref)",
            "max_table_elements",
            defaults.max_table_elements,
        ),
    ] {
        match with_instances_of(module, 1).try_load(roomy()) {
            Err(LoadError::PoolLimit {
                limit, allowed: a, ..
            }) => assert_eq!((limit, a), (key, allowed), "{module}"),
            other => panic!("{module}: {:?}", other.err()),
        }
    }
}

#[test]
fn a_core_instance_with_too_much_state_is_refused_naming_the_key() {
    // Found by the fuzzer: 70,000 globals need more per-instance state than
    // the pool's slots hold.
    let globals = "(global i64 (i64.const 0))\n".repeat(70_000);
    match with_instances_of(&globals, 1).try_load(roomy()) {
        Err(LoadError::PoolLimit { limit, allowed, .. }) => assert_eq!(
            (limit, allowed),
            (
                "max_core_instance_bytes",
                RuntimeConfig::default().max_core_instance_bytes
            )
        ),
        other => panic!("{:?}", other.err()),
    }
}
