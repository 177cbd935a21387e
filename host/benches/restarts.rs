//! Benchmark 2 of issue 12: thumbnails under load, also across a restart.
//!
//! The release binary (`airlock serve`) on the embedded defaults (the
//! example processors, and `thumbnail` after the 201), its storage in a temp
//! dir; 32 clients post a real 187 KB, 2048x1536 JPEG back to back, 2048
//! uploads in all (the issue's `hey -n 2048 -c 32`). Three runs: no
//! restart; SIGTERM once half the uploads are stored; SIGKILL likewise.
//! After a signal the service is started again on the same storage and port
//! while the load goes on (requests that hit the gap fail and were never
//! acknowledged; the load tool does not retry them). Each run reports how long after
//! the load every stored upload had its thumbnail, and how many acknowledged
//! (201) uploads ended without one: "lost" (no record, or a record that
//! never got its thumbnail) or "skipped" (a record naming it as skipped).
//!
//!   scripts/build-plugins.sh && cargo bench -p airlock --bench restarts
//!
//! Env: AIRLOCK_BENCH_UPLOADS (default 2048 per run), AIRLOCK_BENCH_CLIENTS
//! (32).

#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "../../tests/loadgen/mod.rs"]
mod loadgen;

mod support;
use support::{env_or, repo, walk};

use airlock::config::Config;
use bytes::Bytes;
use loadgen::{LoadReport, LoadSpec};

/// Longest a run's load may take.
const LOAD_LIMIT: Duration = Duration::from_secs(300);
/// How long after the load the thumbnails may take before the run gives up.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// `airlock serve` on `config`, its log in `log`.
fn spawn(config: &Path, listen: SocketAddr, log: &Path) -> Child {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config)
        .arg("--listen")
        .arg(listen.to_string())
        .env("RUST_LOG", "warn,airlock=info")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_LISTEN")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Sends `SIG<signal>` to `child` with kill(1).
fn signal_child(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} failed");
}

/// The address of the latest "airlock listening" line in the log.
fn listening(log: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter(|l| l.contains("airlock listening"))
        .find_map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).ok()?;
            line["fields"]["addr"].as_str()?.parse().ok()
        })
}

/// Waits until the service answers `/healthz` on `addr`.
async fn healthy(http: &reqwest::Client, addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("airlock did not answer /healthz on {addr} within 30 s");
}

/// Records on disk, by state of the thumbnail.
#[derive(Debug, Default)]
struct Tally {
    records: usize,
    with_thumbnail: usize,
    skipped: usize,
    pending: usize,
}

fn tally(uploads: &Path) -> Tally {
    let mut t = Tally::default();
    for path in walk(uploads, "record.json") {
        let Ok(bytes) = std::fs::read(&path) else {
            continue; // deleted or being replaced under us: counted next round
        };
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        t.records += 1;
        let listed = |field: &str| {
            record[field].as_array().is_some_and(|a| {
                a.iter()
                    .any(|v| v == "thumbnail" || v["plugin"] == "thumbnail")
            })
        };
        if record["derived"].as_array().is_some_and(|d| !d.is_empty()) {
            t.with_thumbnail += 1;
        } else if listed("skipped") {
            t.skipped += 1;
        } else {
            t.pending += 1;
        }
    }
    t
}

struct Run {
    load: LoadReport,
    /// Time from the end of the load until no record was pending.
    drained: Option<Duration>,
    /// Time the service was away (signal to healthy again).
    away: Option<Duration>,
    tally: Tally,
}

async fn run(signal: Option<&str>, body: &Bytes, clients: usize, uploads: u64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded(&repo("plugins/dist")).unwrap();
    config.storage.path = dir.path().join("data");
    config.server.max_concurrent_uploads = clients * 2;
    let config_path = dir.path().join("airlock.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let log = dir.path().join("airlock.log");
    let http = reqwest::Client::new();

    let mut child = spawn(&config_path, SocketAddr::from(([127, 0, 0, 1], 0)), &log);
    let started = Instant::now();
    let addr = loop {
        if let Some(addr) = listening(&log) {
            break addr;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no listening address logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    healthy(&http, addr).await;

    let spec = LoadSpec {
        base_url: format!("http://{addr}"),
        path: "/v1/uploads?filename=load.jpg".into(),
        headers: Vec::new(),
        api_key: None,
        body: body.clone(),
        content_type: "image/jpeg".into(),
        clients,
        duration: LOAD_LIMIT,
        max_requests: Some(uploads),
    };
    let load = tokio::spawn(async move { loadgen::run(&spec).await });
    let mut away = None;
    let uploads_dir = config.storage.path.join("uploads");
    if let Some(signal) = signal {
        // Mid-load: once half the uploads have their record (a walk of
        // the store, so not too often: it takes CPU from the server).
        while walk(&uploads_dir, "record.json").len() < (uploads / 2) as usize {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sent = Instant::now();
        signal_child(&child, signal);
        let status = tokio::task::block_in_place(|| child.wait()).unwrap();
        println!(
            "  SIG{signal}: exited ({status}) after {:.1} s",
            sent.elapsed().as_secs_f64()
        );
        child = spawn(&config_path, addr, &log);
        healthy(&http, addr).await;
        away = Some(sent.elapsed());
    }
    let load = load.await.unwrap();
    let load_ended = Instant::now();
    let mut drained = None;
    let mut t = tally(&uploads_dir);
    while load_ended.elapsed() < DRAIN_LIMIT {
        if t.pending == 0 {
            drained = Some(load_ended.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        t = tally(&uploads_dir);
    }
    signal_child(&child, "TERM");
    let _ = tokio::task::block_in_place(|| child.wait());
    Run {
        load,
        drained,
        away,
        tally: t,
    }
}

fn main() {
    let uploads: u64 = env_or("AIRLOCK_BENCH_UPLOADS", 2048);
    let clients: usize = env_or("AIRLOCK_BENCH_CLIENTS", 32);
    let body = Bytes::from(std::fs::read(repo("tests/fixtures/photo-2048x1536.jpg")).unwrap());
    println!(
        "body: {} bytes of JPEG (2048x1536); {clients} clients; {uploads} uploads per run; \
         release binary on the embedded defaults",
        body.len()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let runs = [
        ("no restart", None),
        ("SIGTERM mid-load, restarted", Some("TERM")),
        ("SIGKILL mid-load, restarted", Some("KILL")),
    ];
    for (name, signal) in runs {
        let r = runtime.block_on(run(signal, &body, clients, uploads));
        let acked = r.load.statuses.get(&201).copied().unwrap_or(0) as usize;
        // Records beyond the acknowledged uploads are uploads stored just
        // as the signal came, whose 201 never reached the client: they get
        // thumbnails too, and lost is counted against the 201s only.
        let lost = acked.saturating_sub(r.tally.with_thumbnail + r.tally.skipped);
        println!(
            "{name:<30} {:>7.1} uploads/s  201 {acked:>6}  failed {:>4}  records {:>6}  \
             thumbnails {:>6}  skipped {}  lost {lost}  drained {}{}",
            r.load.throughput_rps,
            r.load.failed,
            r.tally.records,
            r.tally.with_thumbnail,
            r.tally.skipped,
            r.drained
                .map(|d| format!("{:.1} s after the load", d.as_secs_f64()))
                .unwrap_or_else(|| format!("NOT within {} s", DRAIN_LIMIT.as_secs())),
            r.away
                .map(|a| format!("  (away {:.1} s)", a.as_secs_f64()))
                .unwrap_or_default(),
        );
    }
}
