//! Faults with real processes: Redis stopped and restarted under a running
//! server, the server SIGKILLed mid-upload, and SIGTERM with an upload in
//! flight. Everything runs on 127.0.0.1; every process a test starts is
//! stopped by a drop guard, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use airlock::config::{CacheBackendKind, Config};
use bytes::Bytes;

use crate::common::*;
use crate::harness::*;
use crate::served::{ServeSetup, files_under};

/// A port that was free a moment ago on 127.0.0.1 (it may be taken by the
/// time it is used: only for Redis, which cannot report a port it chose).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `picture.png` with a unique trailer after its IEND chunk: still a valid
/// PNG, but bytes no other upload has.
fn unique_png(tag: &str) -> Bytes {
    let mut bytes = fixture_bytes("picture.png").to_vec();
    bytes.extend_from_slice(format!("{tag}-{}", uuid::Uuid::new_v4()).as_bytes());
    bytes.into()
}

// ---------------------------------------------------------------------------
// A private Redis.

/// A Redis started with `scripts/redis.sh start PORT DIR`; killed on drop.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// Starts one on a free port. Redis cannot listen on port 0 and report
    /// the port it got, so the port is picked beforehand and may be taken
    /// by then (by another test or another suite on the machine): then it
    /// starts again on another.
    fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        let mut failures = Vec::new();
        while let Err(failure) = redis.try_start() {
            failures.push(failure);
            assert!(failures.len() < 5, "no private redis: {failures:#?}");
            redis.port = free_port();
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it again on the same port and directory (the server under
    /// test knows only that port).
    fn restart(&self) {
        if let Err(failure) = self.try_start() {
            panic!("redis did not come back: {failure}");
        }
    }

    /// Starts it on `self.port`; an error if it did not start, or if what
    /// answers there is another Redis.
    fn try_start(&self) -> Result<(), String> {
        let out = Command::new(root().join("scripts/redis.sh"))
            .arg("start")
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .output()
            .unwrap();
        if !out.status.success() {
            self.kill();
            return Err(format!(
                "scripts/redis.sh start {}: {}{}{}",
                self.port,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
            ));
        }
        let dir = self
            .cli(&["config", "get", "dir"])
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        let ours = self.dir.path().canonicalize().unwrap();
        if !dir.lines().any(|line| Path::new(line.trim()) == ours) {
            self.kill();
            return Err(format!(
                "another redis answers on {} (its dir: {dir:?})",
                self.port
            ));
        }
        Ok(())
    }

    /// SIGKILLs the Redis of this directory if it runs: Redis removes its
    /// pid file when it shuts down, so one that is still there names a
    /// Redis that did not.
    fn kill(&self) {
        let pid_file = self.dir.path().join("redis.pid");
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.trim())
                .stderr(Stdio::null())
                .status();
            let _ = std::fs::remove_file(&pid_file);
        }
    }

    fn cli(&self, args: &[&str]) -> Option<std::process::Output> {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()
    }

    fn answers(&self) -> bool {
        self.cli(&["ping"])
            .is_some_and(|out| String::from_utf8_lossy(&out.stdout).contains("PONG"))
    }

    /// `shutdown nosave`, then waits until nothing answers on the port.
    async fn stop(&self) {
        let _ = self.cli(&["shutdown", "nosave"]);
        let gone = eventually(Duration::from_secs(5), || async {
            (!self.answers()).then_some(())
        })
        .await;
        assert!(gone.is_some(), "redis on {} did not stop", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // Not `shutdown` on the port: once ours is stopped, another Redis may
        // listen there.
        self.kill();
    }
}

/// Uploads `bytes` as a PNG; the record, and how long the request took.
async fn timed_upload(server: &TestServer, bytes: &Bytes) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let response = server.upload(ALICE, bytes.clone(), "image/png", "").await;
    let record = json(response, 201).await;
    (record, started.elapsed())
}

async fn readyz(server: &TestServer) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let response = server.http.get(server.url("/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap();
    (status, body, started.elapsed())
}

/// Bound on one request while Redis is down: fault containment, not a
/// benchmark (the real bound is the 200 ms cache op timeout per call).
const DOWN_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_uploads_still_succeed_and_recover() {
    let test_started = Instant::now();
    let redis = PrivateRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(Backends::Local, dir.path());
    config.cache.backend = CacheBackendKind::Redis;
    config.cache.redis_url = redis.url();
    // Generous enough for a loaded CI machine, far below the 5 s bound.
    config.cache.op_timeout_ms = 500;
    let server = TestServer::with_config(config, dir).await;

    // The cache works: the second upload of X is flagged as a duplicate.
    let x = unique_png("x");
    let (first, _) = timed_upload(&server, &x).await;
    assert_eq!(first["metadata"]["sha256"], sha(&x), "{first}");
    assert!(first["metadata"].get("duplicate-of").is_none(), "{first}");
    let (second, _) = timed_upload(&server, &x).await;
    assert_eq!(
        second["metadata"]["duplicate-of"], first["id"],
        "the cache records the first upload: {second}"
    );
    let (status, body, _) = readyz(&server).await;
    assert_eq!(status, 200, "{body}");

    // Redis goes away.
    redis.stop().await;
    let y = unique_png("y");
    for attempt in 0..4 {
        let (record, took) = timed_upload(&server, &y).await;
        eprintln!("redis down: upload {attempt} took {took:?}");
        assert!(
            took < DOWN_BOUND,
            "upload {attempt} took {took:?} with redis down"
        );
        assert_eq!(record["metadata"]["sha256"], sha(&y), "{record}");
        assert!(
            record["metadata"].get("duplicate-of").is_none(),
            "nothing can be remembered while redis is down: {record}"
        );
        let skipped = record["skipped"].as_array().cloned().unwrap_or_default();
        assert!(
            !skipped.iter().any(|s| s["plugin"] == "sha256"),
            "sha256 treats `unavailable` as no duplicate and still accepts: {record}"
        );
    }
    let (status, body, took) = readyz(&server).await;
    eprintln!("redis down: readyz took {took:?}");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["cache"]["backend"], "redis", "{body}");
    assert_eq!(body["cache"]["status"], "unavailable", "{body}");
    assert_eq!(body["storage"]["status"], "ok", "{body}");
    assert!(took < DOWN_BOUND, "readyz took {took:?} with redis down");

    // Redis comes back on the same port (empty: it saved nothing).
    redis.restart();
    let restarted = Instant::now();
    let recovered = eventually(Duration::from_secs(10), || async {
        let z = unique_png("z");
        let (first, _) = timed_upload(&server, &z).await;
        let (second, took) = timed_upload(&server, &z).await;
        assert!(took < DOWN_BOUND, "upload took {took:?} while recovering");
        (second["metadata"]["duplicate-of"] == first["id"]).then_some(())
    })
    .await;
    assert!(
        recovered.is_some(),
        "uploads did not use the cache again within 10 s of redis restarting"
    );
    eprintln!(
        "cache in use again {:?} after redis restarted",
        restarted.elapsed()
    );
    let (status, body, _) = readyz(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cache"]["status"], "ok", "{body}");

    server.stop().await;
    eprintln!("total {:?}", test_started.elapsed());
}

// ---------------------------------------------------------------------------
// The real binary as a child process.

/// The standard config cut down to one client (alice) and the `sha256`
/// processor, with a shutdown grace of `grace_seconds`, changed by
/// `adjust`.
fn setup_with(grace_seconds: u64, adjust: impl FnOnce(&mut Config)) -> ServeSetup {
    ServeSetup::new(Backends::Local, |config| {
        config.server.shutdown_grace_seconds = grace_seconds;
        config.clients.retain(|client| client.name == "alice");
        config.plugins.retain(|plugin| plugin.name == "sha256");
        adjust(config);
    })
}

fn setup(grace_seconds: u64) -> ServeSetup {
    setup_with(grace_seconds, |_| {})
}

/// Where the server keeps temp files.
fn tmp(setup: &ServeSetup) -> PathBuf {
    setup.data().join(".tmp")
}

/// A body of `chunks` chunks of `chunk_size` bytes, one every `every`.
fn slow_body(chunks: usize, chunk_size: usize, every: Duration) -> (Bytes, reqwest::Body) {
    let seed = uuid::Uuid::new_v4().as_bytes()[0] as usize;
    let content: Bytes = (0..chunks * chunk_size)
        .map(|i| ((i * 31 + seed) % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let source = content.clone();
    let stream = futures::stream::unfold(0usize, move |i| {
        let source = source.clone();
        async move {
            if i == chunks {
                return None;
            }
            if i > 0 {
                // The client's pace, not a wait for the server.
                tokio::time::sleep(every).await;
            }
            let chunk = source.slice(i * chunk_size..(i + 1) * chunk_size);
            Some((Ok::<_, std::io::Error>(chunk), i + 1))
        }
    });
    (content, reqwest::Body::wrap_stream(stream))
}

/// Sends `body` as an upload in a task of its own.
fn spawn_upload(
    base: &str,
    body: reqwest::Body,
) -> tokio::task::JoinHandle<Result<(u16, String), reqwest::Error>> {
    let url = format!("{base}/v1/uploads?filename=slow.bin");
    tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(url)
            .bearer_auth(ALICE)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    })
}

/// The `.part` files in `dir` and their sizes.
fn part_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "part"))
        .map(|p| {
            let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            (p, size)
        })
        .collect()
}

/// Waits until the server has written at least `min` bytes of a `.part`
/// file and it has grown since first seen.
async fn wait_for_growing_part(tmp: &Path, min: u64) -> (PathBuf, u64) {
    let first = eventually(Duration::from_secs(10), || async {
        part_files(tmp).into_iter().find(|(_, size)| *size > 0)
    })
    .await
    .expect("no .part file with content appeared in .tmp/");
    eventually(Duration::from_secs(10), || async {
        part_files(tmp)
            .into_iter()
            .find(|(path, size)| *path == first.0 && *size > first.1 && *size >= min)
    })
    .await
    .unwrap_or_else(|| panic!("{} did not grow past {min} bytes", first.0.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_upload_leaves_no_partial_upload_and_temp_files_are_cleaned() {
    let test_started = Instant::now();
    let setup = setup(5);
    let mut server = setup.serve("first").await;

    // 2 MiB over ~3 s.
    let (_, body) = slow_body(32, 64 << 10, Duration::from_millis(95));
    let upload = spawn_upload(&server.base(), body);
    let (part, size) = wait_for_growing_part(&tmp(&setup), 256 << 10).await;
    eprintln!("{} has {size} bytes: SIGKILL", part.display());
    server.child.kill().unwrap();
    let status = server.wait_exit(Duration::from_secs(5)).await;
    assert!(status.is_some(), "airlock did not die on SIGKILL");

    let outcome = tokio::time::timeout(Duration::from_secs(10), upload)
        .await
        .expect("the client did not notice the server dying")
        .unwrap();
    assert!(
        !matches!(outcome, Ok((201, _))),
        "an upload cut off by SIGKILL cannot have been accepted: {outcome:?}"
    );

    // Nothing of that upload was committed; its temp file is still there.
    let uploads = files_under(&setup.data().join("uploads"));
    assert!(
        uploads.is_empty(),
        "a killed upload left files under uploads/: {uploads:?}"
    );
    assert!(
        part.exists(),
        "SIGKILL runs no cleanup, so the .part file is still there"
    );
    drop(server);

    // A restart removes the leftovers before serving.
    let server = setup.serve("second").await;
    let left: Vec<_> = std::fs::read_dir(tmp(&setup))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "temp files survived a restart: {left:?}");

    // And the service works: a fresh upload round-trips byte-exact.
    let http = reqwest::Client::new();
    let bytes: Bytes = (0..300_000u32)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<_>>()
        .into();
    let response = http
        .post(server.url("/v1/uploads?filename=after.bin"))
        .bearer_auth(ALICE)
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    let record = json(response, 201).await;
    assert_eq!(record["sha256"], sha(&bytes), "{record}");
    assert_eq!(record["metadata"]["sha256"], sha(&bytes), "{record}");
    let id = record["id"].as_str().unwrap();
    let got = http
        .get(server.url(&format!("/v1/uploads/{id}/content")))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), bytes);
    let stored = files_under(&setup.data().join("uploads"));
    assert!(
        stored
            .iter()
            .all(|p| p.starts_with(setup.data().join("uploads").join(id))),
        "only the fresh upload is stored: {stored:?}"
    );
    drop(server);
    eprintln!("total {:?}", test_started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_uploads() {
    let test_started = Instant::now();
    const GRACE: Duration = Duration::from_secs(5);
    let setup = setup(GRACE.as_secs());
    let mut server = setup.serve("server").await;

    // 1 MiB over ~1.5 s.
    let (content, body) = slow_body(16, 64 << 10, Duration::from_millis(100));
    let upload = spawn_upload(&server.base(), body);
    wait_for_growing_part(&tmp(&setup), 128 << 10).await;
    assert!(!upload.is_finished(), "the upload finished too early");

    server.terminate();
    let termed = Instant::now();

    // New connections are refused while the upload is still being drained.
    let addr = server.addr;
    let refused = eventually(Duration::from_secs(2), || async {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "new connections still accepted 2 s after SIGTERM:\n{}",
        server.log()
    );
    assert!(
        !upload.is_finished(),
        "the upload finished before the refusal could be seen while draining"
    );
    eprintln!(
        "connections refused {:?} after SIGTERM, upload still in flight",
        termed.elapsed()
    );

    let outcome = tokio::time::timeout(Duration::from_secs(10), upload)
        .await
        .expect("the in-flight upload did not finish")
        .unwrap();
    let (status, text) = outcome.unwrap_or_else(|e| {
        panic!(
            "the in-flight upload failed after SIGTERM: {e}\n{}",
            server.log()
        )
    });
    assert_eq!(status, 201, "{text}");
    eprintln!("upload answered {:?} after SIGTERM", termed.elapsed());
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["size"], content.len(), "{record}");
    assert_eq!(record["sha256"], sha(&content), "{record}");
    assert_eq!(record["metadata"]["sha256"], sha(&content), "{record}");

    let exit = server
        .wait_exit(GRACE.saturating_sub(termed.elapsed()))
        .await;
    let Some(exit) = exit else {
        panic!(
            "airlock still running {:?} after SIGTERM (grace {GRACE:?}):\n{}",
            termed.elapsed(),
            server.log()
        );
    };
    assert!(exit.success(), "exit {exit}:\n{}", server.log());
    eprintln!("exited {exit} {:?} after SIGTERM", termed.elapsed());

    // The drained upload is committed whole.
    let id = record["id"].as_str().unwrap();
    let dir = setup.data().join("uploads").join(id);
    assert!(dir.join("record.json").is_file(), "{}", dir.display());
    assert_eq!(std::fs::read(dir.join("content")).unwrap(), content);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "something still listens on {addr}"
    );
    eprintln!("total {:?}", test_started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_cannot_hold_shutdown_past_the_grace_period() {
    const GRACE: Duration = Duration::from_secs(1);
    let setup = setup(GRACE.as_secs());
    let mut server = setup.serve("server").await;
    // 64 KiB, then nothing for a minute.
    let (_, body) = slow_body(2, 64 << 10, Duration::from_secs(60));
    let upload = spawn_upload(&server.base(), body);
    // Read by the server (a body this small stays in memory: no temp file
    // shows it).
    let receiving = eventually(Duration::from_secs(10), || async {
        (server.metric("airlock_upload_bytes_total").await >= (64 << 10) as f64).then_some(())
    })
    .await;
    assert!(receiving.is_some(), "the upload never reached the server");
    server.terminate();
    let termed = Instant::now();
    let exit = server.wait_exit(GRACE + Duration::from_secs(4)).await;
    let Some(exit) = exit else {
        panic!(
            "still running {:?} after SIGTERM with a {GRACE:?} grace:\n{}",
            termed.elapsed(),
            server.log()
        );
    };
    assert!(exit.success(), "exit {exit}:\n{}", server.log());
    // The cut-off upload is not stored.
    assert!(files_under(&setup.data().join("uploads")).is_empty());
    upload.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_content_and_record_leaves_an_orphan_that_is_swept() {
    let setup = setup_with(5, |config| {
        config.storage.orphan_grace_seconds = 1;
        config.storage.orphan_sweep_interval_seconds = 1;
    });
    let mut server = setup
        .serve_with("crashing", &[("AIRLOCK_TEST_FAULT", "after-content")])
        .await;
    let http = reqwest::Client::new();
    let upload = http
        .post(server.url("/v1/uploads?filename=lost.bin"))
        .bearer_auth(ALICE)
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; 200_000])
        .send()
        .await;
    assert!(
        !matches!(&upload, Ok(r) if r.status() == 201),
        "the crash point did not fire: {upload:?}"
    );
    let exit = server.wait_exit(Duration::from_secs(10)).await;
    assert!(
        exit.is_some_and(|e| !e.success()),
        "airlock did not crash at the fault point:\n{}",
        server.log()
    );
    // The crash left content that no record owns.
    let uploads = setup.data().join("uploads");
    let left = files_under(&uploads);
    assert!(
        left.len() == 1 && left[0].ends_with("content"),
        "expected one orphaned content file: {left:?}"
    );
    drop(server);

    let server = setup.serve("restarted").await;
    // Counted once the sweep is done with it.
    let swept = eventually(Duration::from_secs(15), || async {
        let metrics = http
            .get(server.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metrics
            .contains("airlock_orphans_swept_total{kind=\"content\"} 1")
            .then_some(())
    })
    .await;
    assert!(
        swept.is_some(),
        "the orphan was not swept:\n{}",
        server.log()
    );
    let left = files_under(&uploads);
    assert!(left.is_empty(), "{left:?}");
}
