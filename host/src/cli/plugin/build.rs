//! `airlock plugin build`: a project's source made into a checked component
//! at `dist/<name>.wasm`. Rust builds for `wasm32-unknown-unknown` with the
//! rustup target when it is installed, else with Debian's Rust and its
//! library source (`-Zbuild-std`), then becomes a component with the
//! `wit-component` crate the host already has; JavaScript goes through
//! componentize-js (npm). Then the component is checked as the service
//! would load it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;

use super::inspect;
use super::project::{Lang, Project};

/// The target every Rust plugin is built for: no WASI, so the component
/// imports nothing but `airlock:plugin`.
const TARGET: &str = "wasm32-unknown-unknown";

/// `airlock plugin build` arguments.
#[derive(Args)]
pub struct BuildArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// Builds, checks and reports.
pub(super) fn run(args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let project = Project::open(&args.dir)?;
    let started = Instant::now();
    match project.lang {
        Lang::Rust => build_rust(&project)?,
        Lang::Js => build_js(&project)?,
    }
    println!(
        "built {} in {:.1} s",
        project.component().display(),
        started.elapsed().as_secs_f64()
    );
    let Some(info) = inspect::report(&project.component(), false)? else {
        return Ok(ExitCode::FAILURE);
    };
    if info.world != project.world {
        bail!(
            "{} targets the {} world, but the project says {}",
            project.component().display(),
            info.world.world(),
            project.world.world()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How this machine builds Rust for [`TARGET`].
enum Toolchain {
    /// rustup's toolchain with the target installed.
    Rustup,
    /// Debian's rustc and cargo (`rustc-web`), the library source
    /// (`rust-web-src`) for `-Zbuild-std`, and its wasm linker.
    Debian { linker: PathBuf },
}

impl Toolchain {
    fn find() -> anyhow::Result<Self> {
        if rustup_target_installed() {
            return Ok(Self::Rustup);
        }
        if let Some(linker) = debian_linker() {
            return Ok(Self::Debian { linker });
        }
        bail!(
            "no Rust toolchain that builds for {TARGET}: install the target with \
             `rustup target add {TARGET}`, or Debian's packages \
             `apt-get install rustc-web cargo-web rust-web-src lld-N` \
             (N = the LLVM major that `/usr/bin/rustc -vV` reports)"
        )
    }

    /// `cargo build --release` for [`TARGET`] in `dir`, into `target_dir`.
    fn cargo(&self, dir: &Path, target_dir: &Path) -> Command {
        let mut cargo = match self {
            Self::Rustup => Command::new("cargo"),
            Self::Debian { .. } => Command::new("/usr/bin/cargo"),
        };
        cargo
            .current_dir(dir)
            .args(["build", "--release", "--target", TARGET])
            .env("CARGO_TARGET_DIR", target_dir)
            .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
        if let Self::Debian { linker } = self {
            // Debian's compiler throughout (build scripts and proc-macros
            // too), std built from its source, and its wasm linker.
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![PathBuf::from("/usr/bin")];
            dirs.extend(std::env::split_paths(&path));
            cargo
                .arg("-Zbuild-std=std,panic_abort")
                .env("PATH", std::env::join_paths(dirs).unwrap_or(path))
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTDOC", "/usr/bin/rustdoc")
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", linker)
                .env_remove("RUSTC_WRAPPER")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("RUSTUP_TOOLCHAIN");
        }
        cargo
    }
}

/// Whether rustup's `rustc` has the standard library for [`TARGET`].
fn rustup_target_installed() -> bool {
    let Ok(out) = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
    else {
        return false;
    };
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    out.status.success()
        && std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
}

/// Debian's wasm linker, when Debian's Rust and its library source are
/// installed.
fn debian_linker() -> Option<PathBuf> {
    let rustc = Path::new("/usr/bin/rustc");
    if !rustc.is_file() || !Path::new("/usr/bin/cargo").is_file() {
        return None;
    }
    let version = Command::new(rustc).arg("-vV").output().ok()?;
    let version = String::from_utf8_lossy(&version.stdout);
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))?
        .split('.')
        .next()?
        .to_string();
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let source = sysroot.join("lib/rustlib/src/rust/library/Cargo.lock");
    let linker = PathBuf::from(format!("/usr/bin/wasm-ld-{major}"));
    (source.is_file() && linker.is_file()).then_some(linker)
}

fn build_rust(project: &Project) -> anyhow::Result<()> {
    let toolchain = Toolchain::find()?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project.dir.join("target"));
    let status = toolchain
        .cargo(&project.dir, &target_dir)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status}); its errors are above");
    }
    let core = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", project.name.replace('-', "_")));
    if !core.is_file() {
        bail!(
            "cargo built no {} (is the crate a cdylib: [lib] crate-type = [\"cdylib\"]?)",
            core.display()
        );
    }
    inspect::componentize_file(&core, &project.component())?;
    Ok(())
}

/// Installs the project's npm packages when componentize-js is missing,
/// then runs its `build.mjs`.
fn build_js(project: &Project) -> anyhow::Result<()> {
    let installed = project
        .dir
        .join("node_modules/@bytecodealliance/componentize-js")
        .is_dir();
    if !installed {
        let verb = if project.dir.join("package-lock.json").is_file() {
            "ci"
        } else {
            "install"
        };
        println!("npm {verb} (componentize-js, once per project)");
        let status = Command::new("npm")
            .args([verb, "--no-audit", "--no-fund"])
            .current_dir(&project.dir)
            .status()
            .context("cannot run npm: install Node.js and npm")?;
        if !status.success() {
            bail!("npm {verb} failed ({status}); its errors are above");
        }
    }
    let status = Command::new("node")
        .arg("build.mjs")
        .current_dir(&project.dir)
        .status()
        .context("cannot run node: install Node.js")?;
    if !status.success() {
        bail!("node build.mjs failed ({status}); its errors are above");
    }
    if !project.component().is_file() {
        bail!("build.mjs wrote no {}", project.component().display());
    }
    Ok(())
}
