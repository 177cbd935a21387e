//! Accepting connections: HTTP/1.1 on hyper with the timers a public
//! service needs, so that slow, silent or idle clients cannot hold
//! connections. (`axum::serve` runs hyper without a timer, which turns even
//! hyper's header-read timeout off.)

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// hyper's read buffer, which bounds a request head from above (hyper
/// checks it between reads, so a head may reach about twice this before it
/// answers 431); the exact limit is [`super::MAX_HEAD_BYTES`].
const MAX_HEAD_BYTES: usize = super::MAX_HEAD_BYTES;

/// Limits on connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// The head of a request must arrive within this of the connection
    /// being ready for it.
    pub header_read_timeout: Duration,
    /// A connection with no request for this long is closed.
    pub keep_alive_timeout: Duration,
    /// A response its client does not read for this long: the connection
    /// is dropped.
    pub write_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting, lets every connection finish its request in flight, and
/// returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        let Some((stream, slot)) = accepted else {
            continue;
        };
        connections.spawn(connection(
            stream,
            router.clone(),
            limits,
            Arc::clone(&metrics),
            stopping.clone(),
            slot,
        ));
    }
    // New connections are refused from now on, not left in the backlog.
    drop(listener);
    stopping.cancel();
    connections.close();
    connections.wait().await;
}

/// The next connection, once one of the `slots` is free.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    // The semaphore is never closed.
    let slot = Arc::clone(slots).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, _)) => Some((stream, slot)),
        Err(err) => {
            // Out of file descriptors and the like: back off rather than
            // spin on an error that persists.
            tracing::warn!(error = %err, "accept failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// Serves one connection: closes it when idle for the keep-alive timeout
/// or when the server stops, and drops it when its client stops reading a
/// response.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    stopping: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY");
    }
    metrics.connection_opened();
    let (activity, mut watched) = watch::channel(Activity {
        in_flight: 0,
        since: Instant::now(),
        unread_since: None,
    });
    let activity = Arc::new(activity);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = Busy::begin(&activity);
        let router = router.clone();
        async move {
            let response = router
                .oneshot(request.map(Body::new))
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            Ok::<_, Infallible>(response.map(|body| Tracked { body, busy }))
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's default is ~400 KiB.
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing: Option<Instant> = None;
    let mut stopped = false;
    loop {
        let state = *watched.borrow_and_update();
        let timer = match (closing, state.in_flight) {
            // Closing gracefully after an idle spell, nothing in flight. A
            // head that is arriving is the header timeout's to cut; a
            // client that does not take the rest of its last response is
            // dropped after that.
            (Some(at), 0) => Some((
                at.max(state.since) + limits.write_timeout.max(limits.header_read_timeout),
                Timer::Abandon,
            )),
            (None, 0) => Some((state.since + limits.keep_alive_timeout, Timer::Idle)),
            // A request in flight (also one that began as the connection
            // was closing): only a response its client stops reading ends it.
            _ => state
                .unread_since
                .map(|at| (at + limits.write_timeout, Timer::Abandon)),
        };
        let (at, timer) = timer.unzip();
        tokio::select! {
            biased;
            served = conn.as_mut() => {
                if let Err(err) = served {
                    if err.is_timeout() {
                        metrics.connection_timed_out("header_read");
                    }
                    tracing::debug!(error = %err, "connection ended");
                }
                break;
            }
            changed = watched.changed() => {
                if changed.is_err() {
                    // The service is gone with the connection.
                    break;
                }
            }
            () = stopping.cancelled(), if !stopped => {
                // In-flight requests finish; the server's shutdown grace
                // bounds how long.
                conn.as_mut().graceful_shutdown();
                stopped = true;
            }
            () = sleep_until(at), if !stopped => match timer {
                Some(Timer::Idle) => {
                    // Closes at once when no request has begun; a request
                    // whose head is arriving is left to the header timeout.
                    metrics.connection_timed_out("keep_alive");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                _ => {
                    metrics.connection_timed_out("write");
                    tracing::debug!("client stopped reading its response: dropping the connection");
                    break;
                }
            },
        }
    }
    metrics.connection_closed();
}

/// What a connection's timer is for.
#[derive(Clone, Copy)]
enum Timer {
    /// No request for the keep-alive timeout: close gracefully.
    Idle,
    /// The client does not read what it is sent: drop the connection.
    Abandon,
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Requests in flight on a connection, since when it has had none, and
/// since when a response has been waiting for its client to read it.
#[derive(Clone, Copy)]
struct Activity {
    in_flight: usize,
    since: Instant,
    unread_since: Option<Instant>,
}

/// A request in flight, from its head to the end of its response body.
struct Busy(Arc<watch::Sender<Activity>>);

impl Busy {
    fn begin(activity: &Arc<watch::Sender<Activity>>) -> Self {
        activity.send_modify(|a| a.in_flight += 1);
        Self(Arc::clone(activity))
    }

    /// Notes whether the response is waiting on the client: hyper asks for
    /// the next frame only once it could write the last one.
    fn waiting_on_client(&self, waiting: bool) {
        self.0.send_if_modified(|a| {
            let was = a.unread_since.is_some();
            a.unread_since = waiting.then(Instant::now);
            was || waiting
        });
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            a.since = Instant::now();
            a.unread_since = None;
        });
    }
}

/// A response body that keeps its request counted as in flight until it
/// has been sent (or dropped), and notes when the client stops reading.
struct Tracked {
    body: Body,
    busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        // A frame handed over: until hyper asks again, it is writing it.
        self.busy
            .waiting_on_client(matches!(polled, Poll::Ready(Some(Ok(_)))));
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
