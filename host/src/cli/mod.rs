//! Command-line interface.

mod admin;
mod plugin;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Airlock: file uploads with sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(name = "airlock", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true, env = "AIRLOCK_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// More logs (-v debug, -vv trace). `RUST_LOG` overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Human,
    /// One JSON object per line.
    Json,
}

/// Top-level commands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the upload service.
    Serve(serve::ServeArgs),
    /// Operate a running service: plugin states and reload.
    Admin(admin::AdminArgs),
    /// Tools for plugin authors: start, build, test, check and run plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

/// Sets up `tracing` on stderr, in colour only when stderr is a terminal.
pub fn init_tracing(format: LogFormat, verbose: u8) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // An unset `RUST_LOG` means the default; one that does not parse is
    // reported once logging is up, not silently replaced.
    let (filter, bad_env) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(e) => (
            EnvFilter::new(default),
            std::env::var_os(EnvFilter::DEFAULT_ENV).map(|_| e),
        ),
    };
    // Colours are for a person at a terminal: not for a pipe or a file, and
    // not under NO_COLOR (which `with_ansi` would otherwise override).
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let Some(e) = bad_env {
        tracing::warn!(error = %e, "ignoring RUST_LOG, which is not a valid filter; logging at {default}");
    }
}

/// Runs one command and returns the process exit code.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve::run(args).await,
        Command::Admin(args) => admin::run(args).await,
        Command::Plugin(cmd) => plugin::run(cmd).await,
    }
}
