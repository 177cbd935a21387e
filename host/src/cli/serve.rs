//! `airlock serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use airlock::admin::ConfigSource;
use airlock::app::{self, App};

/// `airlock serve` arguments.
#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file; without it, the embedded defaults (local disk
    /// under ./data, in-memory cache, the example plugins).
    #[arg(long, short, env = "AIRLOCK_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address; overrides `server.listen`.
    #[arg(long, env = "AIRLOCK_LISTEN")]
    listen: Option<SocketAddr>,
}

/// Runs the service until ctrl-c or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // On the embedded defaults the dashboard gets a token of this run's
    // own (printed below) unless AIRLOCK_ADMIN_TOKEN sets one.
    let made_up_token = args.config.is_none().then(airlock::auth::random_token);
    let source = match &args.config {
        Some(path) => ConfigSource::File(path.clone()),
        None => ConfigSource::Embedded {
            plugins: app::default_plugins_dir(),
            admin_token: made_up_token.clone(),
        },
    };
    let embedded = matches!(source, ConfigSource::Embedded { .. });
    let mut config = source.read()?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if embedded {
        tracing::info!(
            storage = %config.storage.path.display(),
            plugins = %app::default_plugins_dir().display(),
            "no --config: running on embedded defaults (local disk, in-memory cache, example plugins)"
        );
    }
    let built = App::build(&config, source).await?;
    let listener = airlock::http::bind(config.server.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, storage = ?config.storage.backend, cache = ?config.cache.backend, "airlock listening");
    if config.server.pages {
        // The token goes in the fragment: browsers never send it to a server.
        let token = made_up_token
            .filter(|t| *t == config.admin.token)
            .map(|t| format!("#token={t}"))
            .unwrap_or_default();
        tracing::info!(
            "upload page: http://{addr}/  operator dashboard: http://{addr}/admin{token}"
        );
    }
    airlock::http::run(built, listener, app::shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}
