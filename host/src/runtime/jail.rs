//! The compile jail: validating and compiling a component the service has
//! not compiled before is untrusted work, so it runs in a child process (the
//! `airlock` binary's hidden `__compile` command) under an address-space
//! limit, a CPU-time limit and a wall-clock timeout. A component that makes
//! the validator or Cranelift blow up kills only that child.
//!
//! Protocol: the parent writes the component to the child's stdin; the child
//! answers on stdout with the compiled artifact (exit 0) or a JSON
//! [`Refusal`] (exit [`EXIT_REFUSED`]).

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::load::LoadError;
use super::prepass::ComponentLimits;
use super::{BoxError, RuntimeConfig};

/// The hidden subcommand that runs the child side.
pub const SUBCOMMAND: &str = "__compile";
/// Exit code of a child that refused the component (the reason on stdout).
const EXIT_REFUSED: i32 = 2;
/// The running executable, on Linux.
const SELF_EXE: &str = "/proc/self/exe";
/// Most stderr kept from a child, for the error message.
const MAX_STDERR: u64 = 16 << 10;

/// What the child needs to compile exactly as the service would.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JailSpec {
    /// `runtime.compile_memory_bytes`.
    pub memory_bytes: u64,
    /// `runtime.compile_cpu_seconds`.
    pub cpu_seconds: u64,
    /// `runtime.max_component_bytes`: the child reads no more.
    pub max_component_bytes: u64,
    /// Whether the engine meters fuel (part of the compiled code).
    pub fuel_metering: bool,
    /// The same static limits the parent checked.
    pub limits: ComponentLimits,
}

/// Why the child refused a component.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Refusal {
    /// Not valid, or rejected by the compiler.
    Malformed { message: String },
    /// A static limit was passed.
    ComponentLimit {
        limit: String,
        found: u64,
        allowed: u64,
    },
    /// The compiler ran out of its address space.
    OutOfMemory { message: String },
}

impl JailSpec {
    /// The spec for a runtime's settings.
    pub(super) fn from_config(config: &RuntimeConfig) -> Self {
        Self {
            memory_bytes: config.compile_memory_bytes,
            cpu_seconds: config.compile_cpu_seconds,
            max_component_bytes: config.max_component_bytes,
            fuel_metering: config.fuel_metering,
            limits: config.component_limits,
        }
    }
}

/// Compiles `bytes` in a jailed child process and returns the serialized
/// artifact.
pub(super) fn compile(config: &RuntimeConfig, bytes: &[u8]) -> Result<Vec<u8>, LoadError> {
    let program = match &config.compiler_program {
        Some(path) => path.clone(),
        // The running image itself, even if its file was replaced by an
        // upgrade since: the jail must compile for this very engine.
        None if Path::new(SELF_EXE).exists() => PathBuf::from(SELF_EXE),
        None => std::env::current_exe()
            .map_err(|e| failed("cannot find the airlock executable", Some(e.into())))?,
    };
    let spec = serde_json::to_string(&JailSpec::from_config(config))
        .map_err(|e| failed("cannot encode the jail spec", Some(e.into())))?;
    let mut child = Command::new(&program)
        .arg(SUBCOMMAND)
        .arg(spec)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            failed(
                format!("cannot start {}", program.display()),
                Some(e.into()),
            )
        })?;

    // Feed and drain the child on threads so that a child that stops reading
    // or writing can never block the parent past the timeout.
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        // All three were asked for, so this does not happen; if it did, a
        // child that already exited cannot be killed, and either way there
        // is nothing more to do with it.
        drop(child.kill());
        drop(child.wait());
        return Err(failed("the compiler's pipes are missing", None));
    };
    let input = bytes.to_vec();
    // A child that exits early closes the pipe; its exit status says why.
    std::thread::spawn(move || drop(stdin.write_all(&input)));
    let errors = std::thread::spawn(move || {
        let mut err = Vec::new();
        // Only for the error message: what was read before a read error is
        // still kept, and the exit status says what happened.
        drop(stderr.take(MAX_STDERR).read_to_end(&mut err));
        err
    });
    let (tx, rx) = mpsc::channel();
    let cap = config.compile_memory_bytes;
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = stdout.take(cap).read_to_end(&mut out);
        // The receiver is gone only if the parent already timed out.
        drop(tx.send(read.map(|_| out)));
    });
    let timeout = Duration::from_millis(config.compile_timeout_ms);
    let read = match rx.recv_timeout(timeout) {
        Ok(read) => read,
        Err(stopped) => {
            // Killing an already-exited child fails harmlessly; reaping it
            // can fail only if it was already reaped.
            drop(child.kill());
            drop(child.wait());
            return Err(match stopped {
                mpsc::RecvTimeoutError::Timeout => LoadError::Compile {
                    limit: "compile_timeout_ms",
                    allowed: config.compile_timeout_ms,
                },
                mpsc::RecvTimeoutError::Disconnected => {
                    failed("the thread reading the compiler's output stopped", None)
                }
            });
        }
    };
    let status = child
        .wait()
        .map_err(|e| failed("waiting for the compiler", Some(e.into())))?;
    let out = read.map_err(|e| failed("reading the compiler's output", Some(e.into())))?;
    // The stderr reader only reads; should it have panicked, the message
    // goes without the child's stderr, and the status still decides.
    let err = errors.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err);
    if status.success() {
        return Ok(out);
    }
    if status.code() == Some(EXIT_REFUSED) {
        let refusal: Refusal = serde_json::from_slice(&out).map_err(|e| {
            let what = match stderr.trim() {
                "" => "unreadable answer from the compiler".to_string(),
                said => format!("unreadable answer from the compiler (its stderr: {said})"),
            };
            failed(what, Some(e.into()))
        })?;
        return Err(match refusal {
            Refusal::Malformed { message } => LoadError::Malformed(message),
            Refusal::ComponentLimit {
                limit,
                found,
                allowed,
            } => LoadError::ComponentLimit {
                limit: ComponentLimits::key(&limit).unwrap_or("component_limits"),
                found,
                allowed,
            },
            Refusal::OutOfMemory { .. } => memory_limit(config),
        });
    }
    Err(match status.signal() {
        // SIGXCPU at the soft CPU limit, SIGKILL at the hard one.
        Some(24) | Some(9) => LoadError::Compile {
            limit: "compile_cpu_seconds",
            allowed: config.compile_cpu_seconds,
        },
        // An allocation failure aborts; a failed stack or guard mapping
        // faults.
        Some(6) | Some(7) | Some(11) => memory_limit(config),
        _ if stderr.contains("memory allocation") => memory_limit(config),
        _ => failed(
            format!("the compiler failed ({status}): {}", stderr.trim()),
            None,
        ),
    })
}

/// The jail could not do `what`, because of `source` when there is one.
fn failed(what: impl Into<String>, source: Option<BoxError>) -> LoadError {
    LoadError::Jail {
        what: what.into(),
        source,
    }
}

fn memory_limit(config: &RuntimeConfig) -> LoadError {
    LoadError::Compile {
        limit: "compile_memory_bytes",
        allowed: config.compile_memory_bytes,
    }
}

/// The child side, run by `airlock __compile <spec>` before anything else in
/// the process: limits itself, then reads, checks and compiles stdin.
pub fn child_main(spec: &str) -> ExitCode {
    let spec: JailSpec = match serde_json::from_str(spec) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("airlock {SUBCOMMAND}: bad spec: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Limits first: nothing below runs without them.
    let cpu = spec.cpu_seconds.max(1);
    let limited = rlimit::setrlimit(rlimit::Resource::AS, spec.memory_bytes, spec.memory_bytes)
        .and_then(|()| rlimit::setrlimit(rlimit::Resource::CPU, cpu, cpu + 1))
        .and_then(|()| rlimit::setrlimit(rlimit::Resource::CORE, 0, 0));
    if let Err(e) = limited {
        eprintln!("airlock {SUBCOMMAND}: cannot set resource limits: {e}");
        return ExitCode::FAILURE;
    }
    // Compiling is background work (at start, on reload): below the
    // request path on a busy machine. The compiler's threads inherit it.
    if let Err(e) =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
    {
        eprintln!("airlock {SUBCOMMAND}: cannot lower the compiler's priority: {e:?}");
    }
    let mut input = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(spec.max_component_bytes.saturating_add(1))
        .read_to_end(&mut input);
    if let Err(e) = read {
        eprintln!("airlock {SUBCOMMAND}: cannot read the component: {e}");
        return ExitCode::FAILURE;
    }
    let answer = match compile_checked(&spec, &input) {
        Ok(artifact) => {
            return match std::io::stdout().lock().write_all(&artifact) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("airlock {SUBCOMMAND}: cannot write the artifact: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Err(refusal) => refusal,
    };
    let written = serde_json::to_vec(&answer)
        .map_err(std::io::Error::from)
        .and_then(|json| std::io::stdout().lock().write_all(&json));
    match written {
        Ok(()) => ExitCode::from(EXIT_REFUSED as u8),
        Err(e) => {
            eprintln!("airlock {SUBCOMMAND}: cannot write the refusal: {e}");
            ExitCode::FAILURE
        }
    }
}

fn compile_checked(spec: &JailSpec, input: &[u8]) -> Result<Vec<u8>, Refusal> {
    let malformed = |message: String| Refusal::Malformed { message };
    let binary = wat::parse_bytes(input).map_err(|e| malformed(e.to_string()))?;
    spec.limits.check(&binary).map_err(|e| match e {
        LoadError::ComponentLimit {
            limit,
            found,
            allowed,
        } => Refusal::ComponentLimit {
            limit: limit.into(),
            found,
            allowed,
        },
        other => malformed(other.to_string()),
    })?;
    let config = RuntimeConfig {
        fuel_metering: spec.fuel_metering,
        ..RuntimeConfig::default()
    };
    let engine = wasmtime::Engine::new(&super::engine_config(&config, false))
        .map_err(|e| malformed(format!("cannot build the engine: {e:#}")))?;
    engine.precompile_component(&binary).map_err(|e| {
        let message = format!("{e:#}");
        if message.contains("out of memory") || message.contains("Cannot allocate memory") {
            Refusal::OutOfMemory { message }
        } else {
            malformed(message)
        }
    })
}
