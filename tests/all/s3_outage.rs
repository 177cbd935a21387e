//! The S3 server stopped mid-run: uploads fail fast with 503, nothing that
//! got a 201 is lost, and the service recovers when S3 is back. Runs its own
//! Garage node (other ports, own data) so the shared test node is untouched.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{eventually, sha};
use airlock::config::StorageBackend;
use airlock::storage::S3Settings;

use crate::harness::*;

fn garage_bin() -> PathBuf {
    std::env::var_os("AIRLOCK_GARAGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("AIRLOCK_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/airlock")
                });
            cache.join("tools/bin/garage")
        })
}

/// A port that was free a moment ago (Garage cannot report a port it chose:
/// see [`Garage::started`]).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private single-node Garage that can be stopped and started again on
/// the same data.
struct Garage {
    conf: PathBuf,
    s3_port: u16,
    admin_port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

const KEY_ID: &str = "GK0123456789abcdef01234567";
const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const BUCKET: &str = "outage";

impl Garage {
    /// A node started on free ports. They were free when picked but may be
    /// taken by the time Garage binds them (by another test or another suite
    /// on the machine): then a new node on other ports.
    async fn started() -> Self {
        let mut failures = Vec::new();
        loop {
            let mut garage = Self::new();
            match garage.try_start().await {
                Ok(()) => return garage,
                Err(failure) => failures.push(failure),
            }
            assert!(failures.len() < 5, "no private garage: {failures:#?}");
        }
    }

    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let conf = dir.path().join("garage.toml");
        let root = dir.path();
        std::fs::write(
            &conf,
            format!(
                "metadata_dir = {meta:?}\ndata_dir = {data:?}\ndb_engine = \"sqlite\"\nreplication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\nrpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                 rpc_secret = \"{SECRET}\"\n[s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin_port}\"\n",
                meta = root.join("meta"),
                data = root.join("data"),
            ),
        )
        .unwrap();
        Self {
            conf,
            s3_port,
            admin_port,
            child: None,
            _dir: dir,
        }
    }

    /// Starts it again on the same ports and data.
    async fn start(&mut self) {
        if let Err(failure) = self.try_start().await {
            panic!("garage did not come back: {failure}");
        }
    }

    /// Starts it and waits until it serves the bucket; on failure it is
    /// stopped and the error holds its log.
    async fn try_start(&mut self) -> Result<(), String> {
        let bin = garage_bin();
        assert!(
            bin.exists(),
            "{} missing: run scripts/install-s3-server.sh",
            bin.display()
        );
        let log = std::fs::File::create(self.conf.with_extension("log")).unwrap();
        let child = Command::new(bin)
            .args([
                "-c",
                self.conf.to_str().unwrap(),
                "server",
                "--single-node",
                "--default-bucket",
            ])
            .env("GARAGE_DEFAULT_ACCESS_KEY", KEY_ID)
            .env("GARAGE_DEFAULT_SECRET_KEY", SECRET)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let health = format!("http://127.0.0.1:{}/health", self.admin_port);
        let http = reqwest::Client::new();
        let ready = eventually(Duration::from_secs(30), || {
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            let (http, health, conf) = (&http, &health, &self.conf);
            async move {
                if let Some(status) = exited {
                    return Some(Err(format!("exited with {status}")));
                }
                let healthy = http
                    .get(health)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                (healthy && bucket_ready(conf)).then_some(Ok(()))
            }
        })
        .await
        .unwrap_or_else(|| Err("not ready within 30 s".into()));
        ready.map_err(|e| {
            self.kill();
            let log = std::fs::read_to_string(self.conf.with_extension("log")).unwrap_or_default();
            format!("garage {e}:\n{log}")
        })
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn settings(&self) -> S3Settings {
        S3Settings {
            bucket: BUCKET.into(),
            region: "garage".into(),
            endpoint: Some(format!("http://127.0.0.1:{}", self.s3_port)),
            force_path_style: true,
            access_key_id: Some(KEY_ID.into()),
            secret_access_key: Some(SECRET.into()),
            timeout_ms: 2_000,
            ..S3Settings::default()
        }
    }
}

/// Whether the node of `conf` has the bucket.
fn bucket_ready(conf: &std::path::Path) -> bool {
    Command::new(garage_bin())
        .args(["-c", conf.to_str().unwrap(), "bucket", "info", BUCKET])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn upload_status(server: &TestServer, bytes: Vec<u8>) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let response = server
        .upload(ALICE, bytes, "application/octet-stream", "")
        .await;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or_default();
    (status, body, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_mid_run_fails_fast_loses_nothing_and_recovers() {
    let mut garage = Garage::started().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(Backends::Local, dir.path());
    config.storage.backend = StorageBackend::S3;
    config.storage.s3 = garage.settings();
    let server = TestServer::with_config(config, dir).await;

    let mut stored = Vec::new();
    for i in 0..3u8 {
        let bytes = vec![i; 50_000];
        let (status, record, _) = upload_status(&server, bytes.clone()).await;
        assert_eq!(status, 201, "{record}");
        stored.push((record["id"].as_str().unwrap().to_string(), sha(&bytes)));
    }

    garage.kill();
    for i in 0..3u8 {
        let (status, body, took) = upload_status(&server, vec![100 + i; 50_000]).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "storage_unavailable");
        assert!(
            took < Duration::from_secs(10),
            "an S3 outage must fail fast, took {took:?}"
        );
    }
    let ready = server.get(ALICE, "/readyz").await;
    assert_eq!(ready.status(), 503);

    garage.start().await;
    for (id, digest) in &stored {
        let got = server
            .get(ALICE, &format!("/v1/uploads/{id}/content"))
            .await;
        assert_eq!(got.status(), 200);
        assert_eq!(
            &sha(&got.bytes().await.unwrap()),
            digest,
            "upload {id} survived the outage"
        );
    }
    let (status, body, _) = upload_status(&server, vec![7; 50_000]).await;
    assert_eq!(status, 201, "recovered: {body}");
    server.stop().await;
}
