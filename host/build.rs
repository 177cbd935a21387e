//! Bundles the upload page and the operator dashboard (`web/`: Uppy and
//! the page scripts, by esbuild from npm) into `$OUT_DIR/web`, which
//! `src/http/pages.rs` embeds: the binary serves them offline, with no CDN.
//!
//! npm installs from `web/package-lock.json` into `$OUT_DIR/npm` (once per
//! lock file; cache `$AIRLOCK_CACHE/npm` when set). Packagers without npm
//! set `AIRLOCK_WEB_DIST` to a directory holding a bundle made by
//! `node web/build.mjs web DIR`. Every file is also written gzipped
//! (`<name>.gz`), so the binary serves the compressed bytes without
//! compressing per request.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The files `src/http/pages.rs` embeds.
const OUTPUTS: [&str; 6] = [
    "index.html",
    "admin.html",
    "upload.js",
    "upload.css",
    "admin.js",
    "admin.css",
];

fn main() {
    if let Err(message) = build().and_then(|bundle| gzip_outputs(&bundle)) {
        println!("cargo::error={message}");
    }
}

/// Writes `<name>.gz` beside each output, at the best compression.
fn gzip_outputs(bundle: &Path) -> Result<(), String> {
    use std::io::Write;
    for file in OUTPUTS {
        let bytes = read(&bundle.join(file))?;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gz = encoder
            .write_all(&bytes)
            .and_then(|()| encoder.finish())
            .map_err(|e| format!("gzipping {file}: {e}"))?;
        let path = bundle.join(format!("{file}.gz"));
        fs::write(&path, gz).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Bundles the pages into `$OUT_DIR/web`; returns that directory.
fn build() -> Result<PathBuf, String> {
    let manifest = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(var("OUT_DIR")?);
    let web = manifest.join("web");
    for input in [
        "package.json",
        "package-lock.json",
        "build.mjs",
        "index.html",
        "admin.html",
        "src",
    ] {
        println!("cargo::rerun-if-changed=web/{input}");
    }
    println!("cargo::rerun-if-env-changed=AIRLOCK_WEB_DIST");
    let bundle = out.join("web");
    if let Some(dist) = env::var_os("AIRLOCK_WEB_DIST") {
        copy_outputs(Path::new(&dist), &bundle)?;
        return Ok(bundle);
    }
    let npm_dir = out.join("npm");
    fs::create_dir_all(&npm_dir).map_err(|e| format!("creating {}: {e}", npm_dir.display()))?;
    for file in ["package.json", "package-lock.json", "build.mjs"] {
        copy(&web.join(file), &npm_dir.join(file))?;
    }
    // `npm ci` only when the lock file changed since the last install.
    let lock = read(&web.join("package-lock.json"))?;
    let stamp = npm_dir.join("node_modules/.airlock-lock");
    if fs::read(&stamp).ok().as_deref() != Some(lock.as_slice()) {
        let mut npm = Command::new("npm");
        npm.current_dir(&npm_dir).args([
            "ci",
            "--prefer-offline",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]);
        if let Some(cache) = env::var_os("AIRLOCK_CACHE") {
            npm.arg("--cache").arg(Path::new(&cache).join("npm"));
        }
        println!("cargo::rerun-if-env-changed=AIRLOCK_CACHE");
        run(&mut npm, "npm ci (the web pages' packages)")?;
        fs::write(&stamp, &lock).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    }
    run(
        Command::new("node")
            .arg(npm_dir.join("build.mjs"))
            .arg(&web)
            .arg(&bundle),
        "node build.mjs (bundling the web pages with esbuild)",
    )?;
    for file in OUTPUTS {
        if !bundle.join(file).is_file() {
            return Err(format!("the web bundle has no {file}"));
        }
    }
    Ok(bundle)
}

fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set (run by cargo?)"))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

fn copy_outputs(dist: &Path, bundle: &Path) -> Result<(), String> {
    fs::create_dir_all(bundle).map_err(|e| format!("creating {}: {e}", bundle.display()))?;
    for file in OUTPUTS {
        copy(&dist.join(file), &bundle.join(file)).map_err(|e| format!("AIRLOCK_WEB_DIST: {e}"))?;
    }
    Ok(())
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    // A build script's stdout is read by cargo: the tools print to stderr.
    let status = command
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status().map_err(|e| {
        format!("{what}: cannot start it ({e}); building airlock's web pages needs Node.js >= 18 and npm (or set AIRLOCK_WEB_DIST)")
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}
