//! Runs a built [`App`] over HTTP until shutdown: its background work, the
//! connections, then the drain of in-flight requests and post-store jobs
//! within the shutdown grace.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::{AppState, ConnectionLimits, router, serve};
use crate::app::App;
use crate::assemble::StartError;
use crate::config::ServerConfig;

/// Binds `addr`.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// The connection limits of `server`.
fn limits(server: &ServerConfig) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: server.max_connections,
        header_read_timeout: Duration::from_millis(server.header_read_timeout_ms),
        keep_alive_timeout: Duration::from_millis(server.keep_alive_timeout_ms),
        write_timeout: Duration::from_millis(server.write_timeout_ms),
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, finishes in-flight requests and the running post-store jobs,
/// all within the shutdown grace (queued jobs wait, durably, for the next
/// start).
pub async fn run(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let server = &app.running.config.server;
    let grace = Duration::from_secs(server.shutdown_grace_seconds);
    let limits = limits(server);
    let router = router(AppState::from(&app));
    let background = app.start_background();
    let signalled = Arc::new(Notify::new());
    let signalled_at = Arc::new(OnceLock::new());
    let (notify, at) = (Arc::clone(&signalled), Arc::clone(&signalled_at));
    let metrics = Arc::clone(&app.running.metrics);
    let serving = serve(listener, router, limits, metrics, async move {
        shutdown.await;
        at.get_or_init(Instant::now);
        notify.notify_one();
    });
    // In-flight requests get the grace period; a stalled client must not
    // hold a shutdown (a deploy) forever.
    tokio::select! {
        () = serving => {}
        () = async {
            signalled.notified().await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(?grace, "shutdown grace ran out; closing the connections still open"),
    }
    drop(background);
    let since_signal = signalled_at.get().map_or(Duration::ZERO, Instant::elapsed);
    app.drain(grace.saturating_sub(since_signal)).await;
}
