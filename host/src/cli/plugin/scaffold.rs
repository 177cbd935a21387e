//! `airlock plugin new`: a plugin project that builds and passes its tests
//! as written, from templates embedded in the binary (and, for Rust, a copy
//! of the SDK with its WIT, so the project depends on nothing outside it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::project::Lang;
use airlock::runtime::HookKind;

/// `airlock plugin new` arguments.
#[derive(Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and dashes, starting
    /// with a letter (at most 48).
    name: String,
    /// The world it targets: `processor` (before the upload is stored) or
    /// `extension` (after, deriving artifacts).
    #[arg(long, value_parser = parse_world)]
    world: HookKind,
    /// Its language.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// Where to create it (default: ./NAME); must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn parse_world(world: &str) -> Result<HookKind, String> {
    HookKind::from_world(world)
        .ok_or_else(|| format!("unknown world '{world}': expected processor or extension"))
}

/// The WIT every project gets: the host's own.
const WIT: &str = include_str!("../../../../wit/airlock.wit");

/// A file of the SDK crate, by its path in the crate.
macro_rules! sdk_file {
    ($path:literal) => {
        (
            $path,
            include_str!(concat!("../../../../plugins/sdk/", $path)),
        )
    };
}

/// The SDK as `vendor/airlock-plugin-sdk`: its manifest, sources and WIT.
const SDK: &[(&str, &str)] = &[
    sdk_file!("Cargo.toml"),
    sdk_file!("src/lib.rs"),
    sdk_file!("src/alloc.rs"),
    sdk_file!("src/cached.rs"),
    sdk_file!("src/content.rs"),
    sdk_file!("src/logging.rs"),
    sdk_file!("src/metadata.rs"),
    sdk_file!("wit/airlock.wit"),
];

macro_rules! template {
    ($path:literal) => {
        include_str!(concat!("../../../templates/plugin/", $path))
    };
}

/// Creates the project and says what to do next.
pub(super) fn run(args: &NewArgs) -> anyhow::Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} already exists and is not empty", dir.display());
    }
    let files = files(args);
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "created {} ({} {} plugin, {} files)",
        dir.display(),
        args.world.world(),
        match args.lang {
            Lang::Rust => "Rust",
            Lang::Js => "JavaScript",
        },
        files.len()
    );
    println!(
        "next:\n  cd {}\n  airlock plugin build\n  airlock plugin test",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Plugin names end up in crate names, file names and config keys.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "invalid plugin name '{name}': use lowercase letters, digits and dashes, \
             starting with a letter (at most 48)"
        );
    }
    Ok(())
}

/// Every file of the project, relative to its directory, placeholders filled.
fn files(args: &NewArgs) -> Vec<(PathBuf, String)> {
    let world = args.world.world();
    let (source, wit_path) = match args.lang {
        Lang::Rust => ("src/lib.rs", "vendor/airlock-plugin-sdk/wit/airlock.wit"),
        Lang::Js => ("src/plugin.js", "wit/airlock.wit"),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{world}}", world)
            .replace("{{source}}", source)
            .replace("{{wit}}", wit_path)
            .replace(
                "{{lang}}",
                match args.lang {
                    Lang::Rust => "Rust",
                    Lang::Js => "JavaScript",
                },
            )
    };
    let (hello, empty) = match args.world {
        HookKind::Processor => (
            template!("common/processor-hello.toml"),
            template!("common/processor-empty.toml"),
        ),
        HookKind::Extension => (
            template!("common/extension-hello.toml"),
            template!("common/extension-empty.toml"),
        ),
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        ("README.md".into(), fill(template!("common/README.md"))),
        ("budget.toml".into(), fill(template!("common/budget.toml"))),
        (
            "fixtures/hello.txt".into(),
            template!("common/fixtures/hello.txt").into(),
        ),
        ("fixtures/hello.txt.toml".into(), fill(hello)),
        ("fixtures/empty.txt".into(), String::new()),
        ("fixtures/empty.txt.toml".into(), fill(empty)),
    ];
    match args.lang {
        Lang::Rust => {
            files.push(("Cargo.toml".into(), fill(template!("rust/Cargo.toml"))));
            files.push((".gitignore".into(), template!("rust/gitignore").into()));
            files.push((
                ".cargo/config.toml".into(),
                template!("rust/cargo-config.toml").into(),
            ));
            let lib = match args.world {
                HookKind::Processor => template!("rust/src/processor.rs"),
                HookKind::Extension => template!("rust/src/extension.rs"),
            };
            files.push((source.into(), fill(lib)));
            for (path, text) in SDK {
                files.push((
                    Path::new("vendor/airlock-plugin-sdk").join(path),
                    (*text).into(),
                ));
            }
        }
        Lang::Js => {
            files.push(("package.json".into(), fill(template!("js/package.json"))));
            files.push(("build.mjs".into(), template!("js/build.mjs").into()));
            files.push((".gitignore".into(), template!("js/gitignore").into()));
            let plugin = match args.world {
                HookKind::Processor => template!("js/src/processor.js"),
                HookKind::Extension => template!("js/src/extension.js"),
            };
            files.push((source.into(), fill(plugin)));
            files.push((wit_path.into(), WIT.into()));
        }
    }
    files
}
