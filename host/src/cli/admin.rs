//! `airlock admin …`: the admin API from the command line.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;

/// `airlock admin` arguments.
#[derive(Args)]
pub struct AdminArgs {
    /// Base URL of the service.
    #[arg(
        long,
        env = "AIRLOCK_ADMIN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// Admin token (`admin.token` in the config).
    #[arg(long, env = "AIRLOCK_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Plugins: list, enable, disable.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Re-read the configuration and plugin files (like SIGHUP).
    Reload,
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Every plugin with its state, budget and counters.
    List {
        /// Print the JSON as returned by the API.
        #[arg(long)]
        json: bool,
    },
    /// Re-enable a quarantined or disabled plugin.
    Enable {
        /// Plugin name.
        name: String,
    },
    /// Stop invoking a plugin.
    Disable {
        /// Plugin name.
        name: String,
    },
}

/// Runs an admin subcommand.
pub async fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let base = args.url.trim_end_matches('/');
    let http = reqwest::Client::new();
    let (method, path) = match &args.command {
        AdminCommand::Plugins(PluginsCommand::List { .. }) => {
            (reqwest::Method::GET, "/admin/plugins".to_string())
        }
        AdminCommand::Plugins(PluginsCommand::Enable { name }) => (
            reqwest::Method::POST,
            format!("/admin/plugins/{name}/enable"),
        ),
        AdminCommand::Plugins(PluginsCommand::Disable { name }) => (
            reqwest::Method::POST,
            format!("/admin/plugins/{name}/disable"),
        ),
        AdminCommand::Reload => (reqwest::Method::POST, "/admin/reload".to_string()),
    };
    let response = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(&args.token)
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{base}{path}: answer is not JSON"))?;
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        bail!("{status}: {message}");
    }
    match &args.command {
        AdminCommand::Plugins(PluginsCommand::List { json: false }) => print_plugins(&body),
        _ => println!("{}", serde_json::to_string_pretty(&body)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plugins(body: &Value) {
    println!(
        "{:<16} {:<10} {:<12} {:>11} {:>10} {:>8}  reason",
        "plugin", "hook", "state", "invocations", "violations", "refused"
    );
    for p in body["plugins"].as_array().into_iter().flatten() {
        let c = &p["counters"];
        println!(
            "{:<16} {:<10} {:<12} {:>11} {:>10} {:>8}  {}",
            p["name"].as_str().unwrap_or_default(),
            p["hook"].as_str().unwrap_or_default(),
            p["state"].as_str().unwrap_or_default(),
            c["invocations"],
            c["violations"],
            c["refused"],
            p["reason"].as_str().unwrap_or(""),
        );
    }
}
