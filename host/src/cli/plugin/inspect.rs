//! `airlock plugin check` and `componentize`: a component as the service
//! sees it, and a core module made into one.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::runtime;
use airlock::runtime::ComponentInfo;

/// `airlock plugin check`: what the service would make of `path`.
pub(super) fn check(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    Ok(match report(path, json)? {
        Some(_) => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    })
}

/// Prints what the service would make of `path`: the component's facts,
/// or why it would be refused (then `None`).
pub(super) fn report(path: &Path, json: bool) -> anyhow::Result<Option<ComponentInfo>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let info = match runtime(0)?.inspect(&bytes) {
        Ok(info) => info,
        Err(e) => {
            // With its causes, if it has any (a jail that could not run).
            let e = format!("{:#}", anyhow::Error::new(e));
            if json {
                println!("{}", serde_json::json!({ "ok": false, "error": e }));
            } else {
                eprintln!("refused: {}: {e}", path.display());
            }
            return Ok(None);
        }
    };
    if json {
        println!("{}", serde_json::json!({ "ok": true, "component": info }));
    } else {
        println!("{}: ok", path.display());
        println!("  world:   {}", info.world.world());
        println!("  size:    {} bytes", info.size);
        println!("  sha256:  {}", info.sha256);
        println!("  imports: {}", info.imports.join(", "));
        println!("  exports: {}", info.exports.join(", "));
    }
    Ok(Some(info))
}

/// `airlock plugin componentize`.
pub(super) fn componentize(module: &Path, output: &Path) -> anyhow::Result<ExitCode> {
    let component = componentize_file(module, output)?;
    println!("{} ({} bytes)", output.display(), component.len());
    Ok(ExitCode::SUCCESS)
}

/// Turns the core module at `module` (built with wit-bindgen, whose custom
/// section names the world) into a validated component at `output`.
pub(super) fn componentize_file(module: &Path, output: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .with_context(|| format!("cannot make a component of {}", module.display()))?;
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(output, &component)
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(component)
}
