//! The upload page and the operator dashboard in a real browser: Debian's
//! Chromium, headless, driven by playwright-core (`tests/browser/*.mjs`,
//! installed by `scripts/install-test-clients.sh`) against real
//! `airlock serve` processes. Each test leaves a screenshot under the
//! target dir (`screenshots/`) for a person to look at.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use airlock::budget::Budget;
use airlock::config::FailurePolicy;
use airlock::runtime::HookKind;
use airlock::supervisor::Containment;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::common::*;
use crate::harness::{ALICE, Backends, plugin};
use crate::served::ServeSetup;

const ADMIN: &str = "admin-token-0123456789abcdef";
/// Bound on one browser run (a stuck page is killed, not waited for).
const BROWSER_LIMIT: Duration = Duration::from_secs(180);

/// `tests/browser/<script>`, once playwright-core is installed.
fn driver(script: &str) -> PathBuf {
    let dir = root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run scripts/install-test-clients.sh",
        dir.display()
    );
    dir.join(script)
}

/// `<target dir>/screenshots/<name>.png`: beside the build output, where
/// the test run leaves what a person may want to look at.
fn screenshot(name: &str) -> PathBuf {
    // The test binary is <target>/<profile>/deps/all-<hash>.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

/// Starts `node <script> '<options>'`; its stdout, line by line.
fn start_driver(script: &str, options: &Value) -> tokio::process::Child {
    tokio::process::Command::new("node")
        .arg(driver(script))
        .arg(options.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The next JSON line the driver prints; panics on its `error`.
async fn next_report(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Value {
    let line = tokio::time::timeout(BROWSER_LIMIT, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("the browser driver said nothing for {BROWSER_LIMIT:?}"))
        .unwrap()
        .expect("the browser driver exited without a report");
    let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert!(
        report.get("error").is_none(),
        "the browser run failed: {report:#}"
    );
    report
}

/// The upload page served by one `airlock serve`, calling the API of
/// another (so the browser makes real CORS requests, preflights included):
/// a JPEG is stored and shows its detected type, metadata and thumbnail; a
/// fake PNG shows the rejection naming the plugin.
#[tokio::test]
async fn the_upload_page_on_another_origin_stores_a_jpeg_and_shows_a_rejection() {
    // (Each setup owns its server's directory: kept while the server runs.)
    let pages_setup = ServeSetup::new(Backends::Local, |_| {});
    let pages = pages_setup.serve("pages").await;
    let api_setup = ServeSetup::new(Backends::Local, |config| {
        config.server.cors.allowed_origins = vec![pages.base()];
    });
    let api = api_setup.serve("api").await;
    assert_ne!(pages.base(), api.base());
    let shot = screenshot("upload-page");
    let options = json!({
        "url": format!("{}/?api={}", pages.base(), api.base()),
        "apiKey": ALICE,
        "files": [
            { "path": fixture("photo-with-gps.jpg"), "name": "photo-with-gps.jpg" },
            { "path": fixture("fake-png.png"), "name": "fake-png.png" },
        ],
        "screenshot": shot,
    });
    let mut child = start_driver("upload-page.mjs", &options);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let report = next_report(&mut lines).await;
    assert!(child.wait().await.unwrap().success());

    let cards = report["cards"].as_array().unwrap();
    let jpeg = &cards[0];
    assert_eq!(jpeg["state"], "stored", "{report:#}");
    assert_eq!(jpeg["content_type"], "image/jpeg", "{report:#}");
    assert_eq!(
        jpeg["metadata"]["detected-type"], "image/jpeg",
        "{report:#}"
    );
    assert_eq!(jpeg["metadata"]["exif-stripped"], "true", "{report:#}");
    assert_eq!(jpeg["skipped"], json!([]), "{report:#}");
    // The thumbnail, fetched by the page from the API's origin, decoded
    // by the browser at the plugin's size.
    assert_eq!(
        jpeg["derived"],
        json!([{ "name": "thumbnail.png", "width": 256, "height": 192 }]),
        "{report:#}"
    );
    // The page shows the record the API has.
    let id = jpeg["id"].as_str().unwrap();
    let record = api.record(id).await;
    assert_eq!(record["filename"], "photo-with-gps.jpg");

    let fake = &cards[1];
    assert_eq!(fake["state"], "failed", "{report:#}");
    let rejection = fake["rejection"].as_str().unwrap_or_default();
    assert!(
        rejection.starts_with("Rejected by plugin content-sniff: ")
            && rejection.contains("image/png"),
        "{report:#}"
    );
    // CORS worked (no blocked request), and the page raised no error of its
    // own; the failed upload's 422 is the one error the browser logs.
    let problems: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|p| !p.contains("422"))
        .collect();
    assert!(problems.is_empty(), "{report:#}");
    assert!(shot.is_file());
}

/// A TCP proxy on 127.0.0.1:0 in front of `upstream` whose open
/// connections can be cut at once, as a network drop does to a browser's.
struct CuttableProxy {
    addr: SocketAddr,
    cut: watch::Sender<u64>,
    cuts: Arc<AtomicUsize>,
}

impl CuttableProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = watch::channel(0u64);
        let cuts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&cuts);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = watch.clone();
                // Only a cut made after this connection opened ends it.
                watch.borrow_and_update();
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.changed() => {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Self { addr, cut, cuts }
    }

    /// Closes every connection open now; returns how many there were.
    async fn cut_all(&self) -> usize {
        let before = self.cuts.load(Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
        // The connection tasks count themselves as they end.
        eventually(Duration::from_secs(5), || async {
            let now = self.cuts.load(Ordering::SeqCst);
            (now > before).then_some(now - before)
        })
        .await
        .unwrap_or(0)
    }
}

/// An upload whose connection drops mid-PATCH (cut by a proxy between the
/// browser and the service) goes on from where the service has it: the
/// client asks (HEAD) and sends the rest, and one whole record is stored.
#[tokio::test]
async fn the_upload_page_resumes_an_upload_after_a_network_drop() {
    let setup = ServeSetup::new(Backends::Local, |_| {});
    let server = setup.serve("resume").await;
    let proxy = CuttableProxy::start(server.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    let bytes: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let options = json!({
        "url": format!("http://{}/", proxy.addr),
        "apiKey": ALICE,
        "files": [{ "path": file, "name": "big.bin" }],
        "announce": { "name": "big.bin", "atBytes": 1 << 20 },
        "screenshot": screenshot("upload-page-resumed"),
    });
    let mut child = start_driver("upload-page.mjs", &options);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let sent = next_report(&mut lines).await;
    assert_eq!(sent["event"], "sent", "{sent}");
    assert!(
        sent["sent"].as_u64().unwrap() < bytes.len() as u64,
        "{sent}"
    );
    assert!(proxy.cut_all().await >= 1, "no connection was open to cut");
    let report = next_report(&mut lines).await;
    assert!(child.wait().await.unwrap().success());

    let card = &report["cards"][0];
    assert_eq!(card["state"], "stored", "{report:#}");
    let id = card["id"].as_str().unwrap();
    let record = server.record(id).await;
    assert_eq!(record["size"], bytes.len(), "{record:#}");
    assert_eq!(record["sha256"], sha(&bytes), "{record:#}");
    // One upload, asked about (HEAD) after the drop and finished: the
    // client went on from the service's offset instead of starting again.
    let metric = |event: &str| format!("airlock_resumable_uploads_total{{event=\"{event}\"}}");
    assert_eq!(
        server.metric(&metric("created")).await,
        1.0,
        "{}",
        server.log()
    );
    assert!(
        server.metric(&metric("resumed")).await >= 1.0,
        "{}",
        server.log()
    );
    assert_eq!(
        server.metric(&metric("finished")).await,
        1.0,
        "{}",
        server.log()
    );
}

/// The dashboard's live view shows `cache-storm` quarantined while a burst
/// of uploads runs, with the budget stops by limit; Enable on the page lifts
/// the quarantine, as the admin API then says too.
#[tokio::test]
async fn the_dashboard_shows_a_quarantine_live_and_re_enables_the_plugin() {
    let setup = ServeSetup::new(Backends::Local, |config| {
        config.admin.token = ADMIN.into();
        let mut storm = plugin(
            "cache-storm",
            HookKind::Processor,
            15,
            FailurePolicy::FailOpen,
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
    });
    let server = setup.serve("dashboard").await;
    let shot = screenshot("dashboard");
    let options = json!({
        "url": format!("{}/admin#token={ADMIN}", server.base()),
        "plugin": "cache-storm",
        "screenshot": shot,
    });
    let mut child = start_driver("dashboard.mjs", &options);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = next_report(&mut lines).await;
    assert_eq!(ready["state"], "active", "{ready}");

    // The burst, while the page polls.
    let http = reqwest::Client::new();
    for i in 0..5 {
        let response = http
            .post(server.url(&format!("/v1/uploads?filename=f{i}.txt")))
            .bearer_auth(ALICE)
            .header("content-type", "text/plain")
            .body(format!("upload {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let report = next_report(&mut lines).await;
    assert!(child.wait().await.unwrap().success());
    let seen = &report["quarantined"];
    assert_eq!(seen["state"], "quarantined", "{report:#}");
    let reason = seen["reason"].as_str().unwrap();
    assert!(reason.contains("3 violations"), "{report:#}");
    assert!(
        seen["budget_stops"]
            .as_str()
            .unwrap()
            .contains("cache_calls3"),
        "{report:#}"
    );
    assert!(
        seen["last_violation"]
            .as_str()
            .unwrap()
            .contains("cache_calls"),
        "{report:#}"
    );
    assert!(
        seen["latency"].as_str().unwrap().contains("p99"),
        "{report:#}"
    );
    assert_eq!(
        report["action_result"], "cache-storm is now active",
        "{report:#}"
    );
    assert_eq!(report["problems"], json!([]), "{report:#}");

    let plugins: Value = http
        .get(server.url("/admin/plugins"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let storm = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cache-storm")
        .unwrap();
    assert_eq!(storm["state"], "active", "{storm:#}");
    assert!(shot.is_file());
}
