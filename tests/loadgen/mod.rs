//! A small closed-loop load generator over real HTTP (a test and bench
//! tool, not part of the service's library): N clients upload the
//! same body back to back for a fixed time. Used by the incident benchmark
//! (`cargo bench --bench incident`) and its shorter integration test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Service base URL (`http://127.0.0.1:PORT`).
    pub base_url: String,
    /// Path and query each upload is POSTed to.
    pub path: String,
    /// Extra request headers (a tus peer's `Upload-Length`…).
    pub headers: Vec<(String, String)>,
    /// Bearer key, if the service has clients.
    pub api_key: Option<String>,
    /// Upload body.
    pub body: Bytes,
    /// Its content type.
    pub content_type: String,
    /// Concurrent clients.
    pub clients: usize,
    /// How long to keep sending.
    pub duration: Duration,
    /// Stop after this many requests in all (or at `duration`, whichever
    /// comes first); `None`: only the duration counts.
    pub max_requests: Option<u64>,
}

/// What came back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Requests completed.
    pub requests: u64,
    /// Responses by status (0 = transport error).
    pub statuses: BTreeMap<u16, u64>,
    /// Uploads that did not get a 201.
    pub failed: u64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
    /// Completed requests per second.
    pub throughput_rps: f64,
    /// Wall time of the run.
    pub elapsed_s: f64,
}

/// Runs `spec` and reports latencies (every request's, not sampled).
pub async fn run(spec: &LoadSpec) -> LoadReport {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(spec.clients)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap_or_default();
    let started = Instant::now();
    let deadline = started + spec.duration;
    let url = format!("{}{}", spec.base_url.trim_end_matches('/'), spec.path);
    let sent_so_far = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = (0..spec.clients)
        .map(|_| {
            let http = http.clone();
            let url = url.clone();
            let spec = spec.clone();
            let sent_so_far = std::sync::Arc::clone(&sent_so_far);
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    let n = sent_so_far.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if spec.max_requests.is_some_and(|max| n >= max) {
                        break;
                    }
                    let sent = Instant::now();
                    let mut request = http
                        .post(&url)
                        .header("content-type", &spec.content_type)
                        .body(spec.body.clone());
                    if let Some(key) = &spec.api_key {
                        request = request.bearer_auth(key);
                    }
                    for (name, value) in &spec.headers {
                        request = request.header(name, value);
                    }
                    let status = match request.send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            // Read the body so the connection is reused.
                            let _ = response.bytes().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    samples.push((status, sent.elapsed()));
                    if status == 0 {
                        // Nobody listening (a restart): the client's pace,
                        // not a wait for an event: a real client backs off
                        // rather than spin through refusals.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                samples
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut report = LoadReport::default();
    for task in tasks {
        for (status, latency) in task.await.unwrap_or_default() {
            *report.statuses.entry(status).or_default() += 1;
            if status != 201 {
                report.failed += 1;
            }
            latencies.push(latency);
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1].as_secs_f64() * 1000.0
    };
    report.requests = latencies.len() as u64;
    report.p50_ms = pct(0.50);
    report.p99_ms = pct(0.99);
    report.max_ms = latencies.last().map_or(0.0, |l| l.as_secs_f64() * 1000.0);
    report.elapsed_s = elapsed.as_secs_f64();
    report.throughput_rps = report.requests as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    report
}

/// The post-mortem's scenario, in three variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// (a) the good plugins only.
    GoodOnly,
    /// (b) plus `cache-storm`, the incident's library, under an operator's
    /// budget and containment.
    WithStorm,
    /// (c) plus `cache-storm` with absurdly high budgets and no breaker:
    /// what containment prevents.
    StormUncontained,
}

/// The admin token of scenario services.
pub const SCENARIO_ADMIN_TOKEN: &str = "loadgen-admin-token-0123456789";

impl Scenario {
    /// The service configuration: local disk under `storage`, Redis at
    /// `redis_url` as the cache, the example plugins from `plugins_dir`.
    pub fn config(
        self,
        plugins_dir: &std::path::Path,
        storage: &std::path::Path,
        redis_url: &str,
    ) -> airlock::config::Config {
        use airlock::budget::Budget;
        use airlock::cache::{CachePolicy, Quota};
        use airlock::config::{CacheBackendKind, Config, FailurePolicy, PluginConfig};
        use airlock::runtime::HookKind;
        use airlock::supervisor::Containment;

        let entry = |name: &str, hook, order, budget| PluginConfig {
            name: name.into(),
            component: plugins_dir.join(format!("{name}.wasm")),
            hook,
            order,
            on_failure: FailurePolicy::FailOpen,
            budget,
            cache: CachePolicy::default(),
            containment: Containment::default(),
        };
        let roomy = Budget {
            fuel: 50_000_000_000,
            timeout_ms: 10_000,
            memory_bytes: 256 << 20,
            ..Budget::default()
        };
        let mut config = Config::default();
        config.storage.path = storage.to_path_buf();
        config.cache.backend = CacheBackendKind::Redis;
        config.cache.redis_url = redis_url.into();
        config.cache.prefix = format!("load{}", uuid::Uuid::new_v4().simple());
        config.admin.token = SCENARIO_ADMIN_TOKEN.into();
        config.plugins = vec![
            entry("content-sniff", HookKind::Processor, 10, roomy),
            entry("exif-strip", HookKind::Processor, 20, roomy),
            entry("sha256", HookKind::Processor, 30, roomy),
            entry("thumbnail", HookKind::Extension, 10, roomy),
        ];
        let mut storm = entry("cache-storm", HookKind::Processor, 25, Budget::default());
        match self {
            Scenario::GoodOnly => return config,
            Scenario::WithStorm => {
                // An operator's settings for an untrusted plugin: small
                // budget, two at a time, quarantined after three stops.
                storm.budget = Budget {
                    cache_calls: 64,
                    ..Budget::default()
                };
                storm.containment = Containment {
                    max_concurrency: 2,
                    max_wait_ms: 50,
                    quarantine_after: 3,
                    window_seconds: 60,
                };
            }
            Scenario::StormUncontained => {
                storm.budget = Budget {
                    fuel: u64::MAX / 4,
                    timeout_ms: 10_000,
                    cache_calls: u64::MAX / 4,
                    cache_write_bytes: u64::MAX / 4,
                    ..Budget::default()
                };
                storm.cache = CachePolicy {
                    quota: Quota {
                        max_keys: u64::MAX / 4,
                        max_bytes: u64::MAX / 4,
                    },
                    max_ttl_seconds: 60,
                    ..CachePolicy::default()
                };
                storm.containment = Containment {
                    max_concurrency: 1024,
                    max_wait_ms: 60_000,
                    quarantine_after: u32::MAX,
                    window_seconds: 1,
                };
            }
        }
        config.plugins.push(storm);
        config
    }
}

/// A scenario could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The service did not start.
    #[error(transparent)]
    Start(#[from] airlock::assemble::StartError),
    /// Local I/O (temp dir, listener).
    #[error("scenario setup: {0}")]
    Io(#[from] std::io::Error),
}

/// What one scenario run showed.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Which scenario.
    pub scenario: Scenario,
    /// Client-side latencies and failures.
    pub load: LoadReport,
    /// Commands Redis processed per second during the run (all clients of
    /// that Redis).
    pub redis_commands_per_s: f64,
    /// Times `cache-storm` actually ran (0 without it).
    pub storm_invocations: u64,
    /// Its state at the end (`active`, `quarantined`).
    pub storm_state: Option<String>,
}

/// Starts the service for `scenario` in this process, runs the load, stops
/// it, and reports.
pub async fn run_scenario(
    scenario: Scenario,
    plugins_dir: &std::path::Path,
    redis_url: &str,
    body: Bytes,
    clients: usize,
    duration: Duration,
    compiler: &std::path::Path,
) -> Result<ScenarioReport, ScenarioError> {
    use airlock::admin::ConfigSource;
    use airlock::app::App;

    let storage = tempfile::tempdir()?;
    let mut config = scenario.config(plugins_dir, storage.path(), redis_url);
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.max_concurrent_uploads = clients.max(1) * 2;
    config.runtime.compiler_program = Some(compiler.to_path_buf());
    let app = App::build(&config, ConfigSource::Fixed(Box::new(config.clone()))).await?;
    let admin = std::sync::Arc::clone(&app.admin);
    let listener = airlock::http::bind(config.server.listen).await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(airlock::http::run(app, listener, async {
        let _ = stopped.await;
    }));

    let commands_before = redis_commands(redis_url).await;
    let load = run(&LoadSpec {
        base_url,
        path: "/v1/uploads?filename=load.jpg".into(),
        headers: Vec::new(),
        api_key: None,
        body,
        content_type: "image/jpeg".into(),
        clients,
        duration,
        max_requests: None,
    })
    .await;
    let commands_after = redis_commands(redis_url).await;
    let storm = admin
        .plugins()
        .await
        .into_iter()
        .find(|p| p.name == "cache-storm");
    let _ = stop.send(());
    let _ = server.await;
    let redis_commands_per_s = match (commands_before, commands_after) {
        (Some(before), Some(after)) => {
            after.saturating_sub(before) as f64 / load.elapsed_s.max(f64::EPSILON)
        }
        _ => 0.0,
    };
    Ok(ScenarioReport {
        scenario,
        load,
        redis_commands_per_s,
        storm_invocations: storm.as_ref().map_or(0, |s| s.counters.invocations),
        storm_state: storm.map(|s| format!("{:?}", s.state).to_lowercase()),
    })
}

/// `total_commands_processed` from Redis `INFO stats`.
async fn redis_commands(url: &str) -> Option<u64> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
}
