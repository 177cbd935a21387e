//! Quarantine, bulkheads and hot reload: a misbehaving plugin is stopped,
//! named and quarantined, and the service keeps serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::admin::ConfigSource;
use airlock::budget::Budget;
use airlock::config::{Config, FailurePolicy};
use airlock::runtime::HookKind;
use airlock::supervisor::Containment;

use crate::common::*;
use crate::harness::*;

const ADMIN: &str = "admin-token-0123456789abcdef";

/// The standard config plus `cache-storm` (fail-open unless said) and an
/// admin token.
fn storm_config(backends: Backends, dir: &std::path::Path, on_failure: FailurePolicy) -> Config {
    let mut config = config(backends, dir);
    config.admin.token = ADMIN.into();
    let mut storm = plugin(
        "cache-storm",
        HookKind::Processor,
        15,
        on_failure,
        Budget {
            cache_calls: 64,
            ..roomy()
        },
    );
    storm.containment = Containment {
        quarantine_after: 3,
        ..Containment::default()
    };
    config.plugins.push(storm);
    config
}

/// Asks for a reload that must be refused with a message containing `needle`.
async fn assert_reload_refused(server: &TestServer, needle: &str) {
    let refused = json(
        admin(server, reqwest::Method::POST, "/admin/reload").await,
        422,
    )
    .await;
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains(needle), "{refused}");
}

/// A local server running `storm_config`.
async fn storm_server(on_failure: FailurePolicy) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config = storm_config(Backends::Local, dir.path(), on_failure);
    TestServer::with_config(config, dir).await
}

async fn admin(server: &TestServer, method: reqwest::Method, path: &str) -> reqwest::Response {
    server
        .http
        .request(method, server.url(path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
}

/// Waits (up to 10 s) until `name`'s admin entry satisfies `ready`.
async fn until_plugin(server: &TestServer, name: &str, ready: impl Fn(&serde_json::Value) -> bool) {
    let reached = eventually(Duration::from_secs(10), || async {
        let state = plugin_state(server, name).await;
        ready(&state).then_some(())
    })
    .await;
    assert!(reached.is_some(), "{}", plugin_state(server, name).await);
}

async fn plugin_state(server: &TestServer, name: &str) -> serde_json::Value {
    let list = json(
        admin(server, reqwest::Method::GET, "/admin/plugins").await,
        200,
    )
    .await;
    list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
        .clone()
}

fn skipped_reason(record: &serde_json::Value, plugin: &str) -> Option<String> {
    record["skipped"]
        .as_array()?
        .iter()
        .find(|s| s["plugin"] == plugin)
        .map(|s| s["reason"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn cache_storm_is_quarantined_after_three_stops_and_an_operator_re_enables_it() {
    let server = storm_server(FailurePolicy::FailOpen).await;
    let png = fixture_bytes("picture.png");
    for _ in 0..3 {
        let record = server
            .upload_json(ALICE, png.clone(), "image/png", "", 201)
            .await;
        assert!(
            skipped_reason(&record, "cache-storm")
                .unwrap()
                .contains("cache_calls"),
            "{record}"
        );
        assert!(
            record["metadata"]["sha256"].is_string(),
            "other plugins ran"
        );
    }
    let state = plugin_state(&server, "cache-storm").await;
    assert_eq!(state["state"], "quarantined", "{state}");
    assert_eq!(state["counters"]["violations"], 3);
    assert_eq!(state["last_violation"]["limit"], "cache_calls");
    // Quarantined: not invoked any more, the upload goes on.
    let record = server
        .upload_json(ALICE, png.clone(), "image/png", "", 201)
        .await;
    assert!(
        skipped_reason(&record, "cache-storm")
            .unwrap()
            .contains("quarantined"),
        "{record}"
    );
    assert_eq!(
        plugin_state(&server, "cache-storm").await["counters"]["invocations"],
        3
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("airlock_plugin_active{plugin=\"cache-storm\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "airlock_plugin_budget_stops_total{plugin=\"cache-storm\",limit=\"cache_calls\"} 3"
        ),
        "{metrics}"
    );

    json(
        admin(
            &server,
            reqwest::Method::POST,
            "/admin/plugins/cache-storm/enable",
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        plugin_state(&server, "cache-storm").await["state"],
        "active"
    );
    let record = server.upload_json(ALICE, png, "image/png", "", 201).await;
    assert!(
        skipped_reason(&record, "cache-storm")
            .unwrap()
            .contains("cache_calls"),
        "invoked again: {record}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_quarantined_fail_closed_plugin_refuses_uploads_naming_it() {
    let server = storm_server(FailurePolicy::FailClosed).await;
    for _ in 0..3 {
        let body = server.upload_picture(ALICE, "", 503).await;
        assert_eq!(body["error"]["plugin"], "cache-storm");
    }
    let body = server.upload_picture(ALICE, "", 503).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("quarantined"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn operators_disable_and_enable_plugins_and_need_the_token() {
    let server = storm_server(FailurePolicy::FailOpen).await;
    let anonymous = server
        .http
        .get(server.url("/admin/plugins"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let client_key = server.get(ALICE, "/admin/plugins").await;
    assert_eq!(
        client_key.status(),
        401,
        "a client key is not an admin token"
    );
    json(
        admin(
            &server,
            reqwest::Method::POST,
            "/admin/plugins/sha256/disable",
        )
        .await,
        200,
    )
    .await;
    let record = server.upload_picture(ALICE, "", 201).await;
    assert!(record["metadata"].get("sha256").is_none());
    assert!(
        skipped_reason(&record, "sha256")
            .unwrap()
            .contains("disabled")
    );
    json(
        admin(
            &server,
            reqwest::Method::POST,
            "/admin/plugins/sha256/enable",
        )
        .await,
        200,
    )
    .await;
    let record = server.upload_picture(ALICE, "", 201).await;
    assert!(record["metadata"]["sha256"].is_string());
    let unknown = admin(&server, reqwest::Method::POST, "/admin/plugins/nope/enable").await;
    assert_eq!(json(unknown, 404).await["error"]["code"], "unknown_plugin");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_is_shared_by_every_node_through_redis() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let mut config_a = storm_config(Backends::Local, dir_a.path(), FailurePolicy::FailOpen);
    config_a.cache.backend = airlock::config::CacheBackendKind::Redis;
    config_a.cache.redis_url = redis_url();
    let mut config_b = config_a.clone();
    config_b.storage.path = dir_b.path().to_path_buf();
    let a = TestServer::with_config(config_a, dir_a).await;
    let b = TestServer::with_config(config_b, dir_b).await;
    for _ in 0..3 {
        a.upload_picture(ALICE, "", 201).await;
    }
    // Node B never saw a violation, yet stops invoking the plugin.
    until_plugin(&b, "cache-storm", |p| p["state"] == "quarantined").await;
    let record = b.upload_picture(ALICE, "", 201).await;
    assert!(
        skipped_reason(&record, "cache-storm")
            .unwrap()
            .contains("quarantined"),
        "{record}"
    );
    // Re-enabled on B, active on A.
    json(
        admin(
            &b,
            reqwest::Method::POST,
            "/admin/plugins/cache-storm/enable",
        )
        .await,
        200,
    )
    .await;
    until_plugin(&a, "cache-storm", |p| p["state"] == "active").await;
    a.stop().await;
    b.stop().await;
}

/// A full bulkhead makes uploads wait their turn (up to their deadline),
/// never skip the plugin for load alone; each turn is bounded by the
/// plugin's budget, and the service keeps answering meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_bulkhead_queues_uploads_in_turn_and_the_service_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(Backends::Local, dir.path());
    config.admin.token = ADMIN.into();
    // A plugin that spins for its whole 1.5 s wall-clock budget, one at a time.
    let slow = spinner(1_500, 100);
    config.plugins.push(slow);
    let server = Arc::new(TestServer::with_config(config, dir).await);
    let uploads: Vec<_> = (0..4)
        .map(|_| {
            let server = Arc::clone(&server);
            tokio::spawn(async move { server.upload_picture(ALICE, "", 201).await })
        })
        .collect();
    // While the slow plugin spins, health and unrelated reads still answer.
    until_plugin(&server, "infinite-loop", |p| p["counters"]["running"] != 0).await;
    let started = Instant::now();
    assert_eq!(server.get(ALICE, "/healthz").await.status(), 200);
    let health_latency = started.elapsed();
    let mut reasons = Vec::new();
    for upload in uploads {
        let record = upload.await.unwrap();
        reasons.push(skipped_reason(&record, "infinite-loop").unwrap());
    }
    // Each upload had its turn (and the plugin spent its budget on each):
    // none was skipped as busy, though each waited far past max_wait_ms.
    assert_eq!(
        reasons.iter().filter(|r| r.contains("timeout")).count(),
        4,
        "{reasons:?}"
    );
    assert!(
        health_latency < Duration::from_millis(1_000),
        "healthz took {health_latency:?}"
    );
}

/// A config file for reload tests: `plugins` is TOML for `[[plugins]]`.
struct ConfigFile {
    dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl ConfigFile {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("airlock.toml");
        Self { dir, path }
    }

    fn write(&self, plugins: &str) {
        let text = format!(
            "[storage]\npath = {:?}\n[admin]\ntoken = \"{ADMIN}\"\n[runtime]\nmax_instances = 8\n{plugins}",
            self.dir.path().join("data")
        );
        std::fs::write(&self.path, text).unwrap();
    }

    async fn serve(&self) -> TestServer {
        let config = Config::load(&self.path).unwrap();
        TestServer::with_source(
            config,
            ConfigSource::File(self.path.clone()),
            tempfile::tempdir().unwrap(),
        )
        .await
    }
}

fn entry(name: &str) -> String {
    format!(
        "[[plugins]]\nname = \"{name}\"\ncomponent = {:?}\nhook = \"processor\"\n",
        plugin_path(name)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_invocations_finish_on_the_plugins_they_started_with() {
    let file = ConfigFile::new();
    // A plugin that spins for its whole 1 s budget.
    file.write(&format!(
        "{}[plugins.budget]\nfuel = 1000000000000000\ntimeout_ms = 1000\n",
        entry("infinite-loop")
    ));
    let server = Arc::new(file.serve().await);
    let in_flight = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { server.upload_picture("", "", 201).await })
    };
    until_plugin(&server, "infinite-loop", |p| p["counters"]["running"] != 0).await;
    file.write(&entry("sha256"));
    json(
        admin(&server, reqwest::Method::POST, "/admin/reload").await,
        200,
    )
    .await;
    // The upload that was running finishes on the old set…
    let old = in_flight.await.unwrap();
    assert!(
        skipped_reason(&old, "infinite-loop")
            .unwrap()
            .contains("timeout"),
        "{old}"
    );
    assert!(old["metadata"].get("sha256").is_none(), "{old}");
    // …and the next one runs on the new set.
    let new = server.upload_picture("", "", 201).await;
    assert!(new["metadata"]["sha256"].is_string(), "{new}");
    assert!(new.get("skipped").is_none(), "{new}");
}

#[tokio::test]
async fn reload_swaps_plugins_and_refuses_a_bad_config_keeping_the_old_one() {
    let file = ConfigFile::new();
    let write = |plugins: &str| file.write(plugins);
    write(&entry("sha256"));
    let server = file.serve().await;
    let record = server.upload_picture("", "", 201).await;
    assert!(record["metadata"]["sha256"].is_string());

    write(&entry("content-sniff"));
    let reloaded = json(
        admin(&server, reqwest::Method::POST, "/admin/reload").await,
        200,
    )
    .await;
    assert_eq!(reloaded["plugins"], serde_json::json!(["content-sniff"]));
    let record = server.upload_picture("", "", 201).await;
    assert!(record["metadata"].get("sha256").is_none());
    assert_eq!(record["metadata"]["detected-type"], "image/png");

    // A component that imports wasi:filesystem: refused, old set keeps serving.
    write(&format!(
        "[[plugins]]\nname = \"escape\"\ncomponent = {:?}\nhook = \"processor\"\n",
        plugin_path("wasi-escape")
    ));
    assert_reload_refused(&server, "wasi:filesystem").await;
    write("[[plugins]]\nname = \"x\"\ncomponnt = \"x.wasm\"\n");
    assert_reload_refused(&server, "componnt").await;
    let record = server
        .upload_json("", fixture_bytes("fake-png.png"), "image/png", "", 422)
        .await;
    assert_eq!(
        record["error"]["plugin"], "content-sniff",
        "still the previous set"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_lists_disables_and_enables() {
    let server = storm_server(FailurePolicy::FailOpen).await;
    let run = |args: &[&str]| {
        let mut all = vec!["admin", "--url", &server.base, "--token", ADMIN];
        all.extend_from_slice(args);
        let args: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
                .args(&args)
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        }
    };
    let (code, text) = run(&["plugins", "disable", "cache-storm"]).await;
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&["plugins", "list"]).await;
    assert_eq!(code, Some(0), "{text}");
    let line = text.lines().find(|l| l.starts_with("cache-storm")).unwrap();
    assert!(line.contains("disabled"), "{text}");
    let (code, _) = run(&["plugins", "enable", "cache-storm"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(
        plugin_state(&server, "cache-storm").await["state"],
        "active"
    );
    let (code, text) = run(&["plugins", "enable", "no-such-plugin"]).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no plugin named `no-such-plugin`"), "{text}");
    let (code, text) = run(&["reload"]).await;
    assert_eq!(code, Some(0), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn reload_rotates_api_clients_and_names_sections_that_need_a_restart() {
    let file = ConfigFile::new();
    file.write(&entry("sha256"));
    let server = file.serve().await;
    // No clients: open on loopback.
    server.upload_picture("", "", 201).await;

    let key = "rotated-key-0123456789abcdef";
    file.write(&format!(
        "{}[server]\nshutdown_grace_seconds = 5\n[[clients]]\nname = \"web\"\napi_key = \"{key}\"\n",
        entry("sha256")
    ));
    let reloaded = json(
        admin(&server, reqwest::Method::POST, "/admin/reload").await,
        200,
    )
    .await;
    assert_eq!(reloaded["clients"], 1);
    assert_eq!(
        reloaded["restart_needed"],
        serde_json::json!(["server"]),
        "{reloaded}"
    );
    // Keys apply at once; the anonymous client is gone.
    let anonymous = server
        .upload("", fixture_bytes("picture.png"), "image/png", "")
        .await;
    assert_eq!(anonymous.status(), 401);
    let record = server.upload_picture(key, "", 201).await;
    assert_eq!(record["client"], "web");
}
