//! A plugin project on disk, as `plugin new` writes it and `plugin build`
//! and `plugin test` read it: a Rust crate (`Cargo.toml`) or a JavaScript
//! package (`package.json`), with `budget.toml` and `fixtures/` beside.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use airlock::runtime::HookKind;

/// The language a project is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Lang {
    /// A Rust crate on the `airlock-plugin-sdk` crate.
    Rust,
    /// A JavaScript module made into a component by componentize-js.
    Js,
}

/// A plugin project.
#[derive(Debug)]
pub(super) struct Project {
    /// Its directory.
    pub dir: PathBuf,
    /// The plugin's name (the crate's or the package's).
    pub name: String,
    /// Its language.
    pub lang: Lang,
    /// The world it targets.
    pub world: HookKind,
}

impl Project {
    /// Reads the project in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let cargo = dir.join("Cargo.toml");
        let package = dir.join("package.json");
        let (name, lang, world) = if cargo.is_file() {
            let (name, world) = rust_manifest(&cargo)?;
            (name, Lang::Rust, world)
        } else if package.is_file() {
            let (name, world) = js_manifest(&package)?;
            (name, Lang::Js, world)
        } else {
            bail!(
                "{} has no Cargo.toml or package.json: not a plugin project \
                 (start one with `airlock plugin new NAME --world processor`)",
                dir.display()
            );
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            name,
            lang,
            world,
        })
    }

    /// Where `plugin build` writes the component.
    pub fn component(&self) -> PathBuf {
        self.dir.join("dist").join(format!("{}.wasm", self.name))
    }

    /// The budget the plugin is tested under.
    pub fn budget(&self) -> PathBuf {
        self.dir.join("budget.toml")
    }

    /// The fixtures and their expected outcomes.
    pub fn fixtures(&self) -> PathBuf {
        self.dir.join("fixtures")
    }
}

/// The crate name and the world its `airlock-plugin-sdk` feature names.
fn rust_manifest(path: &Path) -> anyhow::Result<(String, HookKind)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let manifest: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    let name = manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{} has no [package] name", path.display()))?;
    let features = manifest
        .get("dependencies")
        .and_then(|d| d.get("airlock-plugin-sdk"))
        .and_then(|sdk| sdk.get("features"))
        .and_then(toml::Value::as_array)
        .with_context(|| {
            format!(
                "{} does not depend on airlock-plugin-sdk with a world feature \
                 (features = [\"processor\"] or [\"extension\"])",
                path.display()
            )
        })?;
    let mut worlds: Vec<HookKind> = features
        .iter()
        .filter_map(|f| f.as_str().and_then(HookKind::from_world))
        .collect();
    worlds.dedup();
    let world = match worlds[..] {
        [world] => world,
        _ => bail!(
            "{}: airlock-plugin-sdk needs exactly one of the features \"processor\" and \"extension\"",
            path.display()
        ),
    };
    Ok((name.to_string(), world))
}

/// The package name and its `airlock.world`.
fn js_manifest(path: &Path) -> anyhow::Result<(String, HookKind)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    let name = manifest["name"]
        .as_str()
        .with_context(|| format!("{} has no \"name\"", path.display()))?;
    let world = match manifest["airlock"]["world"]
        .as_str()
        .and_then(HookKind::from_world)
    {
        Some(world) => world,
        None => bail!(
            "{} needs \"airlock\": {{ \"world\": \"processor\" }} (or \"extension\")",
            path.display()
        ),
    };
    Ok((name.to_string(), world))
}
