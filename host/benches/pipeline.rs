//! Pipeline throughput, side by side in one run: 32 clients post a real
//! 187 KB, 2048x1536 JPEG back to back for a fixed time to
//!
//! (a) Airlock on its embedded defaults (the example plugins: content-sniff,
//!     exif-strip, sha256 as processors, thumbnail after the 201);
//! (a') the same with the example processors only (no thumbnail);
//! (b) Airlock with no plugins;
//! (c) a bare axum handler on the same HTTP server doing the same storage
//!     work (stream with SHA-256, a temp file, fsync, rename into place, a
//!     small JSON record written the same way) — the floor;
//! (d) `@tus/server` + `@tus/file-store` (npm), one creation-with-upload
//!     POST per upload — the reference tus server.
//!
//! After (a) it waits for the thumbnails of every upload and reports how
//! long the backlog took to drain, and how many uploads lack a thumbnail.
//!
//!   scripts/build-plugins.sh && cargo bench -p airlock --bench pipeline
//!
//! Env: AIRLOCK_BENCH_SECONDS (default 10 per server), AIRLOCK_BENCH_CLIENTS
//! (32), AIRLOCK_BENCH_ONLY (`b` or `c`: that server alone, to profile it).

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Only the load generator is used here, not the incident's scenarios.
#[allow(dead_code)]
#[path = "../../tests/loadgen/mod.rs"]
mod loadgen;

mod support;
use support::{env_or, repo, walk};

use airlock::admin::ConfigSource;
use airlock::app::App;
use airlock::config::Config;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use futures::StreamExt;
use loadgen::{LoadReport, LoadSpec};
use sha2::{Digest, Sha256};

/// Writes `bytes` to `dest` through a synced temp file in `dir`, then syncs
/// the directory: what Airlock's local store does for every object.
fn write_durably(dir: &Path, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// (c): stream the body to a temp file hashing it, fsync, rename into
/// `uploads/<id>/content`, write `record.json` beside it, answer 201.
async fn bare_upload(State(root): State<Arc<PathBuf>>, body: Body) -> (StatusCode, String) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = root.join("uploads").join(&id);
    let mut stream = body.into_data_stream();
    let mut hasher = Sha256::new();
    let mut chunks = Vec::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        hasher.update(&chunk);
        size += chunk.len() as u64;
        chunks.push(chunk);
    }
    let sha256 = hex::encode(hasher.finalize());
    let record = serde_json::json!({ "id": id, "size": size, "sha256": sha256 }).to_string();
    let answer = record.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let tmp_dir = root.join(".tmp");
        let mut tmp = tempfile::Builder::new().tempfile_in(&tmp_dir)?;
        for chunk in &chunks {
            tmp.write_all(chunk)?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(dir.join("content")).map_err(|e| e.error)?;
        write_durably(&dir, &dir.join("record.json"), record.as_bytes())
    })
    .await
    .unwrap()
    .unwrap();
    (StatusCode::CREATED, answer)
}

async fn load(base_url: String, body: &Bytes, clients: usize, duration: Duration) -> LoadReport {
    loadgen::run(&LoadSpec {
        base_url,
        path: "/v1/uploads?filename=load.jpg".into(),
        headers: Vec::new(),
        api_key: None,
        body: body.clone(),
        content_type: "image/jpeg".into(),
        clients,
        duration,
        max_requests: None,
    })
    .await
}

/// (d): `@tus/server` with `@tus/file-store` (npm, `tests/tus`), each upload
/// one creation-with-upload POST (201, like Airlock's).
async fn tus_server(body: &Bytes, clients: usize, duration: Duration) -> Option<LoadReport> {
    use tokio::io::AsyncBufReadExt;
    let script = repo("tests/tus/tus-server.mjs");
    if !repo("tests/tus/node_modules/@tus/server").is_dir() {
        println!("(d) skipped: run scripts/install-test-clients.sh for @tus/server");
        return None;
    }
    let storage = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .arg(storage.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take()?).lines();
    let line = lines.next_line().await.ok()??;
    let base_url = line.strip_prefix("listening ")?.to_string();
    let report = loadgen::run(&LoadSpec {
        base_url,
        path: "/v1/tus".into(),
        headers: vec![
            ("tus-resumable".into(), "1.0.0".into()),
            ("upload-length".into(), body.len().to_string()),
        ],
        api_key: None,
        body: body.clone(),
        content_type: "application/offset+octet-stream".into(),
        clients,
        duration,
        max_requests: None,
    })
    .await;
    let _ = child.kill().await;
    Some(report)
}

/// Airlock with `config` (storage in a temp dir): the load's report, and
/// for a config with extensions how long the post-store backlog took to
/// drain after the load, and how many uploads lack a derived artifact.
async fn airlock(
    mut config: Config,
    body: &Bytes,
    clients: usize,
    duration: Duration,
) -> (LoadReport, Option<(Duration, usize)>) {
    let storage = tempfile::tempdir().unwrap();
    config.storage.path = storage.path().to_path_buf();
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.max_concurrent_uploads = clients * 2;
    config.runtime.compiler_program = Some(env!("CARGO_BIN_EXE_airlock").into());
    let extensions = config
        .plugins
        .iter()
        .any(|p| p.hook == airlock::runtime::HookKind::Extension);
    let app = App::build(&config, ConfigSource::Fixed(Box::new(config.clone())))
        .await
        .unwrap();
    let jobs = Arc::clone(app.running.service.jobs());
    let listener = airlock::http::bind(config.server.listen).await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(airlock::http::run(app, listener, async {
        let _ = stopped.await;
    }));
    let report = load(base_url, body, clients, duration).await;
    let drained = if extensions {
        let started = Instant::now();
        while jobs.stats().await.unwrap().depth > 0 && started.elapsed() < Duration::from_secs(300)
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let drained_in = started.elapsed();
        let records = walk(&storage.path().join("uploads"), "record.json");
        let without = records
            .iter()
            .filter(|path| {
                let record: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
                record["derived"].as_array().is_none_or(|d| d.is_empty())
            })
            .count();
        Some((drained_in, without))
    } else {
        None
    };
    let _ = stop.send(());
    let _ = server.await;
    (report, drained)
}

async fn bare(body: &Bytes, clients: usize, duration: Duration) -> LoadReport {
    let storage = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(storage.path().join(".tmp")).unwrap();
    let router = Router::new()
        .route("/v1/uploads", post(bare_upload))
        .with_state(Arc::new(storage.path().to_path_buf()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    // The same HTTP server (hyper, Airlock's connection handling) as (a)
    // and (b): only the handler differs.
    let limits = airlock::http::ConnectionLimits {
        max_connections: 1024,
        header_read_timeout: Duration::from_secs(15),
        keep_alive_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(30),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = Arc::new(airlock::metrics::Metrics::new());
    let server = tokio::spawn(airlock::http::serve(
        listener,
        router,
        limits,
        metrics,
        async {
            let _ = stopped.await;
        },
    ));
    let report = load(base_url, body, clients, duration).await;
    let _ = stop.send(());
    let _ = server.await;
    report
}

fn line(name: &str, r: &LoadReport) {
    println!(
        "{name:<34} {:>8.1} uploads/s  p50 {:>7.1} ms  p99 {:>7.1} ms  failed {}",
        r.throughput_rps, r.p50_ms, r.p99_ms, r.failed
    );
}

fn main() {
    let seconds: u64 = env_or("AIRLOCK_BENCH_SECONDS", 10);
    let clients: usize = env_or("AIRLOCK_BENCH_CLIENTS", 32);
    let duration = Duration::from_secs(seconds);
    let body = Bytes::from(std::fs::read(repo("tests/fixtures/photo-2048x1536.jpg")).unwrap());
    println!(
        "body: {} bytes of JPEG (2048x1536); {clients} clients; {seconds} s per server",
        body.len()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let defaults = Config::embedded(&repo("plugins/dist")).unwrap();
    let mut processors = defaults.clone();
    processors
        .plugins
        .retain(|p| p.hook == airlock::runtime::HookKind::Processor);
    let mut none = defaults.clone();
    none.plugins.clear();
    let only = std::env::var("AIRLOCK_BENCH_ONLY").ok();
    match only.as_deref() {
        Some("b") => {
            let (without, _) = runtime.block_on(airlock(none, &body, clients, duration));
            return line("(b) airlock, no plugins", &without);
        }
        Some("c") => {
            let floor = runtime.block_on(bare(&body, clients, duration));
            return line("(c) bare axum, same storage work", &floor);
        }
        _ => {}
    }
    runtime.block_on(async {
        let (with, drained) = airlock(defaults, &body, clients, duration).await;
        let (processing, _) = airlock(processors, &body, clients, duration).await;
        let (without, _) = airlock(none, &body, clients, duration).await;
        let floor = bare(&body, clients, duration).await;
        let tus = tus_server(&body, clients, duration).await;
        line("(a) airlock, embedded defaults", &with);
        line("(a') airlock, example processors", &processing);
        line("(b) airlock, no plugins", &without);
        line("(c) bare axum, same storage work", &floor);
        if let Some(tus) = &tus {
            line("(d) @tus/server + @tus/file-store", tus);
        }
        if let Some((took, missing)) = drained {
            println!(
                "(a) thumbnails: backlog drained {:.1} s after the load; {missing} of {} uploads without one",
                took.as_secs_f64(),
                with.requests - with.failed
            );
        }
        println!(
            "ratios: (a)/(b) {:.2}   (a')/(b) {:.2}   (b)/(c) {:.2}",
            with.throughput_rps / without.throughput_rps,
            processing.throughput_rps / without.throughput_rps,
            without.throughput_rps / floor.throughput_rps,
        );
        if let Some(tus) = &tus {
            println!(
                "        (a)/(d) {:.2}   (b)/(d) {:.2}",
                with.throughput_rps / tus.throughput_rps,
                without.throughput_rps / tus.throughput_rps
            );
        }
    });
}
