//! Seeded case generator for the sandbox fuzzer, shared by the integration
//! test (`tests/all/fuzz.rs`) and the long-running bench
//! (`host/benches/fuzz.rs`), after wasmtime's `crates/fuzzing` generators.
//!
//! Every case comes from one `u64` seed, so a finding is replayed from its
//! seed alone. A case is one of:
//!
//! - **smith** (half the cases): a wasm-smith core module (limits drawn per
//!   case, some far above the host's: several memories and tables, big
//!   tables and memories, many functions, globals and instructions, deep
//!   nesting) that exports `run: [] -> []` and may import the memory, table,
//!   content handle and lowered host functions of the fixed `processor`
//!   shell (`shell.wat`), embedded in that shell;
//! - **stress**: a hand-shaped module in the same shell that spends one
//!   resource as far as a count allows (`STRESS_KINDS`: locals, nesting,
//!   `br_table`, functions, globals, data, elements, parameters, body size,
//!   recursion, memory and table growth, a spinning `run` or start
//!   function, host calls in a loop);
//! - **mutate**: a real component (a built plugin, or a smith case) with
//!   bytes flipped, inserted, deleted, overwritten or cut, or a smith module
//!   mutated inside an intact shell;
//! - **random**: random bytes, or random sections, after a component header.

#![allow(dead_code)]

pub mod oracle;

use std::ops::RangeInclusive;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};

/// The shell component's text.
const SHELL_WAT: &str = include_str!("shell.wat");
/// The shell's placeholder for the generated module.
const PLACEHOLDER_WAT: &str = r#"(module (func (export "run")))"#;
/// What the generated module may import: exactly what the shell's `$host`
/// core instance exports, with the same types.
const AVAILABLE_IMPORTS_WAT: &str = r#"(module
    (import "host" "memory" (memory 1))
    (import "host" "table" (table 4 funcref))
    (import "host" "handle" (global (mut i32)))
    (import "host" "nop" (func))
    (import "host" "log" (func (param i32 i32 i32)))
    (import "host" "content-size" (func (param i32) (result i64)))
    (import "host" "content-read" (func (param i32 i64 i32 i32)))
    (import "host" "cache-get" (func (param i32 i32 i32)))
    (import "host" "cache-set" (func (param i32 i32 i32 i32 i32 i32)))
    (import "host" "drop-content" (func (param i32)))
)"#;
/// What the generated module must export.
const EXPORTS_WAT: &str = r#"(module (func (export "run")))"#;
/// Component binary header: `\0asm`, version 0x0d, layer 1.
pub const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\0\x01\0";
/// Section id of a core module inside a component.
const CORE_MODULE_SECTION: u8 = 1;
/// Bytes of linear memory the shell itself holds (the `$env` memory).
pub const SHELL_MEMORY_BYTES: u64 = 64 << 10;
/// Table elements the shell itself holds (the `$env` table).
pub const SHELL_TABLE_ELEMENTS: u64 = 4;

/// SplitMix64: small, seedable, good enough to drive `Unstructured`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `range`.
    pub fn in_range(&mut self, range: RangeInclusive<u64>) -> u64 {
        let (lo, hi) = (*range.start(), *range.end());
        lo + self.below(hi - lo + 1)
    }

    /// True `num` times in `den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Log-uniform in `1..=max`: small counts often, big ones regularly.
    pub fn log_uniform(&mut self, max: u64) -> u64 {
        let bits = 64 - max.max(1).leading_zeros();
        let bit = self.below(u64::from(bits));
        ((1 << bit) + self.below(1 << bit)).clamp(1, max.max(1))
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The seed of case `index` of a run seeded with `run_seed`.
pub fn case_seed(run_seed: u64, index: u64) -> u64 {
    Rng::new(run_seed ^ index.wrapping_mul(0xa076_1d64_78bd_642f)).next_u64()
}

/// What a generated module holds at instantiation, before running any code:
/// the oracle compares it with the budget.
#[derive(Debug, Clone, Copy, Default)]
pub struct Footprint {
    /// Linear memory of the whole component at instantiation, in bytes.
    pub memory_bytes: u64,
    /// Table elements of the whole component at instantiation.
    pub table_elements: u64,
    /// Memories the generated module defines.
    pub memories: u32,
    /// Tables the generated module defines.
    pub tables: u32,
    /// Functions the generated module defines.
    pub funcs: u32,
}

/// One fuzz case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Replays this case.
    pub seed: u64,
    /// How it was made: `smith`, `stress:<kind>`, `mutate:<base>`,
    /// `mutate:module`, `random`, `random-sections`.
    pub source: String,
    /// The component bytes (or garbage).
    pub bytes: Vec<u8>,
    /// For smith and stress cases, what the module holds at instantiation.
    pub footprint: Option<Footprint>,
}

impl Case {
    /// Whether the bytes are a smith or stress module in the shell,
    /// unmodified.
    pub fn is_generated(&self) -> bool {
        self.footprint.is_some()
    }
}

/// How big generated cases may get.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Bytes of randomness wasm-smith gets per module at most (bounds the
    /// module's size).
    pub max_input: usize,
    /// Largest count a stress module uses (locals, functions, globals,
    /// table elements, nesting depth, `br_table` targets…).
    pub max_count: u64,
}

impl Scale {
    /// For the seeded integration test: cases that compile quickly in a
    /// debug build.
    pub const QUICK: Scale = Scale {
        max_input: 16 << 10,
        max_count: 2_000,
    };
    /// For the long-running command: past every limit the host has.
    pub const FULL: Scale = Scale {
        max_input: 256 << 10,
        max_count: 200_000,
    };
}

/// Makes cases from seeds.
pub struct Generator {
    corpus: Vec<(String, Vec<u8>)>,
    scale: Scale,
}

impl Generator {
    /// A generator that mutates `corpus` (name, component bytes) besides
    /// making modules, with cases up to `scale`.
    pub fn new(corpus: Vec<(String, Vec<u8>)>, scale: Scale) -> Self {
        Self { corpus, scale }
    }

    /// The case for `seed`.
    pub fn case(&self, seed: u64) -> Case {
        let mut rng = Rng::new(seed);
        let roll = rng.below(100);
        let (source, bytes, footprint) = if roll < 50 {
            match self.smith(&mut rng) {
                Ok((bytes, footprint)) => ("smith".to_string(), bytes, Some(footprint)),
                // wasm-smith gave up (too little input): fall back to bytes.
                Err(_) => ("random".to_string(), random_bytes(&mut rng), None),
            }
        } else if roll < 62 {
            let kind = *rng.pick(STRESS_KINDS);
            let count = rng.log_uniform(self.scale.max_count);
            match stress_module(kind, count, &mut rng)
                .and_then(|m| Ok((embed(&m)?, footprint(&m)?)))
            {
                Ok((bytes, footprint)) => (format!("stress:{kind}"), bytes, Some(footprint)),
                Err(_) => ("random".to_string(), random_bytes(&mut rng), None),
            }
        } else if roll < 90 {
            let (source, bytes) = self.mutated(&mut rng);
            (source, bytes, None)
        } else if roll < 95 {
            ("random".to_string(), random_bytes(&mut rng), None)
        } else {
            (
                "random-sections".to_string(),
                random_sections(&mut rng),
                None,
            )
        };
        Case {
            seed,
            source,
            bytes,
            footprint,
        }
    }

    /// The stress case of `kind` sized `count` (see `stress_module`), with
    /// seed 0: for checks that need one particular case.
    pub fn stress_case(&self, kind: &str, count: u64) -> Result<Case, String> {
        let module = stress_module(kind, count, &mut Rng::new(0))?;
        Ok(Case {
            seed: 0,
            source: format!("stress:{kind}"),
            bytes: embed(&module)?,
            footprint: Some(footprint(&module)?),
        })
    }

    /// A known-good component: the shell around an empty `run`. The oracle
    /// invokes it now and then to check the runtime still serves.
    pub fn sentinel(&self) -> Result<Vec<u8>, String> {
        Ok(shell()?.bytes.clone())
    }

    /// A mutated component: a built plugin (two times in three), a smith
    /// case, or a smith case whose core module alone was mutated (the shell
    /// around it stays intact, and now and then the module stays valid).
    fn mutated(&self, rng: &mut Rng) -> (String, Vec<u8>) {
        let roll = rng.below(6);
        if !self.corpus.is_empty() && roll < 4 {
            let (name, bytes) = rng.pick(&self.corpus);
            return (format!("mutate:{name}"), mutate(rng, bytes.clone(), 1..=8));
        }
        let Ok(module) = self.smith_module(rng) else {
            return ("random".into(), random_bytes(rng));
        };
        if roll == 4 {
            let component = embed(&module).unwrap_or_default();
            return ("mutate:smith".into(), mutate(rng, component, 1..=8));
        }
        let module = mutate(rng, module, 1..=2);
        match embed(&module) {
            Ok(component) => ("mutate:module".into(), component),
            Err(_) => ("random".into(), random_bytes(rng)),
        }
    }

    /// A wasm-smith module in the shell, and its footprint.
    ///
    /// Without its `gc` cargo feature wasmtime refuses `externref`, which
    /// wasm-smith uses freely once reference types are on: a module the
    /// engine would refuse is drawn again without reference types, so that
    /// smith cases reach the runtime instead of its validator.
    fn smith(&self, rng: &mut Rng) -> Result<(Vec<u8>, Footprint), String> {
        let module = self.smith_module(rng)?;
        Ok((embed(&module)?, footprint(&module)?))
    }

    /// A wasm-smith module the engine accepts (see `smith`).
    fn smith_module(&self, rng: &mut Rng) -> Result<Vec<u8>, String> {
        let mut last_error = String::new();
        for attempt in 0..3 {
            let mut config = smith_config(rng, self.scale)?;
            if attempt > 0 {
                config.reference_types_enabled = false;
                config.max_tables = config.max_tables.min(1);
                config.min_tables = config.min_tables.min(1);
            }
            let len = match rng.below(100) {
                0..70 => rng.in_range(256..=4096),
                70..95 => rng.in_range(4096..=32 << 10),
                _ => rng.in_range(32 << 10..=self.scale.max_input as u64 * 2),
            }
            .min(self.scale.max_input as u64) as usize;
            let data = rng.bytes(len);
            let mut u = Unstructured::new(&data);
            // wasm-smith asserts on some corners of its configuration: such a
            // draw is given up like one that ran out of input.
            let module = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                wasm_smith::Module::new(config, &mut u)
            })) {
                Ok(Ok(module)) => module.to_bytes(),
                Ok(Err(e)) => {
                    last_error = e.to_string();
                    continue;
                }
                Err(_) => {
                    last_error = "wasm-smith panicked".into();
                    continue;
                }
            };
            match wasmparser::Validator::new_with_features(engine_features()).validate_all(&module)
            {
                Ok(_) => return Ok(module),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(last_error)
    }
}

/// A wasm-smith configuration drawn the way wasmtime's fuzzing does it
/// (`Config::arbitrary`, then features pinned to what the host's engine
/// supports), with some limits raised to go past the host's own.
fn smith_config(rng: &mut Rng, scale: Scale) -> Result<wasm_smith::Config, String> {
    let seed = rng.bytes(1024);
    let mut u = Unstructured::new(&seed);
    let mut config = wasm_smith::Config::arbitrary(&mut u).map_err(|e| e.to_string())?;
    let templates = templates()?;
    config.available_imports = Some(templates.imports.clone());
    config.exports = Some(templates.exports.clone());

    // wasmtime 48 with the host's cargo features: no GC (so no exceptions),
    // no threads; memory64, custom page sizes and wide arithmetic are left
    // out as the host has no use for them.
    config.gc_enabled = false;
    config.exceptions_enabled = false;
    config.threads_enabled = false;
    config.shared_everything_threads_enabled = false;
    config.custom_descriptors_enabled = false;
    config.memory64_enabled = false;
    config.custom_page_sizes_enabled = false;
    config.wide_arithmetic_enabled = false;
    config.disallow_traps = rng.chance(1, 2);
    config.canonicalize_nans = false;

    // One memory and table, as a compiled Rust plugin has (more below).
    config.max_memories = 1;
    config.max_tables = 1;
    config.max_memory32_bytes = *rng.pick(&[1 << 20, 16 << 20, 64 << 20, 1 << 30, 1 << 32]);
    config.max_table_elements = *rng.pick(&[1_000, 20_000, 100_000, 1_000_000, 10_000_000]);
    config.max_imports = config.max_imports.max(16);
    // Left alone, wasm-smith makes a handful of each item (it keeps adding
    // one while a coin says so). One case in four asks for many: minimums
    // as well as maximums, bounded by the input length.
    if rng.chance(1, 4) {
        let big = |rng: &mut Rng| rng.log_uniform(scale.max_count) as usize;
        // Imports and the required export count against the maximums, and
        // wasm-smith gives up when a minimum cannot be met: leave room.
        const ROOM: usize = 16;
        config.min_funcs = big(rng);
        config.max_funcs = config.max_funcs.max(config.min_funcs + ROOM);
        config.min_globals = big(rng);
        config.max_globals = config.max_globals.max(config.min_globals + ROOM);
        config.min_types = big(rng).min(1_000);
        config.max_types = config.max_types.max(config.min_types + ROOM);
        config.min_element_segments = big(rng).min(10_000);
        config.max_element_segments = config
            .max_element_segments
            .max(config.min_element_segments + ROOM);
        config.min_data_segments = big(rng).min(10_000);
        config.max_data_segments = config
            .max_data_segments
            .max(config.min_data_segments + ROOM);
        // (No `min_elements`: wasm-smith asserts it is below each table's
        // size.)
        config.max_elements = config.max_elements.max(big(rng));
        config.max_instructions = big(rng).max(config.max_instructions);
        config.max_nesting_depth = rng.in_range(10..=500) as usize;
        config.max_type_size = 1_000_000;
    }
    // Several memories and tables now and then: past the pool's
    // per-module limits. (One more allowed for the imported one.)
    if rng.chance(1, 8) {
        config.min_memories = rng.in_range(2..=4) as u32;
        config.max_memories = config.min_memories as usize + 1;
    }
    if config.reference_types_enabled && rng.chance(1, 8) {
        config.min_tables = rng.in_range(2..=4) as u32;
        config.max_tables = config.min_tables as usize + 1;
    }
    Ok(config)
}

/// The core wasm features of the host's engine: wasmtime 48's defaults
/// without its `gc` and `threads` cargo features.
pub fn engine_features() -> wasmparser::WasmFeatures {
    use wasmparser::WasmFeatures;
    (WasmFeatures::WASM3 | WasmFeatures::COMPONENT_MODEL)
        & !(WasmFeatures::GC_TYPES | WasmFeatures::EXCEPTIONS | WasmFeatures::THREADS)
}

/// wasm-smith's templates, encoded once.
struct Templates {
    /// What the generated module may import.
    imports: Vec<u8>,
    /// What it must export.
    exports: Vec<u8>,
}

fn templates() -> Result<&'static Templates, String> {
    static TEMPLATES: OnceLock<Result<Templates, String>> = OnceLock::new();
    TEMPLATES
        .get_or_init(|| {
            Ok(Templates {
                imports: wat::parse_str(AVAILABLE_IMPORTS_WAT).map_err(|e| e.to_string())?,
                exports: wat::parse_str(EXPORTS_WAT).map_err(|e| e.to_string())?,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The shell, encoded once, and where its placeholder module sits.
struct Shell {
    bytes: Vec<u8>,
    /// Byte range of the placeholder's whole section (id, size, payload).
    placeholder: std::ops::Range<usize>,
}

fn shell() -> Result<&'static Shell, String> {
    static SHELL: OnceLock<Result<Shell, String>> = OnceLock::new();
    SHELL
        .get_or_init(|| {
            let bytes = wat::parse_str(SHELL_WAT).map_err(|e| format!("shell.wat: {e}"))?;
            let placeholder = wat::parse_str(PLACEHOLDER_WAT).map_err(|e| e.to_string())?;
            let range = sections(&bytes)?
                .into_iter()
                // The placeholder as embedded also has a name section.
                .find(|s| {
                    s.id == CORE_MODULE_SECTION
                        && bytes[s.payload.clone()].starts_with(&placeholder)
                })
                .map(|s| s.whole)
                .ok_or("shell.wat: placeholder module not found")?;
            Ok(Shell {
                bytes,
                placeholder: range,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The shell with `module` in place of its placeholder.
pub fn embed(module: &[u8]) -> Result<Vec<u8>, String> {
    let shell = shell()?;
    let mut out = Vec::with_capacity(shell.bytes.len() + module.len() + 8);
    out.extend_from_slice(&shell.bytes[..shell.placeholder.start]);
    out.push(CORE_MODULE_SECTION);
    leb128(&mut out, module.len() as u64);
    out.extend_from_slice(module);
    out.extend_from_slice(&shell.bytes[shell.placeholder.end..]);
    Ok(out)
}

struct Section {
    id: u8,
    whole: std::ops::Range<usize>,
    payload: std::ops::Range<usize>,
}

/// The top-level sections of a well-formed component or module.
fn sections(bytes: &[u8]) -> Result<Vec<Section>, String> {
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < bytes.len() {
        let start = pos;
        let id = bytes[pos];
        pos += 1;
        let (size, n) = read_leb128(&bytes[pos..]).ok_or("bad section size")?;
        pos += n;
        let end = pos
            .checked_add(size as usize)
            .filter(|&end| end <= bytes.len())
            .ok_or("section past the end")?;
        out.push(Section {
            id,
            whole: start..end,
            payload: pos..end,
        });
        pos = end;
    }
    Ok(out)
}

/// Appends `value` as unsigned LEB128 (how wasm encodes sizes and counts).
pub fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// What `module` (plus the shell) holds at instantiation.
fn footprint(module: &[u8]) -> Result<Footprint, String> {
    use wasmparser::{Parser, Payload};
    let mut fp = Footprint {
        memory_bytes: SHELL_MEMORY_BYTES,
        table_elements: SHELL_TABLE_ELEMENTS,
        ..Footprint::default()
    };
    for payload in Parser::new(0).parse_all(module) {
        match payload.map_err(|e| e.to_string())? {
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(|e| e.to_string())?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    fp.memory_bytes = fp
                        .memory_bytes
                        .saturating_add(memory.initial.saturating_mul(page));
                    fp.memories += 1;
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(|e| e.to_string())?;
                    fp.table_elements = fp.table_elements.saturating_add(table.ty.initial);
                    fp.tables += 1;
                }
            }
            Payload::FunctionSection(reader) => fp.funcs = reader.count(),
            _ => {}
        }
    }
    Ok(fp)
}

/// `times` mutations of `bytes`: bit flips, overwrites with boundary
/// values, inserted and deleted runs, duplicated chunks, a truncation.
fn mutate(rng: &mut Rng, mut bytes: Vec<u8>, times: RangeInclusive<u64>) -> Vec<u8> {
    const INTERESTING: &[u8] = &[0x00, 0x01, 0x7f, 0x80, 0xff, 0x0d, 0x40, 0x60, 0x70];
    for _ in 0..rng.in_range(times) {
        let len = bytes.len() as u64;
        // Keep the header most of the time so the parser gets further.
        let at = if len > 8 && rng.chance(15, 16) {
            rng.in_range(8..=len - 1) as usize
        } else {
            rng.below(len.max(1)) as usize
        };
        match rng.below(7) {
            0 if len > 0 => bytes[at] ^= 1 << rng.below(8),
            1 if len > 0 => bytes[at] = *rng.pick(INTERESTING),
            2 => {
                let n = rng.in_range(1..=16) as usize;
                let run = rng.bytes(n);
                let at = at.min(bytes.len());
                bytes.splice(at..at, run);
            }
            3 if len > 0 => {
                let end = (at + rng.in_range(1..=64) as usize).min(bytes.len());
                bytes.drain(at..end);
            }
            4 if len > 0 => {
                let end = (at + rng.in_range(1..=256) as usize).min(bytes.len());
                let chunk = bytes[at..end].to_vec();
                let to = rng.below(bytes.len() as u64 + 1) as usize;
                bytes.splice(to..to, chunk);
            }
            5 if len > 0 => bytes.truncate(at),
            _ if len > 4 => {
                // A LEB-ish size or index bumped.
                let at = at.min(bytes.len() - 4);
                let value =
                    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
                let bumped = value.wrapping_add(rng.in_range(1..=3) as u32);
                bytes[at..at + 4].copy_from_slice(&bumped.to_le_bytes());
            }
            _ => {}
        }
    }
    bytes
}

/// A component header and random bytes.
fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let mut out = COMPONENT_HEADER.to_vec();
    let len = rng.in_range(0..=4096) as usize;
    out.extend(rng.bytes(len));
    out
}

/// A component header and well-framed sections with random ids and bodies;
/// a core-module section gets a core header, so the parser goes one level
/// deeper.
fn random_sections(rng: &mut Rng) -> Vec<u8> {
    let mut out = COMPONENT_HEADER.to_vec();
    for _ in 0..rng.in_range(1..=12) {
        let id = rng.in_range(0..=12) as u8;
        let mut body = Vec::new();
        if id == CORE_MODULE_SECTION {
            body.extend_from_slice(b"\0asm\x01\0\0\0");
            for _ in 0..rng.in_range(0..=6) {
                body.push(rng.in_range(0..=13) as u8);
                let len = rng.in_range(0..=64) as usize;
                let inner = rng.bytes(len);
                leb128(&mut body, inner.len() as u64);
                body.extend(inner);
            }
        } else {
            let len = rng.in_range(0..=128) as usize;
            body = rng.bytes(len);
        }
        out.push(id);
        leb128(&mut out, body.len() as u64);
        out.extend(body);
    }
    out
}

/// The kinds of stress module: valid modules built to cost the host as much
/// as one count allows (`stress_module`).
pub const STRESS_KINDS: &[&str] = &[
    "locals",
    "nesting",
    "br-table",
    "funcs",
    "globals",
    "data",
    "elements",
    "params",
    "body",
    "recursion",
    "memory-grow",
    "table-grow",
    "start-loop",
    "spin",
    "host-calls",
];

/// A core module of `kind` (see `STRESS_KINDS`) sized by `count`, exporting
/// `run` like a smith module. These reach what wasm-smith rarely does: tens
/// of thousands of locals, functions, globals or table elements, deep
/// nesting, huge `br_table`s and bodies, runaway recursion and growth.
pub fn stress_module(kind: &str, count: u64, rng: &mut Rng) -> Result<Vec<u8>, String> {
    use std::fmt::Write;
    let n = count.max(1);
    let mut w = String::from("(module\n");
    let mut line = |text: String| {
        w.push_str(&text);
        w.push('\n');
    };
    match kind {
        "locals" => {
            let n = n.min(50_000);
            let mut body = String::new();
            for i in 0..n.min(2_000) {
                // Writing to a String cannot fail.
                let _ = write!(
                    body,
                    "local.get {i} i64.const 1 i64.add local.set {} ",
                    (i * 7 + 1) % n
                );
            }
            line(format!(
                "(func (export \"run\") (local {}) {body})",
                "i64 ".repeat(n as usize)
            ));
        }
        "nesting" => {
            let mut body = String::new();
            for i in 0..n {
                body.push_str(match i % 3 {
                    0 => "block ",
                    1 => "loop ",
                    _ => "i32.const 1 if ",
                });
            }
            body.push_str(&"end ".repeat(n as usize));
            line(format!("(func (export \"run\") {body})"));
        }
        "br-table" => {
            let target = rng.below(n + 1);
            line(format!(
                "(func (export \"run\") block i32.const {target} br_table {} 0 end)",
                "0 ".repeat(n as usize)
            ));
        }
        "funcs" => {
            let n = n.min(200_000);
            for i in 0..n {
                let next = if i + 1 < n {
                    format!("call {}", i + 1)
                } else {
                    String::new()
                };
                line(format!("(func {next})"));
            }
            line("(export \"run\" (func 0))".into());
        }
        "globals" => {
            for i in 0..n {
                line(format!("(global (mut i64) (i64.const {i}))"));
            }
            line(format!(
                "(func (export \"run\") global.get {} drop)",
                rng.below(n)
            ));
        }
        "data" => {
            // `count` KiB of data (up to 20 MiB, past any memory budget the
            // fuzzer uses), in up to 16 segments.
            let bytes = (n << 10).min(20 << 20);
            let pages = bytes.div_ceil(64 << 10) + rng.below(4);
            line(format!("(memory {pages})"));
            let segments = rng.in_range(1..=16);
            for s in 0..segments {
                let len = bytes / segments;
                let chunk: String = rng
                    .bytes(len.min(256) as usize)
                    .iter()
                    .map(|b| format!("\\{b:02x}"))
                    .collect();
                let repeats = (len / 256).max(1);
                line(format!(
                    "(data (i32.const {}) \"{}\")",
                    s * len,
                    chunk.repeat(repeats as usize)
                ));
            }
            line("(func (export \"run\"))".into());
        }
        "elements" => {
            line(format!("(table {n} funcref)"));
            line("(func $f)".into());
            line(format!(
                "(elem (i32.const 0) func {})",
                "$f ".repeat(n as usize)
            ));
            line(format!(
                "(func (export \"run\") i32.const {} call_indirect)",
                rng.below(n)
            ));
        }
        "params" => {
            let params = n.min(1_000);
            let results = rng.below(params + 1);
            line(format!(
                "(func $f (param {}) (result {}) {})",
                "i64 ".repeat(params as usize),
                "i64 ".repeat(results as usize),
                "local.get 0 ".repeat(results as usize)
            ));
            line(format!(
                "(func (export \"run\") {} call $f {})",
                "i64.const 7 ".repeat(params as usize),
                "drop ".repeat(results as usize)
            ));
        }
        "body" => {
            let mut body = String::from("i32.const 1 ");
            for i in 0..n * 8 {
                body.push_str(match i % 4 {
                    0 => "i32.const 3 i32.add ",
                    1 => "i32.const 5 i32.mul ",
                    2 => "i32.const 7 i32.xor ",
                    _ => "i32.const 1 i32.rotl ",
                });
            }
            line(format!("(func (export \"run\") {body} drop)"));
        }
        "recursion" => {
            let locals = n.min(10_000);
            line(format!(
                "(func $run (export \"run\") (local {}) call $run)",
                "i64 ".repeat(locals as usize)
            ));
        }
        "memory-grow" => {
            let step = n.min(1 << 16);
            line("(memory 1)".into());
            line(format!(
                "(func (export \"run\") loop i32.const {step} memory.grow i32.const -1 i32.ne br_if 0 end)"
            ));
        }
        "table-grow" => {
            let step = n;
            line("(table 1 funcref)".into());
            line(format!(
                "(func (export \"run\") loop ref.null func i32.const {step} table.grow 0 i32.const -1 i32.ne br_if 0 end)"
            ));
        }
        "spin" => {
            line("(func (export \"run\") loop br 0 end)".into());
        }
        "start-loop" => {
            line("(func $spin loop br 0 end)".into());
            line("(start $spin)".into());
            line("(func (export \"run\"))".into());
        }
        "host-calls" => {
            // Calls one host function in a loop with arguments drawn from
            // `count`: budgets on log lines, cache calls and read bytes,
            // handle and pointer checks.
            line("(import \"host\" \"memory\" (memory 1))".into());
            line("(import \"host\" \"handle\" (global $handle (mut i32)))".into());
            line("(import \"host\" \"log\" (func $log (param i32 i32 i32)))".into());
            line("(import \"host\" \"content-read\" (func $read (param i32 i64 i32 i32)))".into());
            line("(import \"host\" \"cache-get\" (func $get (param i32 i32 i32)))".into());
            line(
                "(import \"host\" \"cache-set\" (func $set (param i32 i32 i32 i32 i32 i32)))"
                    .into(),
            );
            let ptr = *rng.pick(&[0, 64, 60_000, 65_535, 1 << 20, u32::MAX as u64]);
            let len = *rng.pick(&[0, 1, 7, 512, 513, 4096, 1 << 20, n, u32::MAX as u64]);
            let level = rng.below(7);
            let handle = if rng.chance(3, 4) {
                "global.get $handle".to_string()
            } else {
                format!("i32.const {}", rng.below(8))
            };
            let call = match rng.below(4) {
                0 => format!("i32.const {level} i32.const {ptr} i32.const {len} call $log"),
                1 => format!("{handle} i64.const {ptr} i32.const {len} i32.const 128 call $read"),
                2 => format!(
                    "i32.const {ptr} i32.const {} i32.const 128 call $get",
                    len % 1024
                ),
                _ => format!(
                    "i32.const 0 i32.const {} i32.const {ptr} i32.const {len} i32.const 0 i32.const 128 call $set",
                    1 + len % 600
                ),
            };
            let times = rng.log_uniform(n.max(2));
            line(format!(
                "(func (export \"run\") (local $i i32) loop {call} local.get $i i32.const 1 i32.add local.tee $i i32.const {times} i32.lt_u br_if 0 end)"
            ));
            // Something for the log and cache calls to read.
            line("(data (i32.const 0) \"airlock-fuzz key and a log line\")".into());
        }
        other => return Err(format!("no stress kind {other}")),
    }
    w.push(')');
    wat::parse_str(&w).map_err(|e| format!("stress {kind}: {e}"))
}
