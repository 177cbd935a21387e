//! A real Airlock server on 127.0.0.1:0 for end-to-end tests, on any mix of
//! storage (local disk, the real S3 server) and cache (memory, real Redis).

use std::time::Duration;

use airlock::admin::ConfigSource;
use airlock::app::App;
use airlock::budget::Budget;
use airlock::cache::CachePolicy;
use airlock::config::{
    CacheBackendKind, ClientConfig, Config, FailurePolicy, PluginConfig, StorageBackend,
};
use airlock::runtime::HookKind;
use airlock::storage::S3Settings;
use airlock::supervisor::Containment;
use tokio::sync::oneshot;

use crate::common::*;

pub const ALICE: &str = "alice-key-0123456789abcdef";
pub const BOB: &str = "bob-key-0123456789abcdef00";

/// Which real backends a server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    /// Local disk + in-memory cache (the embedded defaults).
    Local,
    /// The S3 server + Redis.
    S3Redis,
}

/// S3 settings of the test S3 server, from `scripts/s3-server.sh start`.
pub fn s3_settings() -> S3Settings {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the test command (scripts/test.sh), or eval \"$(scripts/s3-server.sh start)\"")
        })
    };
    S3Settings {
        bucket: var("AIRLOCK_TEST_S3_BUCKET"),
        region: var("AIRLOCK_TEST_S3_REGION"),
        endpoint: Some(var("AIRLOCK_TEST_S3_ENDPOINT")),
        force_path_style: true,
        access_key_id: Some(var("AIRLOCK_TEST_S3_ACCESS_KEY_ID")),
        secret_access_key: Some(var("AIRLOCK_TEST_S3_SECRET_ACCESS_KEY")),
        prefix: format!("test-{}/", uuid::Uuid::new_v4().simple()),
        ..S3Settings::default()
    }
}

/// Redis for tests: `AIRLOCK_TEST_REDIS_URL`, or the machine's 6379.
pub fn redis_url() -> String {
    std::env::var("AIRLOCK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A plugin entry for the config.
pub fn plugin(
    name: &str,
    hook: HookKind,
    order: i32,
    on_failure: FailurePolicy,
    budget: Budget,
) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        component: plugin_path(name),
        hook,
        order,
        on_failure,
        budget,
        cache: CachePolicy::default(),
        // The tests share two loaded cores: a bulkhead slot can take longer
        // than the default 100 ms to free, and a refusal would fail a test
        // that is not about it (`containment.rs` tests the bulkhead).
        containment: Containment {
            max_wait_ms: 10_000,
            ..Containment::default()
        },
    }
}

/// `infinite-loop` as a fail-open processor that spins for its whole
/// `timeout_ms` at every turn, one turn at a time (`max_concurrency` 1,
/// `max_wait_ms` 1), quarantined after `quarantine_after` stops in 60 s.
pub fn spinner(timeout_ms: u64, quarantine_after: u32) -> PluginConfig {
    let mut spinner = plugin(
        "infinite-loop",
        HookKind::Processor,
        5,
        FailurePolicy::FailOpen,
        Budget {
            fuel: u64::MAX / 4,
            timeout_ms,
            ..roomy()
        },
    );
    spinner.containment = Containment {
        max_concurrency: 1,
        max_wait_ms: 1,
        quarantine_after,
        window_seconds: 60,
    };
    spinner
}

/// The standard test config: two clients (bob limited to 64 KiB of images)
/// and the four example plugins.
pub fn config(backends: Backends, dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.storage.path = dir.to_path_buf();
    config.runtime.max_instances = 32;
    config.runtime.compiled_cache_dir = Some(std::env::temp_dir().join("airlock-test-compiled"));
    config.runtime.compiler_program = Some(compiler());
    config.cache.prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    if backends == Backends::S3Redis {
        config.storage.backend = StorageBackend::S3;
        config.storage.s3 = s3_settings();
        config.cache.backend = CacheBackendKind::Redis;
        config.cache.redis_url = redis_url();
    }
    config.clients = vec![
        ClientConfig {
            name: "alice".into(),
            api_key: ALICE.into(),
            max_body_bytes: None,
            allowed_content_types: Vec::new(),
            max_concurrent_uploads: None,
        },
        ClientConfig {
            name: "bob".into(),
            api_key: BOB.into(),
            max_body_bytes: Some(64 << 10),
            allowed_content_types: vec!["image/*".into()],
            max_concurrent_uploads: None,
        },
    ];
    config.plugins = vec![
        plugin(
            "content-sniff",
            HookKind::Processor,
            10,
            FailurePolicy::FailClosed,
            roomy(),
        ),
        plugin(
            "exif-strip",
            HookKind::Processor,
            20,
            FailurePolicy::FailOpen,
            roomy(),
        ),
        plugin(
            "sha256",
            HookKind::Processor,
            30,
            FailurePolicy::FailOpen,
            roomy(),
        ),
        plugin(
            "thumbnail",
            HookKind::Extension,
            10,
            FailurePolicy::FailOpen,
            roomy(),
        ),
    ];
    config
}

/// A running server.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts the standard config on `backends`.
    pub async fn start(backends: Backends) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = config(backends, dir.path());
        Self::with_config(config, dir).await
    }

    /// Starts `config` (whose storage path should be inside `dir`).
    pub async fn with_config(config: Config, dir: tempfile::TempDir) -> Self {
        let source = ConfigSource::Fixed(Box::new(config.clone()));
        Self::with_source(config, source, dir).await
    }

    /// Starts `config`, read from `source` (for reload).
    pub async fn with_source(
        mut config: Config,
        source: ConfigSource,
        dir: tempfile::TempDir,
    ) -> Self {
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        // Configs read from a file name no compiler: the test binary is not
        // the `airlock` executable the compile jail runs.
        config.runtime.compiler_program.get_or_insert_with(compiler);
        let app = App::build(&config, source)
            .await
            .unwrap_or_else(|e| panic!("start: {e}"));
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            airlock::http::run(app, listener, async {
                let _ = stopped.await;
            })
            .await;
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self {
            base,
            http,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Raw upload of `bytes` as `content_type` by the client with `key`.
    pub async fn upload(
        &self,
        key: &str,
        bytes: impl Into<reqwest::Body>,
        content_type: &str,
        query: &str,
    ) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/v1/uploads?filename=file{query}")))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    /// Raw upload whose response must have `status`; its JSON body.
    pub async fn upload_json(
        &self,
        key: &str,
        bytes: impl Into<reqwest::Body>,
        content_type: &str,
        query: &str,
        status: u16,
    ) -> serde_json::Value {
        json(self.upload(key, bytes, content_type, query).await, status).await
    }

    /// Raw upload of the PNG fixture; its JSON body, which must have `status`.
    pub async fn upload_picture(&self, key: &str, query: &str, status: u16) -> serde_json::Value {
        self.upload_json(
            key,
            fixture_bytes("picture.png"),
            "image/png",
            query,
            status,
        )
        .await
    }

    /// Multipart upload of `form` by the client with `key`.
    pub async fn upload_form(
        &self,
        key: &str,
        form: reqwest::multipart::Form,
    ) -> reqwest::Response {
        self.http
            .post(self.url("/v1/uploads"))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// GET `path` as the client with `key`.
    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// DELETE `path` as the client with `key`.
    pub async fn delete(&self, key: &str, path: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.get("", "/metrics").await.text().await.unwrap()
    }

    /// The sum of the samples of `/metrics` whose name and labels start
    /// with `prefix` (0 when there is none).
    pub async fn metric(&self, prefix: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Stops gracefully (drains the post-store queue).
    pub async fn stop(self) {
        drop(self.stop_keeping_files().await);
    }

    /// Stops gracefully and hands over the storage dir for inspection.
    pub async fn stop_keeping_files(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.dir
    }
}

/// The JSON body of a response that must have `status`.
pub async fn json(response: reqwest::Response, status: u16) -> serde_json::Value {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Runs each suite function as its own test, once per backend mix.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::harness::Backends::Local).await })*
        }
        mod s3_redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::harness::Backends::S3Redis).await })*
        }
    };
}
